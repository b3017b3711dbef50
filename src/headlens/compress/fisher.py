"""Per-example head-mask gradients and the block-diagonal empirical Fisher information
(Kwon et al. 2022, "A Fast Post-Training Pruning Framework for Transformers", §4.1).

A gate ``m[s, h]`` multiplies head ``h``'s attention probabilities at site ``s``
(:func:`headlens.edits.gates`; ``m = 1`` is the unpruned model, ``m = 0`` prunes the head).
For example ``b`` the gradient ``g[b] = ∂ℓ_b/∂m`` at ``m = 1`` is taken of the cross-entropy
``ℓ_b = −log softmax(z_b)[ŷ_b]`` against the model's *own* predicted answer ``ŷ_b`` — the
examples need no labels. (Kwon et al. take the task loss against the data set's labels; against
the model's soft prediction ``p_b`` itself the gradient is exactly zero at ``m = 1``, since
``p_b`` minimises that cross-entropy, so the hard prediction is the unlabelled choice.)

The loss change of pruning the heads ``P`` is estimated to second order with the gradient's
mean taken as zero and the Hessian replaced by the empirical Fisher ``F = Σ_b g_b g_bᵀ``;
like Kwon et al. we keep only the blocks of heads of one site (block diagonal), so the
estimate is ``Σ_s 1_{P_s}ᵀ F_s 1_{P_s} / 2`` with ``F_s`` ``[heads, heads]``. Its diagonal
``Σ_b g_b[s, h]²`` is the importance a head is searched by.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..adapters import Adapter
from ..data.batch import Examples, iterate
from ..edits import eval_mode, gates


def mask_gradients(adapter: Adapter, examples: Examples, batch_size: int = 32) -> Tensor:
    """``g`` ``float64[examples, sites, heads]``: ``∂ℓ_b/∂m`` at ``m = 1`` for every example,
    ``ℓ_b`` the cross-entropy against the model's own predicted answer (see the module text).

    One forward and one backward per batch, to the gates only (no parameter gradients);
    examples do not interact, so each row is its own example's gradient. Eval mode."""
    rows = []
    with eval_mode(adapter.model):
        for _, batch in iterate(examples, batch_size):
            inputs = batch.to(adapter.device).inputs
            mask = torch.ones(len(batch), adapter.num_sites, adapter.num_heads, device=adapter.device,
                              requires_grad=True)  # fmt: skip
            with torch.enable_grad(), gates(adapter, mask):
                logits = adapter.logits(inputs).float()
                predicted = adapter.predict(logits.detach())
                loss = torch.nn.functional.cross_entropy(logits, predicted, reduction="sum")
                (gradient,) = torch.autograd.grad(loss, mask)
            rows.append(gradient.detach().double().cpu())
    return torch.cat(rows)


def block_fisher(gradients: Tensor) -> Tensor:
    """``F_s = Σ_b g_b[s] g_b[s]ᵀ``, ``[sites, heads, heads]``, from ``gradients`` ``[examples, sites, heads]``."""
    return torch.einsum("bsh,bsk->shk", gradients, gradients)


def head_importance(block: Tensor) -> Tensor:
    """The diagonal of the block Fisher, ``[sites, heads]``: ``Σ_b g_b[s, h]²``, ≥ 0."""
    return torch.diagonal(block, dim1=-2, dim2=-1)


def loss_estimate(block: Tensor, keep: Tensor) -> Tensor:
    """``Σ_s Δm_sᵀ F_s Δm_s / 2`` per site, ``[sites]``, with ``Δm = keep − 1`` (−1 at pruned heads):
    the Fisher estimate of the loss increase that pruning ``keep``'s zeros brings."""
    delta = keep.to(block.dtype) - 1
    return torch.einsum("sh,shk,sk->s", delta, block, delta) / 2
