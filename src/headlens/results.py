"""Result files of a sweep: ``results.json``, ``curves.csv``, ``per_example.npz``, ``curves.png``.

A run's files are written as one set (:class:`headlens.files.RunFolder`): ``results.json``
comes last and lists every file with its sha256, so a ``results.json`` that exists
describes exactly the files beside it (:func:`read_results` checks).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .files import RunFolder, atomic_write
from .provenance import command_provenance
from .sweep import SweepResult

CSV_FIELDS = ("model", "protocol", "method", "unit", "order", "level", "pruned", "accuracy")


def curves_csv(results: Sequence[SweepResult]) -> str:
    """One row per (curve, level), for every sweep given."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    extra = list(dict.fromkeys(name for r in results for c in r.curves for name in c.metrics))  # e.g. perplexity
    writer.writerow(CSV_FIELDS + tuple(extra))
    for result in results:
        for c in result.curves:
            for index, (level, pruned, acc) in enumerate(zip(c.levels, c.pruned, c.accuracy)):
                more = [f"{c.metrics[name][index]:.6g}" if name in c.metrics else "" for name in extra]
                writer.writerow([c.model, c.protocol, c.method, c.unit, c.order, level, pruned, f"{acc:.4f}", *more])
    return buffer.getvalue()


def write_results(
    results: SweepResult | Sequence[SweepResult],
    out_dir: str | os.PathLike | RunFolder,
    plot: bool = True,
    finished: Sequence[str | os.PathLike] = (),
    stage: Callable[[RunFolder, dict], object] | None = None,
) -> dict:
    """Write the files of one or several sweeps (e.g. one per model) into ``out_dir`` as one set.

    ``results.json`` holds ``{"runs": [...]}`` with one entry per sweep, and lists every file
    of the set; the per-example soft scores go to ``per_example.npz`` (``<model>_soft``
    ``[arms, examples, levels]`` and ``<model>_ids``). ``out_dir`` may be a
    :class:`~headlens.files.RunFolder` that already holds other staged files of the run
    (pictures); the set is committed here, after which ``finished`` (partial results) are
    deleted. ``stage(run, document)``, if given, is called just before the commit to stage
    files made from the document (the report: :func:`headlens.report.stage_report`). The
    document holds each sweep's provenance and, as ``provenance``, the command, headlens
    version and date of this writing (:func:`headlens.provenance.command_provenance`).
    Returns the paths written, by kind.
    """
    results = [results] if isinstance(results, SweepResult) else list(results)
    run = out_dir if isinstance(out_dir, RunFolder) else RunFolder(out_dir)
    names = {"csv": "curves.csv", "npz": "per_example.npz"}
    atomic_write(run.stage(names["csv"]), curves_csv(results).encode())
    arrays = {}
    for r in results:
        arrays[f"{r.model}_soft"] = r.soft
        arrays[f"{r.model}_ids"] = np.asarray([str(i) for i in r.example_ids])
    arrays["run_id"] = np.asarray(run.run_id)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(run.stage(names["npz"]), buffer.getvalue())
    if plot:
        from .viz.curves import plot_curves
        from .viz.figures import save_figure

        names["png"] = "curves.png"
        save_figure(plot_curves([c for r in results for c in r.curves]), run.stage(names["png"]))
        if any("perplexity" in c.metrics for r in results for c in r.curves):
            names["png_perplexity"] = "curves_perplexity.png"
            measured = [c for r in results for c in r.curves if "perplexity" in c.metrics]
            save_figure(plot_curves(measured, metric="perplexity"), run.stage(names["png_perplexity"]))
    document = {"runs": [r.to_dict() for r in results], "provenance": command_provenance()}
    if stage is not None:
        stage(run, document)
    written = run.commit(document, finished)
    return {"json": written["results.json"], **{kind: written[name] for kind, name in names.items()}}


def read_results(out_dir: str | os.PathLike, rewriting: Sequence[str] = ()) -> dict:
    """The document of a committed run folder, checked against the files it lists: a missing or
    changed file (a set that is not one run's) is an error naming it. Files in ``rewriting``
    (about to be replaced, e.g. ``report.html`` by ``headlens report``) are not checked."""
    from .digest import file_sha256
    from .errors import InputError

    out = Path(out_dir).expanduser()
    manifest = out / "results.json"
    if not manifest.is_file():
        raise InputError(f"{out}: no results.json (no run finished writing there)")
    try:
        document = json.loads(manifest.read_text())
    except ValueError as error:
        raise InputError(f"{manifest}: not JSON ({error})") from None
    for name, digest in (document.get("files") or {}).items():
        if name in rewriting:
            continue
        path = out / name
        if not path.is_file():
            raise InputError(f"{manifest}: lists {name}, which is missing: the folder holds an incomplete set")
        if file_sha256(path) != digest:
            raise InputError(f"{path}: changed since {manifest} was written (another run's file?)")
    return document
