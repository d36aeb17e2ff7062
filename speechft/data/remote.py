"""Audio behind http(s) URLs: where a run keeps its downloads."""

from __future__ import annotations

from pathlib import Path


def url_cache_dir(output_dir: Path, setting: str) -> Path | None:
    """Where a run keeps downloaded URL audio: `data.url_cache` relative to the output directory
    (absolute paths as they are, to share one cache between runs); None when it is empty."""
    if not setting:
        return None
    return output_dir / setting
