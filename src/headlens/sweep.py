"""Pruning sweeps: score heads, prune them level by level, measure accuracy (docs/method.md#protocols).

Two protocols:

* ``per_example`` (the original's): each example is scored on the unpruned model, ranked,
  masked with its own ranking at every level and evaluated on itself. Only accuracies are
  averaged over examples.
* ``global``: scores are averaged over a separate scoring split, giving one ranking (and one
  set of masks) that is evaluated on every example — the setting that compresses a model.

A sweep covers every (protocol, method, unit, order) combination of its
:class:`SweepOptions` in one pass over the data: one capture per batch serves every method,
level 0 reuses the capture's prediction (a run with only global arms needs one plain forward
for it instead), and all masked evaluations of a batch (every example × arm × level) run as
batched forward passes with per-row gates (:func:`headlens.evaluate.masked_predictions`) —
no Python loop over examples or heads. Partial results (:mod:`headlens.resume`) and torchrun
sharding (:mod:`headlens.parallel`) are plumbing around that loop.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from itertools import product
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import parallel
from .adapters import Adapter, adapter_for
from .correlation import correlation_table
from .data.batch import Batch, Examples, Subset, batch_count, batch_positions
from .edits import eval_mode
from .errors import InputError, check_choices, choose
from .evaluate import EVAL_DTYPES, masked_predictions, predictions
from .intervals import RESAMPLES, curve_intervals
from .iterative import iterative_masks, ranking_name
from .masks import LEVELS, ORDERS, UNITS, check_levels, group_size, head_masks, unit_counts
from .metrics import accuracy, auc, soft_scores
from .resume import Checkpoint, batch_digest, combine, fingerprint, resumable
from .scoring import get_method, score_batch, score_capture

PROTOCOLS = ("per_example", "global")
#: what a score differentiates: the logit of the model's predicted answer, or of the example's
#: label (its highest-scoring answer: for language-model data the next token the data gives).
TARGETS = ("predicted", "label")
#: precisions the LRP passes may run in (None: the model's).
LRP_DTYPES = (None, "float32", "float64")
#: configuration keys that change how a run goes, not its numbers (left out of the resume key).
NOT_DECIDING = ("out_dir", "progress", "report", "sweep.resume", "sweep.checkpoint_every")


def curve_label(method: str, unit: str, order: str, protocol: str) -> str:
    """The one name of a curve, ``method/unit/order/protocol`` (tables, result files, resume keys)."""
    return f"{method}/{unit}/{order}/{protocol}"


@dataclass(frozen=True)
class Arm:
    """One curve of a sweep: a protocol, a scoring method, a unit and an order, and whether its
    ranking is re-scored before each level (:mod:`headlens.iterative`); ``replica`` > 0 is an
    extra seed of the ``random`` method (``seed + replica``: the random band)."""

    protocol: str
    method: str
    unit: str
    order: str
    replica: int = 0
    iterative: bool = False

    @property
    def ranking(self) -> str:
        """The method's name as the curve carries it (``grad+iterative`` when iterative)."""
        return ranking_name(self.method, self.iterative)

    @property
    def label(self) -> str:
        return curve_label(self.ranking, self.unit, self.order, self.protocol) + self.suffix

    @property
    def suffix(self) -> str:
        return f"#{self.replica}" if self.replica else ""



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
    # bootstrap 95 % intervals over examples (headlens.intervals; None in files written before them)
    accuracy_low: list[float] | None = None
    accuracy_high: list[float] | None = None
    auc_low: float | None = None
    auc_high: float | None = None
    # random rankings over ``random_seeds`` seeds: every seed's AUC and the band (min, max) per level
    seed_auc: list[float] | None = None
    band_low: list[float] | None = None
    band_high: list[float] | None = None
    metrics: dict[str, list[float]] = field(default_factory=dict)  # a sweep metric's curves (headlens.lm)

    @property
    def label(self) -> str:
        return curve_label(self.method, self.unit, self.order, self.protocol)


