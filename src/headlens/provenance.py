"""What a run's numbers came from, recorded beside them in ``results.json``.

Two parts:

* per sweep (:func:`run_provenance`): the model family, the checkpoint as given and where it
  was found, its content digest (:func:`headlens.digest.tree_sha256`; none for a tiny
  random-init model), the data and the seeds;
* per writing (:func:`command_provenance`): the command line, the headlens version and the
  UTC date, the same for every sweep written together.

A report shows both, so a page read years later still says which checkpoint, data and
command produced it.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from .digest import file_sha256, tree_sha256
from .models import resolve
from .version import __version__


def checkpoint_provenance(name: str | Path | None, folder: str | Path | None = None) -> dict:
    """``{"checkpoint", "checkpoint_path", "checkpoint_sha256"}`` of a checkpoint named as
    :func:`headlens.models.load_model` takes it (a path, a known name or a cached HF id;
    looked for under ``folder`` as there). None: a tiny random-init model, nothing to hash."""
    if name is None:
        return {"checkpoint": None, "checkpoint_path": None, "checkpoint_sha256": None}
    location = resolve(str(name), folder)
    return {"checkpoint": str(name), "checkpoint_path": str(location.resolve()), "checkpoint_sha256": tree_sha256(location)}


def run_provenance(
    family: str, checkpoint: str | Path | None, data: dict, seeds: dict, folder: str | Path | None = None
) -> dict:
    """One sweep's provenance: family, checkpoint (see :func:`checkpoint_provenance`), ``data``
    (name, files or splits: whatever identifies it) and ``seeds`` (by what they seed)."""
    return {"model": family, **checkpoint_provenance(checkpoint, folder), "data": dict(data), "seeds": dict(seeds)}


def config_provenance(config, family: str) -> dict:
    """:func:`run_provenance` of a run that a :class:`headlens.config.Config` describes."""
    d = config.data
    data = {"name": d.name, "examples": d.num_examples, "score_examples": d.score_examples}
    if d.name == "easy_vqa":
        data.update(split=d.split, score_split=d.score_split)
    if d.name == "text" and d.file is not None:
        data.update(file=str(Path(d.file).resolve()), file_sha256=file_sha256(d.file))
    seeds = {"data": d.seed, "random_method": config.sweep.seed}
    if config.model.path is None:
        seeds["model_init"] = config.model.seed
    return run_provenance(family, config.model.path, data, seeds)


def command_provenance() -> dict:
    """The command line (``sys.argv``), the headlens version and the date (UTC, ISO 8601)."""
    return {
        "command": list(sys.argv),
        "headlens": __version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
