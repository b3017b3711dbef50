"""Reductions shared by several scoring methods."""

from __future__ import annotations

import torch
from torch import Tensor

from ..edits import Capture


def per_position_mean(capture: Capture, sums: Tensor) -> Tensor:
    """``sums`` ``[batch, sites, heads]`` over a site's map divided by its query × key
    positions (real text tokens, every visual slot: see :class:`headlens.adapters.Stream`);
    under a causal mask, by the pairs that exist (:attr:`headlens.edits.Capture.pairs`)."""
    pairs = capture.pairs or [q.count * k.count for q, k in zip(capture.query, capture.key)]
    sizes = torch.stack(pairs, dim=1)
    return sums / sizes[:, :, None]


def grad_attention_sums(capture: Capture) -> Tensor:
    """``Σ_{i,j} ∂z_c/∂A[h,i,j] · A[h,i,j]``, ``float[batch, sites, heads]``."""
    if capture.grad is None:
        raise ValueError("this method needs attention gradients: capture with grad=True")
    return torch.stack([(g * a).sum(dim=(-2, -1)) for g, a in zip(capture.grad, capture.attn)], dim=1)
