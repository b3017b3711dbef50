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


#: what the gradients differentiate: ``predicted`` — the cross-entropy against the model's own
#: predicted answer; ``expected`` — against every answer ``c``, each row weighted by ``√p_c`` so
#: that ``Σ g gᵀ`` is the Fisher information of the model's predictive distribution (one
#: backward per answer: for few answers only).
TARGETS = ("predicted", "expected")


def mask_gradients(adapter: Adapter, examples: Examples, batch_size: int = 32, target: str = "predicted") -> Tensor:
    """``g`` ``float64[rows, sites, heads]``: ``∂ℓ_b/∂m`` at ``m = 1``, one row per example
    (``target="predicted"``: ``ℓ_b`` the cross-entropy against the model's own predicted
    answer, see the module text) or one per example and answer (``"expected"``: the row of
    answer ``c`` is ``√p_c · ∂(−log p_c)/∂m``, see :data:`TARGETS`).

    One forward and one backward per batch (per answer for ``"expected"``), to the gates only
    (no parameter gradients); examples do not interact, so each row is its own example's
    gradient. Eval mode."""
    if target not in TARGETS:
        raise ValueError(f"unknown Fisher target {target!r}; valid: {', '.join(TARGETS)}")
    rows = []
    dtype = torch.promote_types(next(adapter.model.parameters()).dtype, torch.float32)  # never below float32
    with eval_mode(adapter.model):
        for _, batch in iterate(examples, batch_size):
            inputs = batch.to(adapter.device).inputs
            mask = torch.ones(len(batch), adapter.num_sites, adapter.num_heads, device=adapter.device, dtype=dtype,
                              requires_grad=True)  # fmt: skip
            with torch.enable_grad(), gates(adapter, mask):
                logits = adapter.logits(inputs).to(dtype)
                if target == "predicted":
                    loss = torch.nn.functional.cross_entropy(logits, adapter.predict(logits.detach()), reduction="sum")
                    rows.append(torch.autograd.grad(loss, mask)[0].detach().double().cpu())
                    continue
                log_p = torch.log_softmax(logits, -1)
                weight = log_p.detach().exp().sqrt()  # [batch, answers]
                for answer in range(logits.shape[1]):
                    (gradient,) = torch.autograd.grad(-log_p[:, answer].sum(), mask, retain_graph=True)
                    rows.append((weight[:, answer, None, None] * gradient).detach().double().cpu())
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
