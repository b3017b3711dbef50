"""Faithfulness of relevance maps: the perturbation test (docs/method.md#faithfulness-of-relevance-maps).

A map is faithful when the input it calls relevant is what the model's answer rests on
(Chefer et al., CVPR 2021 and ICCV 2021). The test removes input units in the map's order and
measures accuracy at fractions 0…0.9 of the units removed:

* ``positive`` — the most relevant first: a faithful map makes accuracy fall fast (a low AUC);
* ``negative`` — the least relevant first: a faithful map keeps accuracy (a high AUC).

Units and what removing one means, per family (the maps of :func:`headlens.relevance.relevance_maps`):

* easy-VQA LXMERT and VisualBERT — **boxes**: the box's slot in the visual attention mask is
  set to 0, so no token attends to it (the same as dropping the box from the input; the text
  is not perturbed);
* ViT — **patches** (not [CLS]): the patch's pixels are set to 0 (the digits' background);
* BERT-family text classifiers (MiniLM / BBC News) — **tokens**: the token's attention-mask
  entry is set to 0 (it is neither attended to nor pooled), never [CLS] (the first real token)
  or [SEP] (the last) or padding.

``n = ⌊fraction · units⌋`` of an example's own removable units go at each fraction (its
real boxes, patches or tokens; ties in relevance are broken by position). The ``random``
order ranks the units by a uniform number fixed by ``(seed, example id, unit)``, so an example
is perturbed the same whatever batch it is in. Every map is computed once, on the unperturbed
input, for the unperturbed model's answer; all perturbed inputs of a batch (examples ×
methods × orders × fractions) run as batched forward passes, each distinct one once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .adapters import Adapter, Inputs, adapter_for
from .data.batch import Examples, iterate
from .edits import capture, capture_options, eval_mode
from .errors import InputError
from .intervals import RESAMPLES, curve_intervals, with_interval
from .metrics import accuracy, auc, soft_scores
from .relevance import map_needs, relevance_from_capture
from .relevance.maps import MAP_METHODS
from .scoring.random import stable_id

FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ORDERS = ("positive", "negative")
#: the map methods a test runs by default, and the seeded random order beside them.
METHODS = tuple(MAP_METHODS)
RANDOM = "random"


def unit_kind(adapter: Adapter) -> str:
    """``"boxes"``, ``"patches"`` or ``"tokens"``: what this family's test removes."""
    table = adapter.family_table
    if table.image is not None and table.image_mask is not None:
        return "boxes"
    if table.image is not None and table.image_tokens is not None and table.text_mask is None:
        return "patches"
    if table.image is None and table.text_mask is not None:
        return "tokens"
    raise InputError(f"no perturbation rule for the {adapter.family} family (boxes, patches or tokens)")


def removable(adapter: Adapter, inputs: Inputs) -> Tensor:
    """``bool[batch, units]``: the units of each example the test may remove."""
    kind, streams = unit_kind(adapter), adapter.streams(inputs)
    if kind == "boxes":
        return streams["image"].mask
    if kind == "patches":
        return streams["image"].mask[:, 1:]  # [CLS] first
    mask = streams["text"].mask
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = mask.sum(1, keepdim=True) - 1
    return mask & (positions > 0) & (positions < last)


def unit_relevance(adapter: Adapter, relevance) -> Tensor:
    """``float[batch, units]``: a :class:`~headlens.relevance.Relevance` read per unit."""
    kind = unit_kind(adapter)
    return relevance.text if kind == "tokens" else relevance.image[:, 1:] if kind == "patches" else relevance.image


