"""Where headlens keeps what it fetches and caches."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """Downloaded checkpoints and data sets: ``override`` if given, else ``$HEADLENS_DATA``, else
    ``~/.cache/headlens/data``."""
    if override is not None:
        return Path(override).expanduser()
    return Path(os.environ.get("HEADLENS_DATA", "~/.cache/headlens/data")).expanduser()


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Models headlens builds or converts once and reuses (trained subjects, SmolLM2 from GGUF):
    ``override`` if given, else ``$HEADLENS_CACHE``, else ``~/.cache/headlens``."""
    if override is not None:
        return Path(override).expanduser()
    return Path(os.environ.get("HEADLENS_CACHE", "~/.cache/headlens")).expanduser()
