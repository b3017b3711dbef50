"""From scores to masks: pruned counts per level, rankings, per-level keep masks.

* **positive** pruning removes the highest-scored units first, **negative** the
  lowest (most negative) first. Ties go to the lower flat index first, in both orders.
* all heads of the network are ranked jointly (no per-site quota), flattened in
  site order: head ``h`` of site ``s`` is unit ``s·H + h``.
* a **layer** is one site with all its heads; its score is the mean of its heads'.
* a **kv_group** (grouped-query attention) is one key/value head of a site with the
  consecutive query heads that share it; its score is the *sum* of theirs
  (docs/method.md#pruning-units-under-grouped-query-attention). With one key/value head
  per site (multi-query attention) a group is the whole site: asking for ``kv_group``
  there is an error that says to use ``layer``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .errors import InputError
from .scoring import layer_scores

#: The pruning levels, the literal list of the original: counts depend on its float values.
LEVELS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ORDERS = ("positive", "negative")
UNITS = ("head", "layer", "kv_group")
COUNT_RULES = ("prune_floor", "keep_floor")


def check_levels(levels, where: str, error: type[Exception] = InputError) -> list[float]:
    """Pruning levels as floats, or ``error`` naming ``where``: a non-empty, strictly increasing list in
    [0, 1) starting at 0 (a curve starts at the unpruned model; its AUC counts from there)."""
    values = [float(level) for level in levels]
    if not values:
        raise error(f"{where}: no levels; give fractions pruned such as [0, 0.1, …, 0.9]")
    if any(not 0 <= v < 1 for v in values):
        raise error(f"{where}: every level must be a fraction in [0, 1), got {values}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise error(f"{where}: levels must be strictly increasing, got {values}")
    if values[0] != 0:
        raise error(f"{where}: the first level must be 0 (the unpruned model, where the AUC starts), got {values}")
    return values


def pruned_count(total: int, level: float, rule: str) -> int:
    """How many of ``total`` units are pruned at ``level``, exactly as the original computed it.

    ``prune_floor`` (VisualBERT): ``int(level * total)``; ``keep_floor`` (LXMERT):
    ``total - int((1 - level) * total)``, in double precision — float error matters,
    e.g. ``(1 - 0.8) * 40 == 7.999…`` so 33 of 40 are pruned at 80 %.
    """
    if rule == "prune_floor":
        return int(level * total)
    if rule == "keep_floor":
        return total - int((1 - level) * total)
    raise ValueError(f"unknown count rule {rule!r}; valid: {', '.join(COUNT_RULES)}")


def pruned_counts(total: int, levels: Sequence[float], rule: str) -> list[int]:
    return [pruned_count(total, float(level), rule) for level in levels]


def prune_ranks(scores: Tensor, order: str) -> Tensor:
    """``long[..., N]``: position of each unit in the pruning order (0 = pruned first)."""
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; valid: {', '.join(ORDERS)}")
    if not torch.isfinite(scores).all():
        raise ValueError("cannot rank non-finite scores")
    sequence = torch.sort(scores, dim=-1, descending=order == "positive", stable=True).indices
    positions = torch.arange(scores.shape[-1], device=scores.device).expand_as(sequence)
    return torch.empty_like(sequence).scatter_(-1, sequence, positions)


def keep_masks(scores: Tensor, counts: Sequence[int], order: str) -> Tensor:
    """``bool[..., L, N]``: True where a unit survives, for each pruned count in ``counts``."""
    ranks = prune_ranks(scores, order)
    counts = torch.as_tensor(list(counts), device=scores.device)
    return ranks.unsqueeze(-2) >= counts[:, None]


def group_size(unit: str, heads: int, kv_heads: int | None = None) -> int:
    """Query heads per pruning unit within a site: 1 for ``head``, ``heads`` for ``layer``,
    ``heads // kv_heads`` for ``kv_group`` (``kv_heads`` None: every head has its own key/value
    head, so a group is a head). A ``kv_group`` of a model with one key/value head per site
    (multi-query attention) is an :class:`InputError`: it is the layer, ask for ``layer``."""
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; valid: {', '.join(UNITS)}")
    if unit == "head":
        return 1
    if unit == "layer":
        return heads
    kv_heads = heads if kv_heads is None else kv_heads
    if kv_heads < 1 or heads % kv_heads:
        raise ValueError(f"{heads} query heads cannot share {kv_heads} key/value heads evenly")
    if kv_heads == 1 and heads > 1:
        raise InputError(f"unit kv_group: this model has one key/value head per site (multi-query attention), so "
                         f"a key/value group is the whole site of {heads} query heads; use unit=layer")  # fmt: skip
    return heads // kv_heads


def unit_counts(sites: int, heads: int, levels: Sequence[float], unit: str, rule: str,
                kv_heads: int | None = None) -> list[int]:  # fmt: skip
    """Pruned counts per level for ``unit`` (``head``: of ``sites·heads``; ``layer``: of ``sites``;
    ``kv_group``: of ``sites·kv_heads``)."""
    return pruned_counts(sites * heads // group_size(unit, heads, kv_heads), levels, rule)


def head_masks(scores: Tensor, levels: Sequence[float], order: str, unit: str, rule: str,
               kv_heads: int | None = None) -> Tensor:  # fmt: skip
    """Gate masks ``float[..., L, sites, heads]`` (1 = kept) from head scores ``[..., sites, heads]``.

    ``unit="head"`` ranks the flattened heads; ``unit="layer"`` ranks sites by their mean
    head score and prunes whole sites; ``unit="kv_group"`` ranks the ``kv_heads`` groups of
    every site by the sum of their query heads' scores and prunes whole groups (every query
    head of a pruned group is gated; :func:`group_size`).
    """
    *lead, sites, heads = scores.shape
    counts = unit_counts(sites, heads, levels, unit, rule, kv_heads)
    if unit == "head":
        keep = keep_masks(scores.reshape(*lead, sites * heads), counts, order)
        return keep.reshape(*lead, len(counts), sites, heads).float()
    if unit == "kv_group":
        size = group_size(unit, heads, kv_heads)
        groups = scores.reshape(*lead, sites, heads // size, size).sum(-1)  # query head h is in group h // size
        keep = keep_masks(groups.reshape(*lead, sites * (heads // size)), counts, order)
        keep = keep.reshape(*lead, len(counts), sites, heads // size).repeat_interleave(size, dim=-1)
        return keep.float()
    keep = keep_masks(layer_scores(scores), counts, order)  # [..., L, sites]
    return keep[..., None].expand(*lead, len(counts), sites, heads).float()
