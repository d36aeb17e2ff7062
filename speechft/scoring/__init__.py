"""Scoring transcripts the way the guide's `compute-wer` does, without its defects.

- `tokenize`: transcript -> tokens (characters for CJK/kana/Thai, words otherwise) and token classes.
- `align`: minimum-edit-distance alignment, its tie-breaking rule, `Counts`, the padded layout.
- `report`: scoring a reference/hypothesis pair of files, compute-wer's report file, JSON data.
- `compare`: change between systems with a paired bootstrap confidence interval.
- `run`: what `speechft score` does, as one call; `render`: the rich terminal tables.
"""
