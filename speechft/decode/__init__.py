"""Offline decoding: inputs, long-audio segmentation, batched generation, resumable output."""
