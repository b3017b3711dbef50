"""headlens: which attention heads of a Transformer matter, and what happens when the rest are pruned.

Public API::

    import headlens
    headlens.sites(model)                          # site names, in ranking order
    headlens.score(model, batch, method="grad")    # Tensor[batch, sites, heads], higher = more important
    headlens.sweep(model, data, methods=[...])     # pruning curves -> SweepResult
    headlens.write_results(result, "runs/x")       # results.json, curves.csv, per_example.npz, curves.png
"""

from __future__ import annotations

from typing import Mapping

from torch import Tensor, nn

from .adapters import Adapter, adapter_for
from .models import load_model
from .data.batch import Batch
from .edits import capture, eval_mode, gates, intercept
from .masks import LEVELS, head_masks
from .results import write_results
from .scoring import METHODS, capture_needs, score_capture
from .sweep import SweepOptions, SweepResult, sweep
from .version import __version__



def sites(model: nn.Module | Adapter) -> list[str]:
    """Names of the model's attention sites, in the order that defines rankings and masks."""
    return adapter_for(model).site_names


def score(
    model: nn.Module | Adapter,
    batch: Batch | Mapping[str, Tensor],
    method: str = "grad",
    *,
    target: Tensor | None = None,
    lrp_dtype: str | None = None,
    **options,
) -> Tensor:
    """Head scores ``float[batch, sites, heads]`` of one scoring method; higher = more important.

    ``batch`` is a :class:`Batch` (of dataset fields, or with the model's inputs) or the
    model's forward kwargs. The target is the
    predicted answer unless ``target`` (``long[batch]``) is given. The model runs in
    eval mode; its modes are restored afterwards. ``lrp_dtype="float64"`` runs an LRP
    method's pass in float64. ``options`` go to the method (e.g. ``seed`` for ``random``).
    """
    adapter = adapter_for(model)
    if isinstance(batch, Batch):
        inputs, ids = (batch.inputs if batch.inputs is not None else adapter.inputs(batch.fields)), batch.ids
    else:
        inputs, ids = batch, None
    with eval_mode(adapter.model):
        cap = capture(adapter, inputs, target=target, ids=ids, lrp_dtype=lrp_dtype, **capture_needs([method]))
        return score_capture(cap, method, adapter=adapter, inputs=inputs, **options)


__all__ = [
    "LEVELS", "METHODS", "Adapter", "Batch", "SweepOptions", "SweepResult", "__version__",
    "adapter_for", "capture", "eval_mode", "gates", "head_masks", "intercept", "load_model",
    "score", "sites", "sweep", "write_results",
]  # fmt: skip
