"""``taylor``: |∂z_c/∂ξ_h| at ξ = 1, the head-mask gradient of Michel et al.,
"Are Sixteen Heads Really Better than One?" (NeurIPS 2019).

With a gate ξ_h multiplying head h's probabilities, ``∂z_c/∂ξ_h = Σ_{i,j} G·A``
at ξ = 1, so the score is read from the same capture as ``grad`` (no gated
pass); the test suite checks the identity against real gate gradients. Michel et
al. differentiate the loss; like every method here we differentiate the logit of
the predicted answer. Non-negative; higher = more important.
"""

from __future__ import annotations

from torch import Tensor

from ..edits import Capture
from ._common import grad_attention_sums


def score(capture: Capture) -> Tensor:
    """``float[batch, sites, heads]``, ≥ 0; higher = more important."""
    return grad_attention_sums(capture).abs()
