"""Text processing shared by scoring and data preparation."""

from speechft.text.normalize import normalize_file, normalize_text

__all__ = ["normalize_file", "normalize_text"]
