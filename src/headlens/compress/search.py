"""Mask search under a budget of heads, and mask rearrangement within sites (Kwon et al. 2022, §4.1–4.2).

*Search* keeps the heads of largest Fisher importance (the block Fisher's diagonal,
:func:`headlens.compress.fisher.head_importance`) and prunes exactly the budget's count of the
others, over all sites at once. Every head of these models costs the same attention FLOPs,
so a FLOPs budget over heads alone is this head budget; Kwon et al.'s FLOPs search also trades
heads against FFN neurons, which headlens does not prune.

*Rearrangement* keeps each site's pruned count and re-chooses *which* of its heads go, to
minimise the site's block estimate ``1_Pᵀ F_s 1_P`` (which the diagonal search ignores:
two heads whose gradients cancel are cheap to prune together). When the site has at most
:data:`EXHAUSTIVE` subsets of that size every one is tried; otherwise pairwise swaps of a
pruned and a kept head are taken while one lowers the estimate. The searched set is among
the candidates and a swap is taken only when it lowers the estimate, so rearrangement
never raises it. (Kwon et al. use a greedy insert-and-drop pass instead.)
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

#: the largest number of same-size subsets of one site's heads searched exhaustively.
EXHAUSTIVE = 20_000


def search_mask(importance: Tensor, removed: int) -> Tensor:
    """``float[sites, heads]`` keeping all but the ``removed`` heads of least ``importance``
    (ties: the earlier head in site-major order goes first)."""
    total = importance.numel()
    if not 0 <= removed <= total:
        raise ValueError(f"cannot remove {removed} of {total} heads")
    order = torch.sort(importance.flatten(), stable=True).indices
    keep = torch.ones(total, dtype=torch.float64)
    keep[order[:removed]] = 0
    return keep.view_as(importance)


def _cost(block: Tensor, pruned: list[int]) -> float:
    index = torch.tensor(pruned, dtype=torch.long)
    return float(block[index][:, index].sum()) if pruned else 0.0


def rearrange_site(block: Tensor, keep: Tensor) -> Tensor:
    """One site's ``keep`` ``[heads]`` with the same number pruned, minimising ``1_Pᵀ F 1_P`` (``block`` ``[heads, heads]``)."""
    heads = keep.numel()
    pruned = [h for h in range(heads) if keep[h] == 0]
    if not pruned or len(pruned) == heads:
        return keep.clone()
    best, cost = pruned, _cost(block, pruned)
    if math.comb(heads, len(pruned)) <= EXHAUSTIVE:
        for subset in itertools.combinations(range(heads), len(pruned)):
            value = _cost(block, list(subset))
            if value < cost:
                best, cost = list(subset), value
    else:
        improved = True
        while improved:
            improved = False
            for i, j in itertools.product(range(len(best)), [h for h in range(heads) if h not in best]):
                trial = best[:i] + [j] + best[i + 1 :]
                value = _cost(block, trial)
                if value < cost:
                    best, cost, improved = trial, value, True
                    break
    out = torch.ones_like(keep)
    out[best] = 0
    return out


def rearrange_mask(block: Tensor, keep: Tensor) -> Tensor:
    """``keep`` ``[sites, heads]`` rearranged site by site (:func:`rearrange_site`); per-site counts unchanged."""
    return torch.stack([rearrange_site(block[s], keep[s]) for s in range(keep.shape[0])])
