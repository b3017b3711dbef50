"""One interactive, self-contained HTML report per run: ``RUN_DIR/report.html``.

Built from the run's files alone (``results.json``, ``explained.npz`` files), so
``headlens report RUN_DIR`` rebuilds it at any time; the front ends (sweep, prune, demo,
visualize, the original command lines) write it by default. The page holds, per model,
the curves with the sortable AUC table, the sites × heads grid coloured by any scoring
method with the heads pruned at the slider's level greyed out, and the explained examples
(overlay, token strip, the pruned model's answer, a clicked head's maps), then the
provenance. Every script, style and image is inline: it opens from ``file://`` offline.

* :mod:`.data` — what the page embeds, read from the files;
* :mod:`.page` — the HTML, with ``report.js`` and ``report.css`` inlined;
* :mod:`.explained` — computing and storing the explained examples (``explained.npz``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..io import atomic_write
from .data import MAX_EXAMPLES, page_data
from .page import build_page

FILE_NAME = "report.html"


def write_report(run_dir: str | os.PathLike, max_examples: int = MAX_EXAMPLES) -> Path:
    """Write ``run_dir/report.html`` (whole or not at all) from the run's files; returns its path.
    At most ``max_examples`` explained examples per model go in."""
    run_dir = Path(run_dir)
    return atomic_write(run_dir / FILE_NAME, build_page(page_data(run_dir, max_examples)).encode("utf-8"))


__all__ = ["FILE_NAME", "build_page", "page_data", "write_report"]
