"""``headlens export --compress kwon|ranked``: compress, export, and write what each step reached.

``kwon``: Kwon et al.'s Fisher search and rearrangement; ``ranked``: the global ranking of
``export.method`` (its scores averaged over the scoring split, least important removed first,
no rearrangement). Both then tune the kept heads (``export.tune``, ``export.offsets``). The
calibration examples are the first ``export.calibration`` of the scoring split (seeded by
``data.seed``; their labels are not read); accuracies are measured on the evaluated split, for
the unpruned model, the searched (``ranked``: the ranking's), rearranged and tuned gates, and the
exported model reloaded through :func:`headlens.models.load_model`. They go to
``<out_dir>/compression.json``, beside ``<out_dir>/model_pruned``.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from ..adapters import adapter_for
from ..config import ConfigError
from ..files import atomic_write
from ..models import load_model
from ..pipeline import load_model_and_data, take
from ..sweep import global_scores
from .kwon import accuracies, accuracy_under, compress, export_compressed

RESULTS_FILE = "compression.json"


def export_compression(config: DictConfig) -> int:
    e = config.export
    adapter, evaluated, scoring = load_model_and_data(config)
    if not len(scoring):
        raise ConfigError(f"key 'data.score_examples': export.compress={e.compress} takes its calibration examples "
                          "from the scoring split, which is empty; give data.score_examples ≥ 1")  # fmt: skip
    calibration = take(scoring, e.calibration, config.data.seed, "export.calibration")
    importance = None
    if e.compress == "ranked":
        if e.unit != "head" or e.order != "negative":
            raise ConfigError(f"export.compress=ranked removes heads, least important first; got export.unit={e.unit}, "
                              f"export.order={e.order}")  # fmt: skip
        scores, _, _ = global_scores(adapter, scoring, [e.method], config.sweep.batch_size, config.sweep.seed,
                                     config.sweep.lrp_dtype, config.progress)  # fmt: skip
        importance = scores[e.method]
    compression = compress(adapter, calibration, e.fraction, e.tune, config.sweep.batch_size, fisher=e.fisher,
                           importance=importance, rearrange=e.compress == "kwon", offsets=e.offsets)  # fmt: skip
    folder = Path(config.out_dir) / "model_pruned"
    report = export_compressed(adapter, compression, folder)
    reloaded = adapter_for(load_model(adapter.family, str(folder), progress=False).to(adapter.device))
    found = accuracies(adapter, evaluated, compression, config.sweep.batch_size)
    found["exported"] = accuracy_under(reloaded, evaluated, None, config.sweep.batch_size)
    results = {**compression.summary(), "compress": e.compress, "ranking": e.method if e.compress == "ranked" else None,
               "evaluated_examples": len(evaluated), "accuracy": found, "export": report}  # fmt: skip
    atomic_write(Path(config.out_dir) / RESULTS_FILE, json.dumps(results, indent=1) + "\n")
    print(f"removed {compression.removed} of {adapter.num_sites * adapter.num_heads} heads; accuracy on "
          f"{len(evaluated)} examples: " + ", ".join(f"{name} {value:.2f}" for name, value in found.items()))  # fmt: skip
    print(f"wrote {folder} and {Path(config.out_dir) / RESULTS_FILE} "
          f"(load the model with headlens.models.load_model({adapter.family!r}, {str(folder)!r}))")  # fmt: skip
    return 0
