"""speechft: fine-tune Fun-ASR-Nano on your own speech corpus.

Importing the package is cheap: torch, transformers and funasr are imported only by the
commands that need them.
"""

__version__ = "0.1.0"
