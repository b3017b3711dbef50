"""``grad`` ("ours"): gradient × attention, signed, per head.

    s(site, h) = mean_{i,j} ∂z_c/∂A[h,i,j] · A[h,i,j]

over every query and key position of the site (docs/method.md#grad; the paper's head score,
after Chefer et al., "Generic Attention-model Explainability", ICCV 2021). No abs,
no clamp. Higher = more important. Padded positions contribute 0 to the sum
(their attention or their gradient is 0); the mean divides by the real text
tokens and every visual slot (see :class:`headlens.adapters.Stream`), so a
score does not depend on the batch an example sits in.
"""

from __future__ import annotations

from torch import Tensor

from ..edits import Capture
from ._common import grad_attention_sums, per_position_mean


def score(capture: Capture) -> Tensor:
    """``float[batch, sites, heads]``, signed; higher = more important."""
    return per_position_mean(capture, grad_attention_sums(capture))
