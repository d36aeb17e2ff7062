"""Text processing shared by scoring and data preparation: the guide's normalisation (`normalize`)."""
