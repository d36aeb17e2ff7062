"""Data: Kaldi-style corpora -> the ChatML jsonl Fun-ASR-Nano trains on -> batches for the trainer.

- :mod:`speechft.data.manifest`: the jsonl line itself, the one definition prep and training share.
- :mod:`speechft.data.prompts`: the prompt policy (`PromptPolicy`) and its sidecar file, shared by
  prep, train and decode so all three use the same prompt.
- :mod:`speechft.data.audio`: the one audio loader of prep, train and decode: header facts
  (`read_info`) and `load_audio` (mono float32 at 16 kHz) for local files and URLs, through
  libsndfile and, for what it refuses, :mod:`~speechft.data.containers` (FFmpeg via PyAV);
  URLs and their cache in :mod:`~speechft.data.remote`.
- :mod:`speechft.data.prep`: `speechft prep` as a chain of stages (candidates -> probe -> checks ->
  cut -> split -> write) run by :func:`speechft.data.prep.pipeline.prepare`; Kaldi files are read
  by :mod:`~speechft.data.kaldi`, transcripts counted by :mod:`~speechft.data.tokens`.
- :mod:`speechft.data.dataset`, :mod:`~speechft.data.sampler`, :mod:`~speechft.data.collate`:
  features per utterance, token-budget batches per rank, padded batches and their loader.

Importing this package imports no torch, transformers or soundfile; nothing here imports `speechft.train`.
"""
