"""``grad_abs`` and ``fisher``: magnitude-aware head scores, where the signed ``grad`` cancels.

The paper's ``grad`` sums ``∂z_c/∂A · A`` with its sign over a head's positions, so a head
whose positions push the logit both ways can score near 0 however much it matters. Two
variants keep the magnitude (docs/method.md#magnitude-aware-variants):

    grad_abs(site, h) = mean_{i,j} |∂z_c/∂A[h,i,j] · A[h,i,j]|      (≥ 0)
    fisher(site, h)   = (∂z_c/∂ξ_h)² = (Σ_{i,j} ∂z_c/∂A[h,i,j] · A[h,i,j])²   (≥ 0)

``grad_abs`` takes the absolute value per position before ``grad``'s mean (same divisor:
real text tokens, every visual slot). ``fisher`` is the squared head-mask gradient of
Kwon et al., "A Fast Post-Training Pruning Framework for Transformers" (NeurIPS 2022),
whose empirical Fisher information of a head's mask is its mean over examples — exactly
what the global protocol's average of per-example scores computes. Like every method here
it differentiates the logit of the predicted answer (Kwon et al.: the loss). Higher = more
important.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..edits import Capture
from ._common import grad_attention_sums, per_position_mean


def grad_abs(capture: Capture) -> Tensor:
    """``float[batch, sites, heads]``, ≥ 0: mean over positions of ``|∂z_c/∂A · A|``."""
    if capture.grad is None:
        raise ValueError("this method needs attention gradients: capture with grad=True")
    sums = torch.stack([(g * a).abs().sum(dim=(-2, -1)) for g, a in zip(capture.grad, capture.attn)], dim=1)
    return per_position_mean(capture, sums)


def fisher(capture: Capture) -> Tensor:
    """``float[batch, sites, heads]``, ≥ 0: ``(∂z_c/∂ξ_h)²`` at ξ = 1."""
    return grad_attention_sums(capture).square()
