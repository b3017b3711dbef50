"""``lrp``: the signed mean LRP relevance reaching each head's attention map.

    s(site, h) = mean_{i,j} R^A[h,i,j]

with ``R^A`` from the rules of Chefer et al., "Transformer Interpretability Beyond
Attention Visualization" (CVPR 2021; SPEC §3 and §7), read after the halving of
the ``A·V`` product; relevance starts as a one-hot at the predicted answer. The
mean divides like ``grad``'s (real text tokens, every visual slot). Higher = more
important.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..hooks import Capture
from ._common import per_position_mean


def score(capture: Capture) -> Tensor:
    """``float[batch, sites, heads]``, signed; higher = more important."""
    if capture.relevance is None:
        raise ValueError("the lrp method needs LRP relevance: capture with relevance=True")
    return per_position_mean(capture, torch.stack([r.sum(dim=(-2, -1)) for r in capture.relevance], dim=1))