@dataclass(frozen=True)
class SweepOptions:
    """What a sweep does, in one typed object; checked when made.

    Attributes:
        methods: scoring method names (see :data:`headlens.scoring.METHODS`; aliases accepted).
        orders: ``positive`` (prune the highest scores first) and/or ``negative``.
        units: ``head``, ``layer`` (a layer is one site, all its heads) and/or ``kv_group`` (a
            key/value head with the query heads sharing it: :func:`headlens.masks.head_masks`).
        protocols: ``per_example`` and/or ``global``.
        levels: fractions pruned, strictly increasing from 0; pruned counts follow the
            adapter's count rule (docs/method.md#pruned-counts).
        batch_size: examples per capture (forward + backward).
        eval_batch_size: rows per masked forward pass (a row is one example under one mask).
        eval_dtype: ``"bfloat16"``/``"float16"`` runs the masked evaluation passes under
            autocast (scores are always computed in the model's precision); None: as is.
        lrp_dtype: ``"float64"`` runs the LRP passes (``lrp``, ``attnlrp``) in float64, op by op
            and without a float64 copy of the model; ``"float32"`` in float32; None: as the model.
        seed: seed of the ``random`` method (and of the bootstrap).
        random_seeds: rankings of the ``random`` method with seeds ``seed … seed + random_seeds − 1``;
            its curve is the first seed's, with every seed's AUC and the band they span.
        bootstrap: resamples of the bootstrap intervals over examples (:mod:`headlens.intervals`);
            0: no intervals.
        iterative: re-score before each level with the heads pruned so far gated off, for every
            arm (:mod:`headlens.iterative`; units ``head`` and ``layer``); its curves carry the
            method as ``<method>+iterative``.
        correlation: the number of examples (the first of the scoring split, else of ``data``) on
            which to measure the Spearman correlation of every first-order method with ``exact``
            (:mod:`headlens.correlation`; in the result's ``correlations``); 0: none.
        target: ``predicted`` (scores differentiate the logit of the model's answer) or ``label``
            (of the example's label; language-model data: the next token the data gives).
        metric: an object measuring more than accuracy at every level, e.g.
            :class:`headlens.lm.LanguageModelMetric` (its curves go to each :class:`Curve`'s
            ``metrics``); such a sweep does not keep partial results. A metric whose
            ``soft(measured)`` returns per-example soft scores (``LanguageModelMetric(accuracy=
            "tokens")``) gives the accuracy curves too.
        accuracy_divisor: divide summed soft scores by this instead of the number of
            examples (the original VisualBERT's quirk); None for the correct mean.
        checkpoint: a file for partial results, written every ``checkpoint_every`` examples;
            a run with the same settings, model and data resumes from it (:mod:`headlens.resume`).
        progress: show progress bars.
        config: recorded as is in the result (its keys that decide numbers are part of the
            resume key).
        name: the model's name in the result (default: the adapter's family).
    """

    methods: Sequence[str] = ("grad",)
    orders: Sequence[str] = ORDERS
    units: Sequence[str] = ("head", "layer")
    protocols: Sequence[str] = ("per_example",)
    levels: Sequence[float] = LEVELS
    batch_size: int = 16
    eval_batch_size: int = 256
    eval_dtype: str | None = None
    lrp_dtype: str | None = None
    seed: int = 0
    random_seeds: int = 1
    bootstrap: int = RESAMPLES
    iterative: bool = False
    correlation: int = 0
    target: str = "predicted"
    metric: object | None = None
    accuracy_divisor: int | None = None
    checkpoint: str | Path | None = None
    checkpoint_every: int = 256
    progress: bool = True
    config: dict | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        normalised = dict(
            methods=tuple(get_method(m).name for m in self.methods),
            orders=tuple(check_choices(self.orders, ORDERS, "orders")),
            units=tuple(check_choices(self.units, UNITS, "units")),
            protocols=tuple(check_choices(self.protocols, PROTOCOLS, "protocols")),
            levels=tuple(check_levels(self.levels, "levels")),
            eval_dtype=choose(self.eval_dtype, EVAL_DTYPES, "eval_dtype"),
            lrp_dtype=choose(self.lrp_dtype, LRP_DTYPES, "lrp_dtype"),
            target=choose(self.target, TARGETS, "target"),
        )
        for name, value in normalised.items():
            object.__setattr__(self, name, value)
        for name in ("batch_size", "eval_batch_size", "checkpoint_every", "random_seeds"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.bootstrap < 0:
            raise InputError(f"bootstrap must be 0 (no intervals) or a number of resamples, got {self.bootstrap}")
        if self.correlation < 0:
            raise InputError(f"correlation must be a number of examples (0: none), got {self.correlation}")
        if self.iterative and "kv_group" in self.units:
            raise InputError("iterative pruning re-scores heads and layers; give units without kv_group")
        if self.metric is not None and self.checkpoint is not None:
            raise InputError(f"a sweep with the {self.metric.name} metric keeps no partial results: give checkpoint=None")

    @property
    def arms(self) -> list[Arm]:
        """Every curve's arm, then the extra seeds of the ``random`` arms."""
        arms = [Arm(*combo, iterative=self.iterative)
                for combo in product(self.protocols, self.methods, self.units, self.orders)]  # fmt: skip
        extra = [Arm(a.protocol, a.method, a.unit, a.order, replica, a.iterative) for replica in range(1, self.random_seeds)
                 for a in arms if a.method == "random"]  # fmt: skip
        return arms + extra

    def key_settings(self, adapter: Adapter, n: int, n_score: int, world: int) -> dict:
        """Everything besides the model and the data that decides the numbers (the resume key)."""
        return dict(
            arms=[arm.label for arm in self.arms], levels=list(self.levels), batch_size=self.batch_size, n=n,
            n_score=n_score, seed=self.seed, random_seeds=self.random_seeds, exclude=list(adapter.exclude_answers), eval_dtype=self.eval_dtype,
            lrp_dtype=self.lrp_dtype, accuracy_divisor=self.accuracy_divisor, world=world, target=self.target,
            config=_deciding(self.config or {}),
        )  # fmt: skip


def _deciding(config: dict) -> dict:
    """``config`` without :data:`NOT_DECIDING` keys."""
    kept = {}
    for key, value in config.items():
        if key in NOT_DECIDING:
            continue
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if f"{key}.{k}" not in NOT_DECIDING}
        kept[key] = value
    return kept


