"""The retraining-free compression of Kwon et al. 2022 end to end: Fisher mask search,
mask rearrangement, least-squares mask tuning, then physical export with the tuned
scales folded into the output projections (docs/method.md#retraining-free-compression).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..adapters import Adapter, adapter_for
from ..data.batch import Examples, iterate
from ..edits import eval_mode, gates
from ..export import export
from ..masks import pruned_count
from ..metrics import soft_scores
from .fisher import block_fisher, head_importance, loss_estimate, mask_gradients
from .search import rearrange_mask, search_mask
from .tuning import fold_scales, tune_scales


@dataclass
class Compression:
    """What :func:`compress` found, every mask ``float64[sites, heads]``.

    Attributes:
        fraction, removed: the budget asked for and the heads it removes.
        searched: keep mask of the Fisher search (1 = kept).
        rearranged: the searched mask rearranged within sites (same count per site; the
            searched mask when ``rearrange`` is off).
        gates: the exported gates: ``rearranged`` with the tuned scales at kept heads
            (``rearranged`` itself when tuning is off).
        offsets: with ``offsets=True``, the tuned bias offsets of every output projection.
        estimate: the Fisher loss estimate (summed over sites) of ``searched`` and ``rearranged``.
        untuned: sites whose least-squares scales were refused (they keep 0/1 gates).
        calibration: how many (unlabelled) examples the gradients and the tuning used.
    """

    fraction: float
    removed: int
    searched: Tensor
    rearranged: Tensor
    gates: Tensor
    estimate: dict[str, float]
    calibration: int
    tuned: bool
    untuned: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    fisher: str = "predicted"
    search: str = "fisher"  # or "given": an importance handed to compress
    rearrange: bool = True
    offsets: Tensor | None = None  # [sites, hidden] added to the output projections' biases, or None

    def summary(self) -> dict:
        """JSON-ready description (masks as nested lists)."""
        return {
            "method": "kwon", "fraction": self.fraction, "heads_removed": self.removed,
            "calibration_examples": self.calibration, "fisher_target": self.fisher, "search": self.search,
            "rearranged_within_sites": self.rearrange, "tuned": self.tuned, "untuned_sites": self.untuned, "fisher_loss_estimate": self.estimate,
            "seconds": self.seconds, "searched": self.searched.tolist(), "rearranged": self.rearranged.tolist(),
            "gates": self.gates.tolist(), "offsets": self.offsets is not None,
        }  # fmt: skip


def compress(
    adapter: Adapter, calibration: Examples, fraction: float, tune: bool = True, batch_size: int = 32,
    fisher: str = "predicted", importance: Tensor | None = None, rearrange: bool = True, block: Tensor | None = None,
    offsets: bool = False,
) -> Compression:  # fmt: skip
    """Remove ``fraction`` of the heads (counted by the family's rule, as every sweep and
    export counts them) by Fisher search and rearrangement on the ``calibration`` examples
    (their labels are never read), then, if ``tune``, solve the kept heads' scales.

    ``fisher``: what the gradients differentiate (:data:`headlens.compress.fisher.TARGETS`).
    ``importance`` ``[sites, heads]`` (higher = kept first, e.g. a method's global scores)
    replaces the Fisher diagonal in the search; ``rearrange=False`` keeps the searched mask.
    ``block``: the block Fisher of these examples and target, if already computed (it does not
    depend on the budget). ``offsets``: tune a bias offset per site too
    (:func:`headlens.compress.tuning.tune_scales`)."""
    seconds = {}
    started = time.perf_counter()
    if block is None:
        block = block_fisher(mask_gradients(adapter, calibration, batch_size, fisher))
    seconds["fisher"] = time.perf_counter() - started
    removed = pruned_count(adapter.num_sites * adapter.num_heads, fraction, adapter.count_rule)
    searched = search_mask(head_importance(block) if importance is None else importance.double().cpu(), removed)
    rearranged = rearrange_mask(block, searched) if rearrange else searched
    seconds["search_and_rearrange"] = time.perf_counter() - started - seconds["fisher"]
    estimate = {name: float(loss_estimate(block, keep).sum()) for name, keep in
                (("searched", searched), ("rearranged", rearranged))}  # fmt: skip
    scales, untuned, shifts = rearranged, [], None
    if tune:
        started = time.perf_counter()
        tuning = tune_scales(adapter, calibration, rearranged, batch_size, offsets=offsets)
        scales, untuned, shifts = tuning.scales, tuning.untuned, tuning.offsets
        seconds["tuning"] = time.perf_counter() - started
    return Compression(fraction, removed, searched, rearranged, scales, estimate, len(calibration), tune, untuned, seconds,
                       fisher, "fisher" if importance is None else "given", rearrange, shifts)  # fmt: skip


def folded_copy(adapter: Adapter, scales: Tensor, offsets: Tensor | None = None) -> Adapter:
    """A copy of the model with ``scales`` (and ``offsets``) folded into its output projections
    (see :func:`fold_scales`)."""
    folded = adapter_for(copy.deepcopy(adapter.model))
    fold_scales(folded, scales, offsets)
    return folded


def export_compressed(adapter: Adapter, compression: Compression, out_dir: str | Path) -> dict:
    """Export without the pruned heads, the tuned scales folded in; returns export's report.
    The exported model computes what ``adapter``'s model computes under ``compression.gates``
    (with the offsets added to the output biases, when tuned)."""
    keep = (compression.gates != 0).double()
    return export(folded_copy(adapter, compression.gates, compression.offsets).model, keep, out_dir)


def accuracy_under(adapter: Adapter, examples: Examples, mask: Tensor | None, batch_size: int = 64) -> float:
    """Accuracy (×100, soft scores) of the model on ``examples`` with every example gated by
    ``mask`` ``[sites, heads]`` (None: ungated)."""
    total = 0.0
    with eval_mode(adapter.model), torch.no_grad():
        for _, batch in iterate(examples, batch_size):
            batch = batch.to(adapter.device)
            if mask is None:
                logits = adapter.logits(batch.inputs)
            else:
                with gates(adapter, mask.to(adapter.device).expand(len(batch), -1, -1)):
                    logits = adapter.logits(batch.inputs)
            total += soft_scores(batch.labels, adapter.predict(logits.float())).sum().item()
    return 100.0 * total / len(examples)


def accuracies(adapter: Adapter, examples: Examples, compression: Compression, batch_size: int = 64) -> dict[str, float]:
    """Accuracy unpruned, gated by the searched mask, by the rearranged mask and by the tuned gates."""
    found = {"unpruned": accuracy_under(adapter, examples, None, batch_size),
             "searched": accuracy_under(adapter, examples, compression.searched, batch_size),
             "rearranged": accuracy_under(adapter, examples, compression.rearranged, batch_size)}  # fmt: skip
    if compression.tuned and compression.offsets is None:
        found["tuned"] = accuracy_under(adapter, examples, compression.gates, batch_size)
    elif compression.tuned:
        folded = folded_copy(adapter, compression.gates, compression.offsets)
        found["tuned"] = accuracy_under(folded, examples, (compression.gates != 0).double(), batch_size)
    return found
