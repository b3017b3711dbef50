"""Where headlens keeps what it fetches and caches."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """Downloaded checkpoints and data sets: ``$HEADLENS_DATA``, else ``~/.cache/headlens/data``."""
    return Path(os.environ.get("HEADLENS_DATA", "~/.cache/headlens/data")).expanduser()
