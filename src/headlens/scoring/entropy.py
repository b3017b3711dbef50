"""``entropy``: negative mean attention entropy, so that confident heads score high.

    s(site, h) = − mean_{i real query} Σ_j −A[h,i,j] log A[h,i,j]

A baseline that needs no gradient (cf. Clark et al., "What Does BERT Look At?",
2019, who read head entropy as how broadly a head attends). Padded keys have
``A = 0`` and contribute 0; padded query rows are left out of the mean.
Higher (closer to 0) = more focused = ranked more important.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..edits import Capture


def score(capture: Capture) -> Tensor:
    """``float[batch, sites, heads]``, ≤ 0; higher = more important."""
    per_site = []
    for attn, query in zip(capture.attn, capture.query):
        attn = attn.to(torch.promote_types(attn.dtype, torch.float32))  # no half-precision logs
        entropy = -torch.special.xlogy(attn, attn).sum(-1)  # [batch, heads, n_query]
        rows = query.mask[:, None, :].to(entropy.dtype)
        per_site.append(-(entropy * rows).sum(-1) / rows.sum(-1))
    return torch.stack(per_site, dim=1)
