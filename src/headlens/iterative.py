"""Iterative pruning (Michel et al., "Are Sixteen Heads Really Better than One?", NeurIPS 2019):
prune, re-score the pruned model, prune more.

A plain sweep ranks once, on the unpruned model, and every level prunes a prefix of that
ranking. An iterative sweep re-scores before each level that prunes more than the one
before, with the heads pruned so far gated off, and prunes the next units among those still
kept: the masks are nested (a unit pruned at one level stays pruned), the pruned counts are
the plain sweep's (:func:`headlens.masks.unit_counts`), and the first level that prunes
anything uses the unpruned scores, so it equals the plain sweep there. The scores of pruned
units are ignored. Works for any method and either protocol: the re-scoring function decides
what is scored (each example under its own mask, or the scoring split under the global one).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from .masks import prune_ranks, unit_counts
from .scoring import layer_scores

#: ``rescore(keep) -> scores``: head scores ``[..., sites, heads]`` of the model gated by ``keep``.
Rescore = Callable[[Tensor], Tensor]
#: what an iterative ranking's curves append to the method's name (e.g. ``grad+iterative``).
SUFFIX = "+iterative"


def ranking_name(method: str, iterative: bool) -> str:
    """The name a ranking's curves carry: the method's, with :data:`SUFFIX` when iterative."""
    return method + SUFFIX if iterative else method


def extend(keep: Tensor, scores: Tensor, count: int, order: str, unit: str) -> Tensor:
    """``keep`` (``[..., sites, heads]``, 0 = pruned) with more units pruned until ``count`` are,
    the next ones taken among the kept units in ``order`` of ``scores``; ties to the lower index."""
    *lead, sites, heads = scores.shape
    if unit == "head":
        pruned = keep.reshape(*lead, sites * heads) == 0
        values = scores.reshape(*lead, sites * heads)
    else:  # a layer is a site: pruned when its heads are; scored by their mean
        pruned = keep[..., 0] == 0
        values = layer_scores(scores)
    values = torch.where(pruned, torch.zeros_like(values), values)  # a silenced unit's score may be anything
    ranks = prune_ranks(values, order)
    first = torch.where(pruned, ranks - ranks.shape[-1], ranks)  # pruned units stay first, in any order
    kept = prune_ranks(first.to(torch.float64), "negative") >= count
    if unit == "head":
        return kept.reshape(*lead, sites, heads).to(keep.dtype)
    return kept[..., None].expand(*lead, sites, heads).to(keep.dtype)


def iterative_masks(
    rescore: Rescore, scores: Tensor, levels: Sequence[float], order: str, unit: str, rule: str
) -> Tensor:
    """Gate masks ``float[..., L, sites, heads]`` (1 = kept) of an iterative ranking.

    ``scores`` are the unpruned model's head scores ``[..., sites, heads]``; ``rescore`` is
    called once per later level that prunes more, with the current keep mask."""
    *lead, sites, heads = scores.shape
    keep = torch.ones(*lead, sites, heads, dtype=torch.float32, device=scores.device)
    masks, done = [], 0
    for count in unit_counts(sites, heads, levels, unit, rule):
        if count > done:
            current = scores if done == 0 else rescore(keep)
            keep, done = extend(keep, current.to(keep.device), count, order, unit), count
        masks.append(keep)
    return torch.stack(masks, dim=-3)
