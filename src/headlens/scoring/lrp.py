"""``lrp`` and ``attnlrp``: the signed mean LRP relevance reaching each head's attention map.

    s(site, h) = mean_{i,j} R^A[h,i,j]

with ``R^A`` from the rules of Chefer et al., "Transformer Interpretability Beyond
Attention Visualization" (CVPR 2021; ``lrp``) or of Achtibat et al., "AttnLRP" (ICML
2024; ``attnlrp``), read after the halving of the ``A·V`` product; relevance starts as
a one-hot at the predicted answer. The mean divides like ``grad``'s (real text tokens,
every visual slot). Higher = more important. Relevance captured in float64 is summed in
float64; scores come back in the model's precision.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..edits import Capture
from ._common import per_position_mean


def score(capture: Capture, rules: str = "chefer") -> Tensor:
    """``float[batch, sites, heads]``, signed; higher = more important. ``rules``: which of
    the capture's relevances (:attr:`Capture.relevances`) to read."""
    relevance = capture.relevances.get(rules)
    if relevance is None:
        method = "lrp" if rules == "chefer" else rules
        raise ValueError(
            f"the {method} method needs LRP relevance under the {rules} rules: "
            f"capture with relevance=True, lrp_rules={rules!r}"
        )
    sums = torch.stack([r.sum(dim=(-2, -1)) for r in relevance], dim=1)
    return per_position_mean(capture, sums).to(capture.logits.dtype)
