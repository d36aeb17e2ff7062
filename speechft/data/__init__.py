"""Data preparation: Kaldi-style corpora -> the ChatML jsonl Fun-ASR-Nano trains on.

- :mod:`speechft.data.prompts`: the prompt policy (`PromptPolicy`) and its sidecar file, shared by
  prep, train and decode so all three use the same prompt.
- :mod:`speechft.data.audio`: the one audio loader of prep, train and decode: header facts
  (`read_info`) and `load_audio` (mono float32 at 16 kHz) for local files and URLs, through
  libsndfile and, for what it refuses (m4a/AAC, AMR, WMA, video containers), FFmpeg via PyAV.
- :mod:`speechft.data.prep`: the `prepare` pipeline and its `PrepSummary`.

Importing this package imports no torch, transformers or soundfile.
"""