def remove_units(adapter: Adapter, inputs: Inputs, removed: Tensor) -> dict[str, Tensor]:
    """``inputs`` (one row per row of ``removed``) with the units ``removed`` ``bool[rows, units]`` taken out."""
    kind, table, out = unit_kind(adapter), adapter.family_table, dict(inputs)
    if kind == "patches":
        pixels = inputs[table.image]
        size = adapter.model.config.patch_size
        grid = pixels.shape[-2] // size, pixels.shape[-1] // size
        keep = (~removed).view(-1, 1, *grid).repeat_interleave(size, 2).repeat_interleave(size, 3)
        out[table.image] = pixels * keep.to(pixels.dtype)
        return out
    key = table.image_mask if kind == "boxes" else table.text_mask
    current = inputs.get(key)
    if current is None:  # a model whose visual mask is optional: every box is real
        current = torch.ones(removed.shape, dtype=torch.long, device=removed.device)
    out[key] = current * (~removed).to(current.dtype)
    return out


def removal_order(relevance: Tensor, allowed: Tensor, order: str) -> Tensor:
    """``long[batch, units]``: units in the order they are removed (the ``allowed`` ones first)."""
    far = torch.finfo(relevance.dtype).max
    key = torch.where(allowed, -relevance if order == "positive" else relevance, far)
    return torch.sort(key, dim=1, stable=True).indices


def removed_at(ranking: Tensor, allowed: Tensor, fractions: Sequence[float]) -> Tensor:
    """``bool[batch, fractions, units]``: the first ``⌊fraction · allowed⌋`` units of each ranking."""
    counts = allowed.sum(1)  # [batch]
    n = torch.floor(torch.tensor(fractions, dtype=torch.float64, device=counts.device)[None] * counts[:, None] + 1e-9)
    rank = torch.empty_like(ranking)
    rank.scatter_(1, ranking, torch.arange(ranking.shape[1], device=ranking.device).expand_as(ranking))
    return rank[:, None, :] < n.long()[:, :, None]


def random_relevance(ids: Sequence, units: int, seed: int = 0) -> Tensor:
    """``float64[batch, units]`` uniform, fixed by ``(seed, example id)``; unit ``u``'s number does
    not depend on how many units the batch has (a prefix of one stream per example)."""
    return torch.from_numpy(np.stack([np.random.default_rng([seed, stable_id(i)]).random(units) for i in ids]))


@dataclass
class FaithfulnessCurve:
    """Accuracy against fraction of units removed for one map method and order."""

    method: str
    order: str
    fractions: list[float]
    accuracy: list[float]
    auc: float
    auc_low: float | None = None
    auc_high: float | None = None
    accuracy_low: list[float] | None = None
    accuracy_high: list[float] | None = None


@dataclass
class FaithfulnessResult:
    """A perturbation test: ``soft`` ``float[curves, examples, fractions]`` per-example soft scores."""

    model: str
    unit: str
    curves: list[FaithfulnessCurve]
    example_ids: list
    soft: np.ndarray
    extra: dict = field(default_factory=dict)

    def curve(self, method: str, order: str) -> FaithfulnessCurve:
        for c in self.curves:
            if (c.method, c.order) == (method, order):
                return c
        raise KeyError(f"no curve {method}/{order} in this test")

    def to_dict(self) -> dict:
        return {"model": self.model, "unit": self.unit, "n_examples": len(self.example_ids),
                "curves": [asdict(c) for c in self.curves], **self.extra}  # fmt: skip


