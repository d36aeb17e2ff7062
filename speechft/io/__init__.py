"""Reading and writing the plain-text files of a Kaldi-style data directory."""
