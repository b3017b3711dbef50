"""Result files of a sweep: ``results.json``, ``curves.csv``, ``per_example.npz``, ``curves.png``.

Files are written to a temporary name and renamed into place, so a file that
exists is complete.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .io import atomic_write
from .provenance import command_provenance
from .sweep import SweepResult

CSV_FIELDS = ("model", "protocol", "method", "unit", "order", "level", "pruned", "accuracy")


def curves_csv(results: Sequence[SweepResult]) -> str:
    """One row per (curve, level), for every sweep given."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for result in results:
        for c in result.curves:
            for level, pruned, acc in zip(c.levels, c.pruned, c.accuracy):
                writer.writerow([c.model, c.protocol, c.method, c.unit, c.order, level, pruned, f"{acc:.4f}"])
    return buffer.getvalue()


def write_results(results: SweepResult | Sequence[SweepResult], out_dir: str | os.PathLike, plot: bool = True) -> dict:
    """Write the files of one or several sweeps (e.g. one per model) into ``out_dir``.

    ``results.json`` holds ``{"runs": [...], "provenance": {...}}`` with one entry per sweep
    (each with its own provenance) and the command, version and date of this writing
    (:func:`headlens.provenance.command_provenance`); the per-example
    soft scores go to ``per_example.npz`` (``<model>_soft`` ``[arms, examples, levels]``
    and ``<model>_ids``). Returns the paths written, by kind.
    """
    results = [results] if isinstance(results, SweepResult) else list(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "csv": out / "curves.csv", "npz": out / "per_example.npz"}
    document = {"runs": [r.to_dict() for r in results], "provenance": command_provenance()}
    atomic_write(paths["json"], (json.dumps(document, indent=1, default=_jsonable) + "\n").encode())
    atomic_write(paths["csv"], curves_csv(results).encode())
    arrays = {}
    for r in results:
        arrays[f"{r.model}_soft"] = r.soft
        arrays[f"{r.model}_ids"] = np.asarray([str(i) for i in r.example_ids])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(paths["npz"], buffer.getvalue())
    if plot:
        from .viz.curves import plot_curves
        from .viz.figures import save_figure

        paths["png"] = out / "curves.png"
        save_figure(plot_curves([c for r in results for c in r.curves]), paths["png"])
    return paths


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
