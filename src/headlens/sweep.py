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
attention maps and gradients, level 0 reuses the capture's prediction (a run with
only global arms needs one plain forward for it instead), and all
masked evaluations of a batch (every example × configuration × level) run as
batched forward passes with per-row gates — no Python loop over examples or
heads.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from itertools import product
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import parallel
from .adapters import Adapter, adapter_for
from .data.batch import Batch, Examples
from .edits import capture, eval_mode, gates
from .metrics import accuracy, auc, soft_scores
from .masks import LEVELS, ORDERS, UNITS, check_levels, head_masks, unit_counts
from .errors import InputError, notice
from .resume import Checkpoint, batch_digest, combine, fingerprint
from .scoring import capture_needs, get_method, score_capture

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
    examples in the order of ``example_ids``. For the report: ``sites`` (name, query and
    key stream of each site, in ranking order), ``num_heads`` and ``count_rule`` (how
    levels become pruned counts), ``mean_scores`` (the global protocol's head scores
    ``[sites, heads]`` per method; empty without that protocol) and ``provenance`` (what
    the numbers came from: see :mod:`headlens.provenance`).
    """

    model: str
    levels: list[float]
    curves: list[Curve]
    example_ids: list
    score_ids: list | None
    soft: np.ndarray
    wall_time_s: float
    config: dict = field(default_factory=dict)
    sites: list[dict] = field(default_factory=list)
    num_heads: int = 0
    count_rule: str = ""
    mean_scores: dict[str, list] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

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
            "sites": self.sites,
            "num_heads": self.num_heads,
            "count_rule": self.count_rule,
            "mean_scores": self.mean_scores,
            "provenance": self.provenance,
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
    eval_dtype: str | None = None,
    lrp_dtype: str | None = None,
    seed: int = 0,
    accuracy_divisor: int | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 256,
    progress: bool = True,
    config: dict | None = None,
    name: str | None = None,
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
        eval_dtype: ``"bfloat16"``/``"float16"`` runs the masked evaluation passes under
            autocast (scores are always computed in the model's precision); None: as is.
        lrp_dtype: ``"float64"`` runs the LRP passes (``lrp``, ``attnlrp``) in float64, op by op
            and without a float64 copy of the model; ``"float32"`` in float32; None: as the model.
        seed: seed of the ``random`` method.
        accuracy_divisor: divide summed soft scores by this instead of the number of
            examples (the original VisualBERT's quirk); None for the correct mean.
        checkpoint: a file for partial results, written every ``checkpoint_every``
            examples; a run with the same settings resumes from it (:mod:`headlens.resume`).
        config: recorded as is in the result (and part of the checkpoint's fingerprint).
        name: the model's name in the result (default: the adapter's family).

    Under ``torchrun`` (a process group is initialised) each process computes every
    ``world``-th batch and every process returns the whole, single-process result.

    Returns:
        a :class:`SweepResult`; write it with :func:`headlens.results.write_results`.
    """
    started = time.perf_counter()
    adapter = adapter_for(model)
    data = adapter.examples(data)  # batches of dataset fields become the model's inputs
    score_data = None if score_data is None else adapter.examples(score_data)
    for what, values, valid in (("order", orders, ORDERS), ("unit", units, UNITS), ("protocol", protocols, PROTOCOLS)):
        unknown = [v for v in values if v not in valid]
        if unknown or not values:
            raise ValueError(f"{what}s must be a non-empty subset of {list(valid)}, got {list(values)}")
    methods = [get_method(m).name for m in methods]
    if "global" in protocols and score_data is None:
        raise ValueError("the global protocol needs score_data, a scoring split separate from the evaluation data")
    if eval_dtype not in EVAL_DTYPES:
        raise ValueError(f"eval_dtype must be one of {list(EVAL_DTYPES)}, got {eval_dtype!r}")
    if lrp_dtype not in LRP_DTYPES:
        raise ValueError(f"lrp_dtype must be one of {list(LRP_DTYPES)}, got {lrp_dtype!r}")
    arms = [Arm(*combo) for combo in product(protocols, methods, units, orders)]
    levels = check_levels(levels, "levels")
    for what, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size),
                        ("checkpoint_every", checkpoint_every)):  # fmt: skip
        if value < 1:
            raise InputError(f"{what} must be at least 1, got {value}")
    if len(data) == 0:
        raise InputError("no examples to evaluate")
    rank, size = parallel.world()
    progress = progress and rank == 0
    settings = dict(
        arms=[arm.label for arm in arms], levels=levels, batch_size=batch_size, n=len(data),
        n_score=len(score_data) if score_data is not None else 0, seed=seed, exclude=list(adapter.exclude_answers),
        eval_dtype=eval_dtype, lrp_dtype=lrp_dtype, world=size, config=config,
    )  # fmt: skip
    saved = Checkpoint(checkpoint, fingerprint(settings, adapter.model), rank, size) if checkpoint else None
    state = _resumable(saved.load() if saved else None, saved, data, score_data, batch_size) or {}
    run = _Run(adapter, arms, levels, eval_batch_size, eval_dtype, seed, lrp_dtype)

    with eval_mode(adapter.model):
        means, score_ids = state.get("means") or None, state.get("score_ids")
        score_digest = state.get("score_digest")
        if "global" in protocols and not means:
            means, score_ids, score_digest = run.mean_scores(score_data, methods, batch_size, progress)
        run.set_global_masks(means)
        count = -(-len(data) // batch_size)
        soft = state.get("soft", np.zeros((len(arms), len(data), len(levels)), dtype=np.float32))
        done = state.get("done", np.zeros(count, dtype=bool))
        ids: list = state.get("ids", [None] * len(data))
        digests: list = state.get("digests", [""] * count)
        since_save = 0
        todo = [index for index in parallel.mine(count) if not done[index]]
        for index in tqdm(todo, desc="sweep", disable=not progress):
            positions = _chunk(index, batch_size, len(data))
            batch = data.collate(list(positions))
            digests[index] = batch_digest(batch) if saved else ""
            batch = batch.to(adapter.device)
            soft[:, positions.start : positions.stop] = run.batch(batch).permute(1, 0, 2).cpu().numpy()
            ids[positions.start : positions.stop] = [str(i) for i in batch.ids]
            done[index], since_save = True, since_save + len(positions)
            if saved and since_save >= checkpoint_every:
                saved.save(soft, done, ids, digests, means, score_ids, score_digest)
                since_save = 0
        if saved:
            saved.save(soft, done, ids, digests, means, score_ids, score_digest)
    soft, ids = _reassemble(soft, ids, count, batch_size)

    curves = []
    for index, arm in enumerate(arms):
        acc = accuracy(soft[index], accuracy_divisor)
        counts = unit_counts(adapter.num_sites, adapter.num_heads, levels, arm.unit, adapter.count_rule)
        curves.append(
            Curve(
                name or adapter.family, arm.protocol, arm.method, arm.unit, arm.order,
                levels, counts, [float(a) for a in acc], auc(levels, acc), len(data),
            )  # fmt: skip
        )
    return SweepResult(
        model=name or adapter.family,
        levels=levels,
        curves=curves,
        example_ids=ids,
        score_ids=score_ids,
        soft=soft,
        wall_time_s=time.perf_counter() - started,
        config=dict(config or {}),
        **_report_fields(adapter, means),
    )


def _report_fields(adapter: Adapter, means: dict[str, Tensor] | None) -> dict:
    """What a report needs besides the curves: the sites, the count rule, the global scores."""
    return dict(
        sites=[{"name": s.name, "query": s.query, "key": s.key} for s in adapter.sites],
        num_heads=adapter.num_heads,
        count_rule=adapter.count_rule,
        mean_scores={name: value.cpu().tolist() for name, value in (means or {}).items()},
    )


#: precisions the masked evaluation passes may run in.
EVAL_DTYPES = {None: None, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: precisions the LRP passes may run in (None: the model's).
LRP_DTYPES = (None, "float32", "float64")


def _reassemble(soft: np.ndarray, ids: list, count: int, batch_size: int) -> tuple[np.ndarray, list]:
    """Every rank's batches in batch order (a no-op in a single process)."""
    rank, size = parallel.world()
    if size == 1:
        return soft, ids
    pieces = parallel.gather(
        {i: (soft[:, i * batch_size : (i + 1) * batch_size], ids[i * batch_size : (i + 1) * batch_size])
         for i in parallel.mine(count)}  # fmt: skip
    )
    merged, all_ids = np.empty_like(soft), list(ids)
    for piece in pieces:
        for index, (values, names) in piece.items():
            merged[:, index * batch_size : index * batch_size + values.shape[1]] = values
            all_ids[index * batch_size : index * batch_size + len(names)] = names
    return merged, all_ids


def _resumable(state: dict | None, saved: Checkpoint | None, data: Examples, score_data: Examples | None,
               batch_size: int) -> dict | None:  # fmt: skip
    """``state`` if the data still reads as it did when it was saved, else None (saying why).

    Every batch this process finished is collated again and its digest compared; so is the
    scoring split behind saved global means. The processes of a torchrun group agree: one
    mismatch anywhere makes all of them start afresh."""
    reason = None
    if state is not None:
        for index in np.flatnonzero(state["done"]):
            batch = data.collate(list(_chunk(int(index), batch_size, len(data))))
            if batch_digest(batch) != state["digests"][index]:
                reason = f"the data read for batch {int(index)} (examples {batch.ids[0]}…) changed"
                break
        if reason is None and state.get("means"):
            if score_data is None or _split_digest(score_data, batch_size) != state.get("score_digest"):
                reason = "the global protocol's scoring split changed"
    fresh = state is None or reason is not None
    if any(parallel.gather(fresh)):
        if reason:
            notice(f"{saved.path}: the inputs changed since these partial results were saved ({reason}); "
                   "starting afresh")  # fmt: skip
        return None
    done = int(state["done"].sum())
    notice(f"{saved.path}: resuming: {done} of {len(state['done'])} batches already done, inputs unchanged")
    return state


def _split_digest(data: Examples, batch_size: int) -> str:
    """The digest of a whole split as collated in batches (each process reads its share)."""
    count = -(-len(data) // batch_size)
    mine = {i: batch_digest(data.collate(list(_chunk(i, batch_size, len(data))))) for i in parallel.mine(count)}
    merged = {i: d for piece in parallel.gather(mine) for i, d in piece.items()}
    return combine([merged[i] for i in range(count)])


def global_scores(
    model: nn.Module | Adapter, data: Examples, methods: Sequence[str], batch_size: int = 16, seed: int = 0,
    progress: bool = True,
) -> dict[str, Tensor]:
    """Head scores ``[sites, heads]`` averaged over ``data``, per method (the global protocol's ranking)."""
    adapter = adapter_for(model)
    with eval_mode(adapter.model):
        run = _Run(adapter, [], [], 0, None, seed)
        means = run.mean_scores(data, [get_method(m).name for m in methods], batch_size, progress)[0]
    return {m: means[get_method(m).name] for m in methods}  # keyed as asked ("ours" included)


def _chunk(index: int, batch_size: int, total: int) -> range:
    """Positions of batch ``index`` of ``total`` examples cut into batches of ``batch_size``
    (the unit that processes share and that checkpoints mark done)."""
    return range(index * batch_size, min((index + 1) * batch_size, total))


def _method_scores(
    adapter: Adapter, batch: Batch, methods: Sequence[str], seed: int,
    lrp_dtype: str | None = None,
):  # fmt: skip
    """Capture a batch once and score it with every method: ``(capture, {method: [B, S, H]})``."""
    cap = capture(adapter, batch.inputs, ids=batch.ids, lrp_dtype=lrp_dtype, **capture_needs(methods))
    return cap, {name: score_capture(cap, name, seed) for name in methods}


class _Run:
    """The per-batch work of one sweep (scores, masks, masked evaluation)."""

    def __init__(self, adapter, arms, levels, eval_batch_size, eval_dtype, seed, lrp_dtype=None):
        self.adapter, self.arms, self.levels = adapter, arms, levels
        self.eval_batch_size, self.eval_dtype, self.seed, self.lrp_dtype = eval_batch_size, eval_dtype, seed, lrp_dtype
        self.global_masks: dict[Arm, Tensor] = {}

    def mean_scores(self, data, methods, batch_size, progress) -> tuple[dict[str, Tensor], list, str]:
        """Head scores averaged over a scoring split, per method (``[sites, heads]``), summed in
        batch order whatever the number of processes; with the split's ids and digest."""
        count = -(-len(data) // batch_size)
        mine = {}
        for index in tqdm(parallel.mine(count), desc="global scores", disable=not progress):
            batch = data.collate(list(_chunk(index, batch_size, len(data))))
            digest = batch_digest(batch)
            _, scores = _method_scores(self.adapter, batch.to(self.adapter.device), methods, self.seed, self.lrp_dtype)
            mine[index] = ({name: value.double().sum(0).cpu() for name, value in scores.items()}, list(batch.ids), digest)
        per_batch = {index: value for piece in parallel.gather(mine) for index, value in piece.items()}
        if not per_batch:
            raise InputError("the scoring split of the global protocol is empty")
        sums: dict[str, Tensor] = {}
        ids: list = []
        for index in range(count):
            scores, names, _ = per_batch[index]
            for name, value in scores.items():
                sums[name] = sums.get(name, 0) + value
            ids.extend(str(i) for i in names)
        digest = combine([per_batch[index][2] for index in range(count)])
        return {name: (total / len(ids)).float() for name, total in sums.items()}, ids, digest

    def set_global_masks(self, means: dict[str, Tensor] | None) -> None:
        for arm in self.arms:
            if arm.protocol == "global":
                mean = means[arm.method].to(self.adapter.device)
                self.global_masks[arm] = head_masks(mean, self.levels, arm.order, arm.unit, self.adapter.count_rule)

    def batch(self, batch: Batch) -> Tensor:
        """Soft scores ``[batch, arms, levels]`` of one batch under every arm and level."""
        adapter, levels = self.adapter, self.levels
        per_example_methods = sorted({arm.method for arm in self.arms if arm.protocol == "per_example"})
        if per_example_methods:
            cap, scores = _method_scores(adapter, batch, per_example_methods, self.seed, self.lrp_dtype)
            unpruned = cap.target
        else:
            with torch.no_grad():
                unpruned = adapter.predict(adapter.logits(batch.inputs))
        size = len(batch)
        masks = []
        for arm in self.arms:
            if arm.protocol == "per_example":
                masks.append(head_masks(scores[arm.method], levels, arm.order, arm.unit, adapter.count_rule))
            else:
                masks.append(self.global_masks[arm].expand(size, *self.global_masks[arm].shape))
        masks = torch.stack(masks, dim=1)  # [batch, arms, levels, sites, heads]
        predictions = masked_predictions(
            adapter, batch.inputs, masks, unpruned, self.eval_batch_size, EVAL_DTYPES[self.eval_dtype]
        )
        return soft_scores(batch.labels, predictions)


def masked_predictions(
    model: nn.Module | Adapter,
    inputs: dict,
    masks: Tensor,
    unpruned: Tensor,
    eval_batch_size: int,
    autocast_dtype: torch.dtype | None = None,
) -> Tensor:
    """Predicted answers ``long[batch, *grid]`` of every example under every mask.

    ``masks`` is ``[batch, *grid, sites, heads]`` — any grid of masks per example
    (arms × levels in a sweep). Rows whose mask keeps every head take the unpruned
    prediction ``unpruned[batch]`` without a forward pass; an (example, mask) pair
    that occurs more than once (orders or methods agreeing, levels with equal
    counts) runs once; the rest run in chunks of ``eval_batch_size`` rows, each row
    the example's inputs under its own gates (under autocast to ``autocast_dtype`` if given).
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
    precision = (
        torch.autocast(predictions.device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    )
    with torch.no_grad(), precision:
        for start in range(0, examples.shape[0], eval_batch_size):
            chunk = slice(start, start + eval_batch_size)
            chunk_inputs = {key: value[examples[chunk]] for key, value in inputs.items()}
            with gates(adapter, distinct_masks[chunk]):
                out[chunk] = adapter.predict(adapter.logits(chunk_inputs).float())
    predictions[rows] = out[inverse]
    return predictions