@dataclass
class SweepResult:
    """Everything a sweep measured.

    ``soft`` holds the per-example soft scores, ``float[arms, examples, levels]``,
    examples in the order of ``example_ids``. For the report: ``sites`` (name, query and
    key stream of each site, in ranking order), ``num_heads``, ``kv_heads`` (key/value heads
    per site: the groups of ``kv_group`` curves) and ``count_rule`` (how
    levels become pruned counts), ``mean_scores`` (the global protocol's head scores
    ``[sites, heads]`` per method; empty without that protocol) and ``provenance`` (what
    the numbers came from: see :mod:`headlens.provenance`). ``correlations``: each first-order
    method's Spearman correlation with ``exact`` (:func:`headlens.correlation.correlation_table`;
    empty unless asked for, and then left out of ``results.json``).
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
    kv_heads: int | None = None
    mean_scores: dict[str, list] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    #: per random curve (label) with several seeds, the soft scores of every seed ``[seeds, examples, levels]``.
    replicas: dict[str, np.ndarray] = field(default_factory=dict)
    correlations: dict = field(default_factory=dict)

    def curve(self, method: str, unit: str = "head", order: str = "negative", protocol: str = "per_example") -> Curve:
        for curve in self.curves:
            if curve.label == curve_label(method, unit, order, protocol):
                return curve
        raise KeyError(f"no curve {curve_label(method, unit, order, protocol)} in this sweep")

    def to_dict(self) -> dict:
        """The content of ``results.json`` (per-example scores are kept out: see ``soft``)."""
        return {
            "model": self.model, "config": self.config, "levels": self.levels, "n_examples": len(self.example_ids),
            "example_ids": self.example_ids, "score_ids": self.score_ids, "wall_time_s": self.wall_time_s,
            "curves": [asdict(curve) for curve in self.curves], "sites": self.sites, "num_heads": self.num_heads,
            "count_rule": self.count_rule, "mean_scores": self.mean_scores, "provenance": self.provenance,
            **({"correlations": self.correlations} if self.correlations else {}),
            "kv_heads": self.kv_heads,
        }  # fmt: skip


def sweep(
    model: nn.Module | Adapter,
    data: Examples,
    score_data: Examples | None = None,
    options: SweepOptions | None = None,
    **keywords,
) -> SweepResult:
    """Run the pruning sweeps ``options`` describe (or :class:`SweepOptions` made of ``keywords``).

    Args:
        model: an HF model with a headlens adapter, or the adapter. Runs on the model's device,
            in eval mode (its modes are restored afterwards).
        data: the examples to evaluate (all of them, in order): a dataset of fields, or batches
            ready for this model.
        score_data: the scoring split of the ``global`` protocol; must differ from ``data``.

    Under ``torchrun`` (a process group is initialised) each process computes every
    ``world``-th batch and every process returns the whole, single-process result.

    Returns:
        a :class:`SweepResult`; write it with :func:`headlens.results.write_results`.
    """
    started = time.perf_counter()
    if options is not None and keywords:
        raise TypeError(f"give either options or keywords, not both (got {sorted(keywords)})")
    options = options if options is not None else SweepOptions(**keywords)
    if len(data) == 0:
        raise InputError("no examples to evaluate")
    if "global" in options.protocols and (score_data is None or score_data is data):
        raise InputError("the global protocol needs score_data, a scoring split separate from the evaluation data")
    adapter = adapter_for(model)
    for unit in options.units:  # before any work: kv_group on a multi-query model is refused
        group_size(unit, adapter.num_heads, adapter.kv_heads)
    data = adapter.examples(data)  # batches of dataset fields become the model's inputs
    score_data = None if score_data is None else adapter.examples(score_data)
    rank, world = parallel.world()
    progress = options.progress and rank == 0
    key = fingerprint(options.key_settings(adapter, len(data), len(score_data or ()), world), adapter.model)
    saved = Checkpoint(options.checkpoint, key, rank, world) if options.checkpoint else None
    state = resumable(saved.load() if saved else None, saved, data, score_data, options.batch_size) or {}
    arms, levels, size = options.arms, list(options.levels), options.batch_size

    with eval_mode(adapter.model):
        means, score_ids, score_digest = state.get("means") or None, state.get("score_ids"), state.get("score_digest")
        if "global" in options.protocols and not means:
            means, score_ids, score_digest = global_scores(
                adapter, score_data, options.methods, size, options.seed, options.lrp_dtype, progress, options.target,
                rows=options.eval_batch_size,
            )
            for arm in {a.suffix: a for a in arms if a.replica and a.protocol == "global"}.values():
                more, _, _ = global_scores(adapter, score_data, ["random"], size, options.seed + arm.replica,
                                           progress=progress)  # fmt: skip
                means["random" + arm.suffix] = more["random"]
        work = _Batches(adapter, options, means, score_data)
        count = batch_count(len(data), size)
        soft = state.get("soft", np.zeros((len(arms), len(data), len(levels)), dtype=np.float32))
        done = state.get("done", np.zeros(count, dtype=bool))
        ids: list = state.get("ids", [None] * len(data))
        digests: list = state.get("digests", [""] * count)
        measured = np.zeros((len(arms), len(data), len(levels), 3)) if options.metric is not None else None
        since_save = 0
        for index in tqdm([i for i in parallel.mine(count) if not done[i]], desc="sweep", disable=not progress):
            positions = batch_positions(index, size, len(data))
            batch = data.collate(list(positions))
            digests[index] = batch_digest(batch) if saved else ""
            batch = batch.to(adapter.device)
            soft[:, positions.start : positions.stop] = work.soft_scores(batch).permute(1, 0, 2).cpu().numpy()
            if measured is not None:
                measured[:, positions.start : positions.stop] = work.measured.transpose(0, 1).cpu().numpy()
            ids[positions.start : positions.stop] = [str(i) for i in batch.ids]
            done[index], since_save = True, since_save + len(positions)
            if saved and since_save >= options.checkpoint_every:
                saved.save(soft, done, ids, digests, means, score_ids, score_digest)
                since_save = 0
        if saved:
            saved.save(soft, done, ids, digests, means, score_ids, score_digest)
    soft, ids = parallel.reassemble(soft, ids, count, size)
    correlations = {}
    if options.correlation:
        source = score_data if score_data is not None else data
        correlations = correlation_table(adapter, Subset(source, range(min(options.correlation, len(source)))), batch_size=size,
                                         rows=options.eval_batch_size, lrp_dtype=options.lrp_dtype, progress=progress)  # fmt: skip
    if measured is not None:
        measured, _ = parallel.reassemble(measured, ids, count, size)
        measured = options.metric.per_level(measured)

    name = options.name or adapter.family
    main = [index for index, arm in enumerate(arms) if not arm.replica]
    curves = []
    for index in main:
        arm = arms[index]
        acc = accuracy(soft[index], options.accuracy_divisor)
        counts = unit_counts(adapter.num_sites, adapter.num_heads, levels, arm.unit, adapter.count_rule, adapter.kv_heads)
        curves.append(Curve(name, arm.protocol, arm.ranking, arm.unit, arm.order, levels, counts,
                            [float(a) for a in acc], auc(levels, acc), len(data)))  # fmt: skip
        if measured is not None:
            curves[-1].metrics = {name: [float(v) for v in values[index]] for name, values in measured.items()}
    if options.bootstrap:
        add_intervals(curves, soft[main], options.accuracy_divisor, options.bootstrap, options.seed)
    replicas = random_band(curves, arms, soft, options.accuracy_divisor)
    return SweepResult(
        model=name, levels=levels, curves=curves, example_ids=ids, score_ids=score_ids, soft=soft[main],
        wall_time_s=time.perf_counter() - started, config=dict(options.config or {}),
        sites=[{"name": s.name, "query": s.query, "key": s.key} for s in adapter.sites], num_heads=adapter.num_heads,
        count_rule=adapter.count_rule, kv_heads=adapter.kv_heads, replicas=replicas,
        mean_scores={m: value.cpu().tolist() for m, value in (means or {}).items() if "#" not in m},
        correlations=correlations,
    )  # fmt: skip


def add_intervals(curves: list[Curve], soft: np.ndarray, divisor: int | None, resamples: int, seed: int) -> None:
    """Set every curve's bootstrap intervals from its per-example soft scores ``[curves, examples, levels]``."""
    found = curve_intervals(soft, curves[0].levels, divisor, resamples, seed)
    for index, curve in enumerate(curves):
        curve.accuracy_low = [float(v) for v in found.accuracy_low[index]]
        curve.accuracy_high = [float(v) for v in found.accuracy_high[index]]
        curve.auc_low, curve.auc_high = float(found.auc_low[index]), float(found.auc_high[index])