def perturbed_soft(
    adapter: Adapter, batch, methods: Sequence[str], fractions: Sequence[float], seed: int, eval_batch_size: int
) -> Tensor:
    """Soft scores ``[batch, methods (+ random), orders, fractions]`` of one batch on the model's device."""
    inputs = batch.inputs
    with torch.enable_grad():
        cap = capture(adapter, inputs, ids=batch.ids, **capture_options(map_needs(methods)))
    units, rankings = removable(adapter, inputs), []
    for method in [*methods, RANDOM]:
        if method == RANDOM:
            values = random_relevance(batch.ids, units.shape[1], seed).to(units.device)
        else:
            values = unit_relevance(adapter, relevance_from_capture(adapter, cap, inputs, method))
        rankings += [removal_order(values.double(), units, order) for order in ORDERS]
    removed = torch.stack([removed_at(r, units, fractions) for r in rankings], 1)  # [B, M·O, F, U]
    b, arms, f, _ = removed.shape
    answers = cap.target.view(b, 1, 1).expand(b, arms, f).clone()
    rows = removed.flatten(-1).any(-1).nonzero(as_tuple=True)
    keys = torch.cat([rows[0][:, None], removed[rows].long()], dim=1)
    distinct, inverse = torch.unique(keys, dim=0, return_inverse=True)  # maps agreeing on an input run once
    out = torch.empty(len(distinct), dtype=torch.long, device=answers.device)
    with torch.no_grad():
        for start in range(0, len(distinct), eval_batch_size):
            chunk = distinct[start : start + eval_batch_size]
            chosen = {key: value[chunk[:, 0]] for key, value in inputs.items()}
            logits = adapter.logits(remove_units(adapter, chosen, chunk[:, 1:] > 0))
            out[start : start + len(chunk)] = adapter.predict(logits.float())
    answers[rows] = out[inverse]
    return soft_scores(batch.labels.to(answers.device), answers).view(b, len(methods) + 1, len(ORDERS), f)


def perturbation_test(
    model: nn.Module | Adapter,
    data: Examples,
    methods: Sequence[str] = METHODS,
    fractions: Sequence[float] = FRACTIONS,
    batch_size: int = 16,
    eval_batch_size: int = 256,
    seed: int = 0,
    bootstrap: int = RESAMPLES,
    name: str | None = None,
) -> FaithfulnessResult:
    """The perturbation test of every map method in ``methods`` (and a random order) on ``data``:
    accuracy at each fraction removed, AUC (:func:`headlens.metrics.auc`) and, with ``bootstrap``
    resamples, 95 % intervals over the examples (:mod:`headlens.intervals`)."""
    adapter = adapter_for(model)
    data = adapter.examples(data)
    fractions = [float(x) for x in fractions]
    if len(data) == 0:
        raise InputError("no examples for the perturbation test")
    if fractions[0] != 0.0 or any(b <= a for a, b in zip(fractions, fractions[1:])) or fractions[-1] >= 1:
        raise InputError(f"fractions must start at 0 and increase below 1, got {fractions}")
    unit_kind(adapter)
    parts, ids = [], []
    with eval_mode(adapter.model):
        for _, batch in iterate(data, batch_size):
            batch = batch.to(adapter.device)
            parts.append(perturbed_soft(adapter, batch, list(methods), fractions, seed, eval_batch_size).cpu())
            ids += [str(i) for i in batch.ids]
    soft = torch.cat(parts).flatten(1, 2).permute(1, 0, 2).double().numpy()  # [curves, examples, fractions]
    labels = [(m, o) for m in [*methods, RANDOM] for o in ORDERS]
    curves = []
    for (method, order), values in zip(labels, soft):
        acc = accuracy(values)
        curves.append(FaithfulnessCurve(method, order, fractions, [float(a) for a in acc], auc(fractions, acc)))
    if bootstrap:
        found = curve_intervals(soft, fractions, resamples=bootstrap, seed=seed)
        for index, c in enumerate(curves):
            c.auc_low, c.auc_high = float(found.auc_low[index]), float(found.auc_high[index])
            c.accuracy_low, c.accuracy_high = found.accuracy_low[index].tolist(), found.accuracy_high[index].tolist()
    return FaithfulnessResult(name or adapter.family, unit_kind(adapter), curves, ids, soft)


def faithfulness_table(result: FaithfulnessResult) -> list[str]:
    """Markdown: one row per map method, AUC with its interval for both orders."""
    lines = [
        f"| map | most relevant {result.unit} removed first (lower is better) | least relevant first (higher is better) |",
        "|---|---|---|",
    ]
    for method in dict.fromkeys(c.method for c in result.curves):
        cells = [result.curve(method, order) for order in ORDERS]
        lines.append(f"| {method} | " + " | ".join(with_interval(c.auc, c.auc_low, c.auc_high) for c in cells) + " |")
    return lines
