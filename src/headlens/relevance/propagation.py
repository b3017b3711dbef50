"""The relevancy-map update rules of Chefer et al., "Generic Attention-model
Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers"
(ICCV 2021), batched: every tensor carries the batch first.

Notation (docs/method.md#relevance-maps): ``R^{st}`` is the relevance of stream ``t``'s tokens for stream
``s``'s tokens; ``Ā`` a site's head-averaged map, ``[batch, n_query, n_key]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def head_average(maps: Tensor, keep: Tensor | None = None, weights: Tensor | None = None, clamp: bool = True) -> Tensor:
    """``Ā = (1/H) Σ_h keep_h · clamp_{≥0}(weights_h ⊙ maps_h)``, ``[batch, q, k]``.

    ``maps`` and ``weights`` (e.g. attention and its gradient) are ``[batch, H, q, k]``;
    ``keep`` ``[batch, H]`` zeroes pruned heads, which still count in the divisor
    (docs/method.md#pictures-after-pruning). ``clamp`` keeps only positive values.
    """
    values = maps if weights is None else weights * maps
    if clamp:
        values = values.clamp(min=0)
    if keep is not None:
        values = values * keep[:, :, None, None].to(values.dtype)
    return values.sum(1) / maps.shape[1]


def identity_like(batch: int, n: int, like: Tensor) -> Tensor:
    return torch.eye(n, dtype=like.dtype, device=like.device).expand(batch, n, n).clone()


def normalise_self(relevance: Tensor) -> Tensor:
    """``R̄ = (R − I) / rowsum(R − I) + I``; a row of ``R − I`` that sums to 0 stays 0 (no NaN)."""
    eye = torch.eye(relevance.shape[-1], dtype=relevance.dtype, device=relevance.device)
    residual = relevance - eye
    sums = residual.sum(-1, keepdim=True)
    safe = torch.where(sums == 0, torch.ones_like(sums), sums)
    return torch.where(sums == 0, torch.zeros_like(residual), residual / safe) + eye


def self_attention_update(cam: Tensor, relevance_from_s: Tensor) -> Tensor:
    """Self-attention of stream ``s``: the addition ``Ā · R^{st}`` to ``R^{st}``, for any stream ``t``."""
    return cam @ relevance_from_s


def co_attention_updates(cam: Tensor, r_ss: Tensor, r_qq: Tensor, r_qs: Tensor) -> tuple[Tensor, Tensor]:
    """Co-attention with queries ``s`` and keys ``q`` (``Ā`` is ``|s|×|q|``).

    Returns the additions ``(R̄^{ss})ᵀ · Ā · R̄^{qq}`` to ``R^{sq}`` and ``Ā · R^{qs}`` to ``R^{ss}``.
    """
    to_sq = normalise_self(r_ss).transpose(-1, -2) @ cam @ normalise_self(r_qq)
    to_ss = cam @ r_qs
    return to_sq, to_ss