def random_band(curves: list[Curve], arms: list[Arm], soft: np.ndarray, divisor: int | None) -> dict[str, np.ndarray]:
    """Give each random curve with extra seeds its seeds' AUCs and band; returns their soft scores by label."""
    replicas = {}
    for curve in curves:
        seeds = [i for i, arm in enumerate(arms) if arm.label.split("#")[0] == curve.label]
        if len(seeds) < 2:
            continue
        replicas[curve.label] = soft[seeds]
        acc = np.stack([accuracy(soft[i], divisor) for i in seeds])
        curve.seed_auc = [auc(curve.levels, a) for a in acc]
        curve.band_low, curve.band_high = acc.min(0).tolist(), acc.max(0).tolist()
    return replicas


def global_scores(
    model: nn.Module | Adapter, data: Examples, methods: Sequence[str], batch_size: int = 16, seed: int = 0,
    lrp_dtype: str | None = None, progress: bool = True, target: str = "predicted", gate: Tensor | None = None,
    rows: int | None = None,
) -> tuple[dict[str, Tensor], list[str], str]:
    """The global protocol's ranking: head scores ``[sites, heads]`` averaged over ``data``, per
    method (keyed as asked: aliases included), summed in batch order whatever the number of
    processes; with the split's example ids and its digest (:func:`headlens.resume.batch_digest`).
    ``target``: see :class:`SweepOptions`. ``gate`` (``[sites, heads]``) scores the model with
    those gates on, each example's target the unpruned model's answer (iterative pruning);
    ``rows``: see :func:`headlens.scoring.score_batch`."""
    adapter = adapter_for(model)
    data = adapter.examples(data)
    names = {method: get_method(method).name for method in methods}
    count = batch_count(len(data), batch_size)
    if count == 0:
        raise InputError("the scoring split of the global protocol is empty")
    mine = {}
    with eval_mode(adapter.model):
        for index in tqdm(parallel.mine(count), desc="global scores", disable=not progress):
            batch = data.collate(list(batch_positions(index, batch_size, len(data))))
            digest = batch_digest(batch)
            batch = batch.to(adapter.device)
            gated, aimed = {}, labelled_target(batch, target)
            if gate is not None:
                gated = dict(gate=gate.to(adapter.device).expand(len(batch), *gate.shape))
                aimed = predictions(adapter, batch.inputs) if aimed is None else aimed
            _, scores = score_batch(adapter, batch.inputs, sorted(set(names.values())), seed, batch.ids, lrp_dtype,
                                    target=aimed, rows=rows, **gated)  # fmt: skip
            mine[index] = ({m: value.double().sum(0).cpu() for m, value in scores.items()}, list(batch.ids), digest)
    per_batch = {index: value for piece in parallel.gather(mine) for index, value in piece.items()}
    sums: dict[str, Tensor] = {}
    ids: list[str] = []
    for index in range(count):
        scores, batch_ids, _ = per_batch[index]
        for method, value in scores.items():
            sums[method] = sums.get(method, 0) + value
        ids.extend(str(i) for i in batch_ids)
    means = {asked: (sums[canonical] / len(ids)).float() for asked, canonical in names.items()}
    return means, ids, combine([per_batch[index][2] for index in range(count)])


