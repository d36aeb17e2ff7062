"""Builders for tests, the bundled example and the benchmarks: tiny Fun-ASR-Nano directories and tokenizers.

Nothing in the library imports this package; it exists so that tests, `examples/` and `bench/`
build their models with the same code the library loads them with, and never need a hub.
"""
