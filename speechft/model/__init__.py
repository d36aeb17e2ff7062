"""Fun-ASR-Nano: building the model from an official-layout directory, and tiny ones for tests."""
