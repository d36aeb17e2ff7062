"""Files: the plain-text `key text` files of a Kaldi-style data directory, and atomic writes."""