def labelled_target(batch: Batch, target: str) -> Tensor | None:
    """The answers a score differentiates: the batch's labels (their highest-scoring answer) for
    ``target="label"``, None (the model's predictions) for ``"predicted"``."""
    return batch.labels.argmax(-1) if target == "label" else None


class _Batches:
    """The per-batch work of one sweep: every arm's masks at every level, then one batched
    masked evaluation."""

    def __init__(self, adapter: Adapter, options: SweepOptions, means: dict[str, Tensor] | None,
                 score_data: Examples | None = None):  # fmt: skip
        self.adapter, self.options, self.arms = adapter, options, options.arms
        self.measured: Tensor | None = None  # the metric's values of the last batch ``[batch, arms, levels, …]``
        self.per_example_methods = sorted({arm.method for arm in self.arms if arm.protocol == "per_example"})
        self.global_masks = {arm: self.global_arm_masks(arm, means, score_data) for arm in self.arms
                             if arm.protocol == "global"}  # fmt: skip
        self.replicas = sorted({arm.replica for arm in self.arms if arm.replica and arm.protocol == "per_example"})

    def global_arm_masks(self, arm: Arm, means: dict[str, Tensor], score_data: Examples | None) -> Tensor:
        """``[levels, sites, heads]`` masks of a global arm; iterative: re-scoring ``score_data``."""
        adapter, options = self.adapter, self.options
        scores = means[arm.method + arm.suffix].to(adapter.device)
        if not arm.iterative:
            return head_masks(scores, options.levels, arm.order, arm.unit, adapter.count_rule, adapter.kv_heads)

        def rescore(keep: Tensor) -> Tensor:
            return global_scores(adapter, score_data, [arm.method], options.batch_size, options.seed + arm.replica,
                                 options.lrp_dtype, progress=False, target=options.target, gate=keep,
                                 rows=options.eval_batch_size)[0][arm.method]  # fmt: skip

        return iterative_masks(rescore, scores, options.levels, arm.order, arm.unit, adapter.count_rule)

    def per_example_masks(self, arm: Arm, batch: Batch, scores: dict[str, Tensor], unpruned: Tensor,
                          target: Tensor | None) -> Tensor:  # fmt: skip
        """``[batch, levels, sites, heads]`` masks of a per-example arm; iterative: each example
        re-scored under its own mask, its target the unpruned scoring target."""
        adapter, options = self.adapter, self.options
        first = scores[arm.method + arm.suffix]
        if not arm.iterative:
            return head_masks(first, options.levels, arm.order, arm.unit, adapter.count_rule, adapter.kv_heads)

        def rescore(keep: Tensor) -> Tensor:
            return score_batch(adapter, batch.inputs, [arm.method], options.seed + arm.replica, batch.ids,
                               options.lrp_dtype, gate=keep, target=unpruned if target is None else target,
                               rows=options.eval_batch_size)[1][arm.method]  # fmt: skip

        return iterative_masks(rescore, first, options.levels, arm.order, arm.unit, adapter.count_rule)

    def soft_scores(self, batch: Batch) -> Tensor:
        """Soft scores ``[batch, arms, levels]`` of one batch under every arm and level."""
        adapter, options = self.adapter, self.options
        aimed = labelled_target(batch, options.target)
        if self.per_example_methods:
            cap, scores = score_batch(adapter, batch.inputs, self.per_example_methods, options.seed, batch.ids,
                                      options.lrp_dtype, target=aimed, rows=options.eval_batch_size)  # fmt: skip
            unpruned = cap.target if options.target == "predicted" else adapter.predict(cap.logits)
            for replica in self.replicas:
                scores[f"random#{replica}"] = score_capture(cap, "random", options.seed + replica)
        else:
            unpruned = None  # the unpruned answers, made below only if the target's accuracy is measured
        masks = [
            self.per_example_masks(arm, batch, scores, unpruned, aimed)
            if arm.protocol == "per_example" else self.global_masks[arm].expand(len(batch), *self.global_masks[arm].shape)
            for arm in self.arms
        ]  # fmt: skip
        masks = torch.stack(masks, dim=1)
        if options.metric is not None:
            self.measured = options.metric.measure(adapter, batch, masks, options.eval_batch_size,
                                                   EVAL_DTYPES[options.eval_dtype])  # fmt: skip
            soft = options.metric.soft(self.measured) if hasattr(options.metric, "soft") else None
            if soft is not None:  # the metric's own accuracy (next-token): no target predictions needed
                return soft.to(torch.float32)
        if unpruned is None:
            unpruned = predictions(adapter, batch.inputs)
        answers = masked_predictions(adapter, batch.inputs, masks, unpruned, options.eval_batch_size,
                                     EVAL_DTYPES[options.eval_dtype])  # fmt: skip
        return soft_scores(batch.labels, answers)


#: every option a sweep takes (for front ends that build :class:`SweepOptions` from a config).
OPTION_NAMES = tuple(f.name for f in fields(SweepOptions))
