"""`speechft prep`: Kaldi `wav.scp` + `text` (+ `segments`) -> the ChatML jsonl Fun-ASR-Nano trains on.

A chain of stages, each a function whose inputs and outputs are plain values, run in this order
by :func:`speechft.data.prep.pipeline.prepare`:

1. :mod:`~speechft.data.prep.candidates`: join the input files by key -> `Candidate | Rejection` per key;
2. :mod:`~speechft.data.prep.probe`: audio header facts -> `AudioInfo | Rejection` per candidate
   (worker processes, while the transcripts are tokenised);
3. :mod:`~speechft.data.prep.checks`: empty audio, segment extents, length and token limits
   -> `KeptUtterance | Rejection`;
4. :mod:`~speechft.data.prep.segments`: with `--segments`, cut each kept segment into its own file;
5. :mod:`~speechft.data.prep.split`: the validation share, by a hash of the key;
6. :mod:`~speechft.data.prep.write`: jsonl lines (:func:`speechft.data.manifest.chatml_line`),
   `rejects.tsv`, the prompt sidecar and the :mod:`~speechft.data.prep.summary`.

:mod:`~speechft.data.prep.options` holds what a run is asked to do, :mod:`~speechft.data.prep.reasons`
the reject reasons and warnings. Files written for `--out data/train.jsonl`:
`data/train.jsonl`, the validation jsonl when asked for, `data/train.rejects.tsv`,
`data/train.summary.json` and `data/train.prompt.json`.
"""
