"""Pruning sweeps: score heads, prune them level by level, measure VQA accuracy.

Two protocols:

* ``per_example`` (the original's, SPEC §1): each example is scored on the
  unpruned model, ranked, masked with its own ranking at every level and
  evaluated on itself. Only accuracies are averaged over examples.
* ``global``: scores are averaged over a separate scoring split, giving one
  ranking (and one set of masks) that is evaluated on every example — the
  setting that compresses a model.

A sweep covers every (protocol, method, unit, order) combination asked for, in
one pass over the data: one capture per batch serves every method that reads
attention maps and gradients, level 0 reuses the capture's logits, and all
masked evaluations of a batch (every example × configuration × level) run as
batched forward passes with per-row gates — no Python loop over examples or
heads.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from itertools import product
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .adapters import Adapter, adapter_for
from .data.batch import Batch, Examples, iterate
from .hooks import capture, eval_mode, gates
from .metrics import accuracy, auc, predict, soft_scores
from .prune import LEVELS, ORDERS, UNITS, head_masks, unit_counts
from .scoring import capture_needs, get_method

PROTOCOLS = ("per_example", "global")


@dataclass(frozen=True)
class Arm:
    """One curve of a sweep: a protocol, a scoring method, a unit and an order."""

    protocol: str
    method: str
    unit: str
    order: str

    @property
    def label(self) -> str:
        return f"{self.method}/{self.unit}/{self.order}/{self.protocol}"


@dataclass
class Curve:
    """Accuracy against fraction pruned for one :class:`Arm`."""

    model: str
    protocol: str
    method: str
    unit: str
    order: str
    levels: list[float]
    pruned: list[int]
    accuracy: list[float]
    auc: float
    n_examples: int


@dataclass
class SweepResult:
    """Everything a sweep measured.

    ``soft`` holds the per-example soft scores, ``float[arms, examples, levels]``,
    examples in the order of ``example_ids``.
    """

    model: str
    levels: list[float]
    curves: list[Curve]
    example_ids: list
    score_ids: list | None
    soft: np.ndarray
    wall_time_s: float
    config: dict = field(default_factory=dict)

    def curve(self, method: str, unit: str = "head", order: str = "negative", protocol: str = "per_example") -> Curve:
        for curve in self.curves:
            if (curve.method, curve.unit, curve.order, curve.protocol) == (method, unit, order, protocol):
                return curve
        raise KeyError(f"no curve {method}/{unit}/{order}/{protocol} in this sweep")

    def to_dict(self) -> dict:
        """The content of ``results.json`` (per-example scores are kept out: see ``soft``)."""
        return {
            "model": self.model,
            "config": self.config,
            "levels": self.levels,
            "n_examples": len(self.example_ids),
            "example_ids": self.example_ids,
            "score_ids": self.score_ids,
            "wall_time_s": self.wall_time_s,
            "curves": [asdict(curve) for curve in self.curves],
        }


def sweep(
    model: nn.Module | Adapter,
    data: Examples,
    *,
    methods: Sequence[str] = ("grad",),
    orders: Sequence[str] = ORDERS,
    units: Sequence[str] = UNITS,
    protocols: Sequence[str] = ("per_example",),
    score_data: Examples | None = None,
    levels: Sequence[float] = LEVELS,
    batch_size: int = 16,
    eval_batch_size: int = 256,
    seed: int = 0,
    accuracy_divisor: int | None = None,
    exclude_answers: Sequence[int] = (),
    progress: bool = True,
    config: dict | None = None,
) -> SweepResult:
    """Run pruning sweeps for every combination of the given methods, orders, units and protocols.

    Args:
        model: an HF model with a headlens adapter (or the adapter itself). Runs on the
            model's device, in eval mode (its modes are restored afterwards).
        data: the examples to evaluate (all of them, in order).
        methods: scoring method names (see :data:`headlens.scoring.METHODS`).
        orders: ``positive`` (prune the highest scores first) and/or ``negative``.
        units: ``head`` and/or ``layer`` (a layer is one site, all its heads).
        protocols: ``per_example`` and/or ``global``.
        score_data: the scoring split of the ``global`` protocol; must differ from ``data``.
        levels: fractions pruned; pruned counts follow the adapter's count rule (SPEC §4).
        batch_size: examples per capture (forward + backward).
        eval_batch_size: rows per masked forward pass (a row is one example under one mask).
        seed: seed of the ``random`` method.
        accuracy_divisor: divide summed soft scores by this instead of the number of
            examples (the original VisualBERT's quirk); None for the correct mean.
        exclude_answers: answer indices never predicted (MMF's metric excludes ``<unk>``, 0);
            they are excluded from the scoring target too.
        config: recorded as is in the result.

    Returns:
        a :class:`SweepResult`; write it with :func:`headlens.results.write_results`.
    """
    started = time.perf_counter()
    adapter = adapter_for(model)
    for name, values, valid in (("order", orders, ORDERS), ("unit", units, UNITS), ("protocol", protocols, PROTOCOLS)):
        unknown = [v for v in values if v not in valid]
        if unknown or not values:
            raise ValueError(f"{name}s must be a non-empty subset of {list(valid)}, got {list(values)}")
    methods = [get_method(m).name for m in methods]
    if "global" in protocols and score_data is None:
        raise ValueError("the global protocol needs score_data, a scoring split separate from the evaluation data")
    arms = [Arm(*combo) for combo in product(protocols, methods, units, orders)]
    levels = [float(level) for level in levels]

    with eval_mode(adapter.model):
        global_masks = {}
        score_ids = None
        if "global" in protocols:
            mean_scores, score_ids = _mean_scores(adapter, score_data, methods, batch_size, seed, progress, exclude_answers)
            for arm in arms:
                if arm.protocol == "global":
                    global_masks[arm] = head_masks(
                        mean_scores[arm.method], levels, arm.order, arm.unit, adapter.count_rule
                    )
        soft = np.zeros((len(arms), len(data), len(levels)), dtype=np.float32)
        example_ids: list = []
        batches = iterate(data, batch_size)
        for positions, batch in tqdm(batches, total=-(-len(data) // batch_size), desc="sweep", disable=not progress):
            batch = batch.to(adapter.device)
            soft[:, positions.start : positions.stop] = _sweep_batch(
                adapter, batch, arms, levels, global_masks, eval_batch_size, seed, exclude_answers
            ).permute(1, 0, 2).cpu().numpy()
            example_ids.extend(batch.ids)

    curves = []
    for index, arm in enumerate(arms):
        acc = accuracy(soft[index], accuracy_divisor)
        counts = unit_counts(adapter.num_sites, adapter.num_heads, levels, arm.unit, adapter.count_rule)
        curves.append(
            Curve(
                adapter.family, arm.protocol, arm.method, arm.unit, arm.order,
                levels, counts, [float(a) for a in acc], auc(levels, acc), len(data),
            )  # fmt: skip
        )
    return SweepResult(
        model=adapter.family,
        levels=levels,
        curves=curves,
        example_ids=example_ids,
        score_ids=score_ids,
        soft=soft,
        wall_time_s=time.perf_counter() - started,
        config=dict(config or {}),
    )


def _method_scores(adapter: Adapter, batch: Batch, methods: Sequence[str], seed: int, exclude: Sequence[int] = ()):
    """Capture a batch once and score it with every method: ``(capture, {method: [B, S, H]})``."""
    cap = capture(adapter, batch.inputs, ids=batch.ids, exclude=exclude, **capture_needs(methods))
    scores = {}
    for name in methods:
        method = get_method(name)
        scores[name] = method.fn(cap, seed=seed) if method.seeded else method.fn(cap)
    return cap, scores


def _mean_scores(adapter, data, methods, batch_size, seed, progress, exclude) -> tuple[dict[str, Tensor], list]:
    """Head scores averaged over a scoring split, per method (``[sites, heads]``)."""
    sums: dict[str, Tensor] = {}
    ids: list = []
    batches = iterate(data, batch_size)
    for _, batch in tqdm(batches, total=-(-len(data) // batch_size), desc="global scores", disable=not progress):
        batch = batch.to(adapter.device)
        _, scores = _method_scores(adapter, batch, methods, seed, exclude)
        for name, value in scores.items():
            sums[name] = sums.get(name, 0) + value.double().sum(0)
        ids.extend(batch.ids)
    if not ids:
        raise ValueError("the scoring split of the global protocol is empty")
    return {name: (total / len(ids)).float() for name, total in sums.items()}, ids


def _sweep_batch(adapter, batch, arms, levels, global_masks, eval_batch_size, seed, exclude) -> Tensor:
    """Soft scores ``[batch, arms, levels]`` of one batch under every arm and level."""
    per_example_methods = sorted({arm.method for arm in arms if arm.protocol == "per_example"})
    if per_example_methods:
        cap, scores = _method_scores(adapter, batch, per_example_methods, seed, exclude)
        unpruned = cap.target
    else:
        with torch.no_grad():
            unpruned = predict(adapter.logits(batch.inputs), exclude)
    size = len(batch)
    masks = []
    for arm in arms:
        if arm.protocol == "per_example":
            masks.append(head_masks(scores[arm.method], levels, arm.order, arm.unit, adapter.count_rule))
        else:
            masks.append(global_masks[arm].to(unpruned.device).expand(size, *global_masks[arm].shape))
    masks = torch.stack(masks, dim=1)  # [batch, arms, levels, sites, heads]
    predictions = masked_predictions(adapter, batch.inputs, masks, unpruned, eval_batch_size, exclude)
    return soft_scores(batch.labels, predictions)


def masked_predictions(
    model: nn.Module | Adapter,
    inputs: dict,
    masks: Tensor,
    unpruned: Tensor,
    eval_batch_size: int,
    exclude: Sequence[int] = (),
) -> Tensor:
    """Predicted answers ``long[batch, *grid]`` of every example under every mask.

    ``masks`` is ``[batch, *grid, sites, heads]`` — any grid of masks per example
    (arms × levels in a sweep). Rows whose mask keeps every head take the unpruned
    prediction ``unpruned[batch]`` without a forward pass; an (example, mask) pair
    that occurs more than once (orders or methods agreeing, levels with equal
    counts) runs once; the rest run in chunks of ``eval_batch_size`` rows, each row
    the example's inputs under its own gates.
    """
    adapter = adapter_for(model)
    batch, *grid = masks.shape[:-2]
    sites, heads = masks.shape[-2:]
    predictions = unpruned.view(batch, *([1] * len(grid))).expand(batch, *grid).clone()
    pruned = ~(masks == 1).flatten(-2).all(-1)  # [batch, *grid]
    rows = pruned.nonzero(as_tuple=True)
    keys = torch.cat([rows[0][:, None].to(masks.dtype), masks[rows].flatten(1)], dim=1)
    distinct, inverse = torch.unique(keys, dim=0, return_inverse=True)
    examples = distinct[:, 0].long()
    distinct_masks = distinct[:, 1:].view(-1, sites, heads)
    out = torch.empty(examples.shape[0], dtype=torch.long, device=predictions.device)
    with torch.no_grad():
        for start in range(0, examples.shape[0], eval_batch_size):
            chunk = slice(start, start + eval_batch_size)
            chunk_inputs = {key: value[examples[chunk]] for key, value in inputs.items()}
            with gates(adapter, distinct_masks[chunk]):
                out[chunk] = predict(adapter.logits(chunk_inputs), exclude)
    predictions[rows] = out[inverse]
    return predictions
