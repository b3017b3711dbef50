"""One interactive, self-contained HTML report per run: ``RUN_DIR/report.html``.

Built from the run's files alone (``results.json``, ``explained.npz`` files and, from the demo,
``faithfulness.json``), so
``headlens report RUN_DIR`` rebuilds it at any time; the front ends (sweep, prune, demo,
visualize, the original command lines) write it by default, as one file of the run's set
(:class:`headlens.files.RunFolder`: staged, then committed with ``results.json``). The page holds, per model,
the curves with the sortable AUC table, the sites × heads grid coloured by any scoring
method with the heads pruned at the slider's level greyed out, and the explained examples
(overlay, token strip, the pruned model's answer, a clicked head's maps), the perturbation
test of the relevance maps where the run has one, then the provenance. Every script, style and image is inline: it opens from ``file://`` offline.

* :mod:`.data` — what the page embeds, read from the files;
* :mod:`.page` — the HTML, with ``report.js`` and ``report.css`` inlined;
* :mod:`.explained` — computing and storing the explained examples (``explained.npz``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..digest import file_sha256
from ..files import MANIFEST, RunFolder, _jsonable, atomic_write
from .data import MAX_EXAMPLES, page_data
from .page import build_page

FILE_NAME = "report.html"


def stage_report(run: RunFolder, document: dict, max_examples: int = MAX_EXAMPLES) -> Path:
    """Stage ``report.html`` in a run folder about to be committed (its ``results.json`` is
    ``document``; the explained examples are staged beside it), so the page is one file of the
    run's set. Pass it as ``stage`` to :func:`headlens.results.write_results`."""
    plain = json.loads(json.dumps(document, default=_jsonable))
    page = build_page(page_data(run.staging, max_examples, document=plain, shown_as=run.out))
    return atomic_write(run.stage(FILE_NAME), page.encode("utf-8"))


def write_report(run_dir: str | os.PathLike, max_examples: int = MAX_EXAMPLES) -> Path:
    """Write ``run_dir/report.html`` (whole or not at all) from the run's files; returns its path.
    At most ``max_examples`` explained examples per model go in. Where ``results.json`` lists
    the report among its set's files, its digest there is brought up to date."""
    run_dir = Path(run_dir)
    path = atomic_write(run_dir / FILE_NAME, build_page(page_data(run_dir, max_examples)).encode("utf-8"))
    manifest = run_dir / MANIFEST
    if manifest.is_file():
        document = json.loads(manifest.read_text())
        if FILE_NAME in (document.get("files") or {}):
            document["files"][FILE_NAME] = file_sha256(path)
            atomic_write(manifest, json.dumps(document, indent=1) + "\n")
    return path


__all__ = ["FILE_NAME", "build_page", "page_data", "stage_report", "write_report"]
