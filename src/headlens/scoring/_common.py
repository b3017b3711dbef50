"""Reductions shared by several scoring methods."""

from __future__ import annotations

import torch
from torch import Tensor

from ..hooks import Capture


def grad_attention_sums(capture: Capture) -> Tensor:
    """``Σ_{i,j} ∂z_c/∂A[h,i,j] · A[h,i,j]``, ``float[batch, sites, heads]``."""
    if capture.grad is None:
        raise ValueError("this method needs attention gradients: capture with grad=True")
    return torch.stack([(g * a).sum(dim=(-2, -1)) for g, a in zip(capture.grad, capture.attn)], dim=1)
