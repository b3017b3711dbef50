"""Layer-wise relevance propagation without forking model code, in two variants: the rules of
Chefer et al., "Transformer Interpretability Beyond Attention Visualization" (CVPR 2021; the
default, ``rules="chefer"``), and those of Achtibat et al., "AttnLRP: Attention-Aware
Layer-wise Relevance Propagation for Transformers" (ICML 2024; ``rules="attnlrp"``).

Inside :func:`lrp_mode`, a ``TorchFunctionMode`` replaces each differentiable torch
op of the forward pass by an autograd function whose *backward computes relevance*
instead of a gradient; one backward from a one-hot at the target answer then
propagates relevance through the whole network, and ``torch.autograd.grad`` reads
it wherever it is wanted (the attention maps, the inputs). The rules are chosen by
op, so they serve every model family built from these ops (``R`` is the relevance
arriving at an op's output, ``z`` its output, ``ε·sign`` a stabiliser):

==============================  ======================================  ==========================================
op                              ``chefer``                              ``attnlrp``
==============================  ======================================  ==========================================
``F.linear`` (and GPT-2's       alpha = 1, beta = 0: with               epsilon: ``R_in = x ⊙ Wᵀ(R / (z + ε·sign
``addmm``)                      ``Z = W⁺x⁺ + W⁻x⁻``, ``R_in = x⁺ ⊙       z))`` with ``z = Wx + b``: the bias keeps
                                W⁺ᵀ(R/Z) + x⁻ ⊙ W⁻ᵀ(R/Z)``; bias        its share ``b R / z``
                                ignored
``a + b``, ``a − b``            gradient × input per branch, rescaled   epsilon: ``R_a = a ⊙ R / (z + ε·sign z)``
(residuals, sums)               so branch shares follow ``|Σ branch|``  (``R`` whole where the other operand is
                                and the total is ``Σ R``, per example   0); a constant operand (a mask, a
                                                                        parameter) keeps its share
``matmul`` of two activations   gradient × input to each operand, halved (the uniform rule after epsilon)
``a ⊙ b`` of two activations    the uniform rule: ``R/2`` to each operand (the SiLU gate ``silu(g) ⊙ u``)
softmax                         relevance passes unchanged              Taylor at the input ``x``:
                                                                        ``R_in = x ⊙ (R − s ⊙ Σ R)`` (``s`` the
                                                                        output; ``x = −∞`` counts as 0): the
                                                                        first-order terms ``x_i ∂s_j/∂x_i`` share
                                                                        ``R_j``, the zero-order term's share is
                                                                        dropped
``F.layer_norm``                relevance passes unchanged              ``σ`` a constant; epsilon through the
                                                                        bias and the centring, identity through
                                                                        ``/σ`` and ``·w``: ``t = w ⊙ R / (σ (z +
                                                                        ε·sign z))``, ``R_in = x ⊙ (t − mean t)``
RMSNorm's ``x · rsqrt(mean x²)``, the statistic is a constant (computed without relevance): relevance passes
``x / sqrt(var + ε)``
sum / mean over dimensions      gradient × input (each summand its share ``x R / Σx``)
GELU, SiLU, tanh (soft-         relevance passes unchanged (the identity rule)
capping), ReLU, dropout,
``neg``, ×/÷ a constant
views, indexing, ``cat``,       the ordinary backward: relevance is routed, and a tensor used twice sums what
``where``, ``masked_fill``,     its uses return (Clone)
casts
==============================  ======================================  ==========================================

The stabiliser is the original's ``ε = 1e-9`` (0 where the denominator is 0) for
``chefer``, ``ε = 1e-6`` times the sign for ``attnlrp``.

**Conservation.** The sum of relevance is kept by every rule up to the stabiliser,
except: alpha-1-beta-0 drops the relevance of an output none of whose contributions is
positive (``Z = 0``, rare); under ``attnlrp``, a bias, a constant addend and
LayerNorm's bias keep their share, and the softmax rule does not conserve by design (the
first-order Taylor expansion at the input leaves its zero-order term, ``Σ_i x_i (R_i − s_i
Σ R)`` differs from ``Σ R``). Pass a dict as ``absorbed`` to :func:`lrp_mode` to read what
each rule kept, per rule; relevance at the inputs plus that is the relevance started with.

**Statistics.** ``pow(x, 2)`` of a tensor carrying relevance starts a normalisation
statistic (RMSNorm's mean square, a hand-written LayerNorm's variance): it is computed
without relevance, and what is derived from it by reductions, arithmetic with constants,
``rsqrt``/``sqrt`` and casts stays a statistic. A statistic may only scale an activation
(``x · s``, ``s · x``, ``x / s``): the normalisation's scale is treated as a constant,
as both variants do. Any other use of one is an error.

**Weights.** An op on weights alone (a cast of a norm's weight, ``1 + w``) gives a
constant; an op of data through weights (an embedding lookup, a projection of visual
features or pixels) gives a fresh leaf where relevance stops, readable by
``torch.autograd.grad``.

**Precision.** ``dtype=torch.float64`` runs the pass in float64 without a float64
copy of the model: each op's inputs are cast as it runs (a linear layer's weight in its
forward and again in its backward, so no cast weight outlives the op), casts to a lower
float precision and softmax's ``dtype`` are lifted to it, and relevance comes back in
float64. ``|W|`` (alpha-beta) is likewise computed inside the backward that uses it.

Any other op on a tensor that carries relevance is an error naming the op, so a
model built from something else fails loudly instead of giving wrong numbers.
Modules whose whole forward should pass relevance through unchanged (a
hand-written activation, say) are named by :func:`lrp_mode`'s ``pass_modules``;
transformers' activations written as tensor arithmetic (:data:`ELEMENTWISE_MODULES`)
always are.

The rules are in :mod:`headlens.edits.lrp.rules`, the op dispatch and the edit that turns
it on in :mod:`headlens.edits.lrp.mode`.
"""

from .mode import ELEMENTWISE_MODULES, RULES, LRPMode, lrp_mode, model_dtype, resolve_dtype
from .rules import ATTNLRP_EPSILON, EPSILON, epsilon_divide, per_example_sum, safe_divide

__all__ = [
    "ATTNLRP_EPSILON", "ELEMENTWISE_MODULES", "EPSILON", "RULES", "LRPMode", "epsilon_divide", "lrp_mode",
    "model_dtype", "per_example_sum", "resolve_dtype", "safe_divide",
]  # fmt: skip
