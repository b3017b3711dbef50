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
hand-written activation, say) are named by the adapter's ``lrp_pass_modules``;
transformers' activations written as tensor arithmetic (:data:`ELEMENTWISE_MODULES`)
always are.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode, resolve_name

from ..errors import InputError

EPSILON = 1e-9
#: the epsilon rule's stabiliser under ``rules="attnlrp"``.
ATTNLRP_EPSILON = 1e-6
#: the rule sets :func:`lrp_mode` knows; the first is the default.
RULES = ("chefer", "attnlrp")
#: transformers' elementwise activations written as tensor arithmetic (``0.5·x·(1 + tanh(…))``):
#: relevance passes through them whole, as through ``F.gelu``.
ELEMENTWISE_MODULES = ("NewGELUActivation", "FastGELUActivation", "QuickGELUActivation", "AccurateGELUActivation")


def safe_divide(a: Tensor, b: Tensor) -> Tensor:
    """``a / (b + ε)`` where ``b ≠ 0`` and 0 where ``b = 0`` (ε = 1e-9), as the original."""
    denominator = b + EPSILON
    denominator = torch.where(denominator == 0, EPSILON, denominator)  # b = −ε exactly
    return (a / denominator).masked_fill_(b == 0, 0.0)


def epsilon_divide(a: Tensor, b: Tensor) -> Tensor:
    """``a / (b + ε·sign b)`` where ``b ≠ 0`` and 0 where ``b = 0`` (ε = :data:`ATTNLRP_EPSILON`)."""
    denominator = b + torch.where(b < 0, -ATTNLRP_EPSILON, ATTNLRP_EPSILON)
    return (a / denominator).masked_fill_(b == 0, 0.0)


def per_example_sum(t: Tensor) -> Tensor:
    """Sum over every dimension but the first (the batch), kept for broadcasting."""
    if t.dim() == 0:
        return t
    return t.reshape(t.shape[0], -1).sum(1).reshape(-1, *([1] * (t.dim() - 1)))


def _reduce_to(t: Tensor, shape: torch.Size) -> Tensor:
    return t if t.shape == shape else t.sum_to_size(shape)


def _as(t: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    return t if t is None or t.dtype == dtype else t.to(dtype)


def _activation(value) -> bool:
    """A tensor relevance flows to: one that requires grad and is not a weight."""
    return isinstance(value, Tensor) and value.requires_grad and not isinstance(value, nn.Parameter)


def _audit(ctx, name: str, relevance: Tensor, *parts: Tensor | None) -> None:
    """Add to the pass's ``absorbed`` ledger what this op did not pass on to activations."""
    if ctx.absorbed is None:
        return
    passed = sum(part.sum() for part, live in zip(parts, ctx.live) if live and part is not None)
    ctx.absorbed[name] = ctx.absorbed.get(name, 0.0) + (relevance.sum() - passed).detach()


def _keep(ctx, absorbed: dict | None, *inputs) -> None:
    ctx.absorbed, ctx.live = absorbed, [_activation(x) for x in inputs]


class LinearRule(torch.autograd.Function):
    """``F.linear`` forward; alpha-1-beta-0 relevance backward (bias ignored).

    ``W⁺x⁺ + W⁻x⁻ = (Wx + |W||x|)/2`` and ``x⁺⊙W⁺ᵀS + x⁻⊙W⁻ᵀS = (x⊙WᵀS + |x|⊙|W|ᵀS)/2``:
    one matmul for Z and two back, instead of two and four. ``Z ≥ 0``, so the
    stabilised division needs no sign care: ``S/2 = R / (2Z + 2ε)``, 0 where ``Z = 0``.
    ``|W|`` is formed here and dropped on return; the weight is cast to ``x``'s precision
    in each direction, never kept cast.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, absorbed):
        bias = _as(bias, x.dtype)
        y = F.linear(x, _as(weight, x.dtype), bias)
        ctx.save_for_backward(x, weight, y if bias is None else y - bias)
        _keep(ctx, absorbed, x)
        return y

    @staticmethod
    def backward(ctx, relevance):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        x, weight, wx = ctx.saved_tensors
        weight = _as(weight, x.dtype)
        weight_abs = weight.abs()
        x_abs = x.abs()
        twice_z = wx + F.linear(x_abs, weight_abs)
        half_s = (relevance / (twice_z + 2 * EPSILON)).masked_fill_(twice_z == 0, 0.0)
        found = torch.addcmul(x * (half_s @ weight), x_abs, half_s @ weight_abs)
        _audit(ctx, "linear", relevance, found)
        return found, None, None, None


class EpsilonLinearRule(torch.autograd.Function):
    """``F.linear`` forward; epsilon-LRP backward, ``R_in = x ⊙ Wᵀ(R / (z + ε·sign z))``
    with ``z = Wx + b`` (AttnLRP's linear layers; the bias keeps its share)."""

    @staticmethod
    def forward(ctx, x, weight, bias, absorbed):
        y = F.linear(x, _as(weight, x.dtype), _as(bias, x.dtype))
        ctx.save_for_backward(x, weight, y)
        _keep(ctx, absorbed, x)
        return y

    @staticmethod
    def backward(ctx, relevance):
        x, weight, y = ctx.saved_tensors
        found = x * (epsilon_divide(relevance, y) @ _as(weight, x.dtype))
        _audit(ctx, "linear", relevance, found)
        return found, None, None, None


class AddRule(torch.autograd.Function):
    """``a + b`` forward; the Add rule backward, branch sums taken per example."""

    @staticmethod
    def forward(ctx, a, b, absorbed):
        z = a + b
        ctx.save_for_backward(a, b, z)
        _keep(ctx, absorbed, a, b)
        return z

    @staticmethod
    def backward(ctx, relevance):
        a, b, z = ctx.saved_tensors
        s = safe_divide(relevance, z)
        ra, rb = a.expand_as(z) * s, b.expand_as(z) * s  # a branch shared by the batch counts per example
        sa, sb, total = per_example_sum(ra), per_example_sum(rb), per_example_sum(relevance)
        both = sa.abs() + sb.abs()
        ra = ra * safe_divide(safe_divide(sa.abs(), both) * total, sa)
        rb = rb * safe_divide(safe_divide(sb.abs(), both) * total, sb)
        ra, rb = _reduce_to(ra, a.shape), _reduce_to(rb, b.shape)
        _audit(ctx, "add", relevance, ra, rb)
        return ra, rb, None


class EpsilonAddRule(AddRule):
    """``a + b`` forward; epsilon-LRP backward, ``R_a = a ⊙ R / (z + ε·sign z)`` and likewise
    ``R_b`` (AttnLRP's additions: each operand by its contribution), except that where one
    operand is 0 the other takes ``R`` whole: adding an attention mask's zeros (the kept
    positions) then costs nothing, so a padded batch gives each example what it gets alone."""

    @staticmethod
    def backward(ctx, relevance):
        a, b, z = ctx.saved_tensors
        s = epsilon_divide(relevance, z)
        a, b = a.expand_as(z), b.expand_as(z)
        ra = torch.where((b == 0) & (a != 0), relevance, a * s)
        rb = torch.where((a == 0) & (b != 0), relevance, b * s)
        ra, rb = _reduce_to(ra, ctx.saved_tensors[0].shape), _reduce_to(rb, ctx.saved_tensors[1].shape)
        _audit(ctx, "add", relevance, ra, rb)
        return ra, rb, None


class MatMulRule(torch.autograd.Function):
    """``a @ b`` of two activations forward; gradient × input to each, halved, backward."""

    @staticmethod
    def forward(ctx, a, b, attnlrp, absorbed):
        z = torch.matmul(a, b)
        ctx.save_for_backward(a, b, z)
        ctx.attnlrp = attnlrp
        _keep(ctx, absorbed, a, b)
        return z

    @staticmethod
    def backward(ctx, relevance):
        a, b, z = ctx.saved_tensors
        s = epsilon_divide(relevance, z) if ctx.attnlrp else safe_divide(relevance, z)
        share = 0.5 if all(ctx.needs_input_grad[:2]) else 1.0
        ra = a * torch.matmul(s, b.transpose(-1, -2)) * share
        rb = b * torch.matmul(a.transpose(-1, -2), s) * share
        ra, rb = _reduce_to(ra, a.shape), _reduce_to(rb, b.shape)
        _audit(ctx, "matmul", relevance, ra, rb)
        return ra, rb, None, None


class MulRule(torch.autograd.Function):
    """``a ⊙ b`` of two activations forward; the uniform rule backward: ``R/2`` to each operand
    (what halved gradient × input gives, without the stabiliser)."""

    @staticmethod
    def forward(ctx, a, b, absorbed):
        ctx.shapes = (a.shape, b.shape)
        _keep(ctx, absorbed, a, b)
        return a * b

    @staticmethod
    def backward(ctx, relevance):
        half = relevance * 0.5
        ra, rb = _reduce_to(half, ctx.shapes[0]), _reduce_to(half, ctx.shapes[1])
        _audit(ctx, "mul", relevance, ra, rb)
        return ra, rb, None


class SumRule(torch.autograd.Function):
    """A sum or mean over dimensions forward; gradient × input backward (each summand gets its
    share ``x ⊙ R / Σx``: mean pooling over tokens, for one)."""

    @staticmethod
    def forward(ctx, fn, x, dim, keepdim, absorbed):
        dims = tuple(range(x.dim())) if dim is None else (dim,) if isinstance(dim, int) else tuple(dim)
        ctx.save_for_backward(x)
        ctx.dims, ctx.keepdim = dims, keepdim
        _keep(ctx, absorbed, x)
        return fn(x, dim=dims, keepdim=keepdim)

    @staticmethod
    def backward(ctx, relevance):
        (x,) = ctx.saved_tensors
        total = x.sum(dim=ctx.dims, keepdim=True)
        arriving = relevance
        if not ctx.keepdim:
            for dim in sorted(d % x.dim() for d in ctx.dims):
                relevance = relevance.unsqueeze(dim)
        found = x * safe_divide(relevance, total)
        _audit(ctx, "sum", arriving, found)
        return None, found, None, None, None


class SoftmaxRule(torch.autograd.Function):
    """Softmax forward; AttnLRP's backward, the first-order Taylor expansion at the input
    ``x`` without its zero-order term: ``R_in = x ⊙ (R − s ⊙ Σ_dim R)`` (``x = −∞``, a
    masked position, counts as 0). Not conservative: ``Σ R_in = Σ x R − (Σ s x) Σ R``."""

    @staticmethod
    def forward(ctx, fn, kwargs, x, dim, absorbed):
        s = fn(x, dim=dim, **kwargs)
        ctx.save_for_backward(x, s)
        ctx.dim = dim
        _keep(ctx, absorbed, x)
        return s

    @staticmethod
    def backward(ctx, relevance):
        x, s = ctx.saved_tensors
        inputs = x.to(s.dtype).masked_fill(torch.isneginf(x), 0.0)
        found = (inputs * (relevance - s * relevance.sum(ctx.dim, keepdim=True))).to(x.dtype)
        _audit(ctx, "softmax", relevance, found)
        return None, None, found, None, None


class LayerNormRule(torch.autograd.Function):
    """``F.layer_norm`` forward; AttnLRP's backward with the scale ``σ`` a constant: epsilon-LRP
    through the bias addition and the centring, the identity through ``/σ`` and ``·w``:
    ``t = w ⊙ R / (σ (z + ε·sign z))``, ``R_in = x ⊙ (t − mean t)`` (the bias keeps its share)."""

    @staticmethod
    def forward(ctx, x, shape, weight, bias, eps, absorbed):
        weight, bias = _as(weight, x.dtype), _as(bias, x.dtype)
        y = F.layer_norm(x, shape, weight, bias, eps)
        dims = tuple(range(-len(shape), 0))
        sigma = torch.sqrt(x.var(dim=dims, unbiased=False, keepdim=True) + eps)
        ctx.save_for_backward(x, y, sigma, weight)
        ctx.dims = dims
        _keep(ctx, absorbed, x)
        return y

    @staticmethod
    def backward(ctx, relevance):
        x, y, sigma, weight = ctx.saved_tensors
        t = epsilon_divide(relevance, y) / sigma
        if weight is not None:
            t = t * weight
        found = x * (t - t.mean(ctx.dims, keepdim=True))
        _audit(ctx, "layer_norm", relevance, found)
        return found, None, None, None, None, None


class PassRule(torch.autograd.Function):
    """``fn(x, …)`` forward; relevance passes to ``x`` unchanged."""

    @staticmethod
    def forward(ctx, fn, kwargs, x, *rest):
        ctx.others = len(rest)
        return fn(x, *rest, **kwargs)

    @staticmethod
    def backward(ctx, relevance):
        return (None, None, relevance) + (None,) * ctx.others


class ThroughRule(torch.autograd.Function):
    """A whole module's output, with relevance passed to its input unchanged."""

    @staticmethod
    def forward(ctx, x, output):
        return output.detach().clone()

    @staticmethod
    def backward(ctx, relevance):
        return relevance, None


T = torch.Tensor
_LINEAR = {F.linear}
_MATMUL = {torch.matmul, T.matmul, T.__matmul__, torch.bmm, T.bmm}
_ADD = {torch.add, T.add, T.__add__, T.__radd__, T.add_, T.__iadd__}
_SUB = {torch.sub, T.sub, T.__sub__, T.__rsub__}
_SOFTMAX = {F.softmax, T.softmax, torch.softmax}
_PASS = {
    F.softmax, T.softmax, torch.softmax, F.gelu, F.layer_norm, F.dropout, torch.tanh, T.tanh, F.relu, torch.relu,
    F.silu, torch.neg, T.neg, T.__neg__,
}  # fmt: skip
_SCALE = {torch.div, T.div, T.__truediv__, torch.mul, T.mul, T.__mul__, T.__rmul__}
_MUL = {torch.mul, T.mul, T.__mul__, T.__rmul__}
_SUM = {torch.sum, T.sum, torch.mean, T.mean}
_CASTS = {T.to, T.float, T.double, T.half, T.bfloat16, T.type, T.type_as}
_ROUTE = {
    T.view, T.reshape, torch.reshape, T.transpose, torch.transpose, T.permute, torch.permute, T.contiguous,
    T.__getitem__, torch.gather, T.gather, torch.cat, torch.stack, T.expand, T.expand_as, T.unsqueeze,
    torch.unsqueeze, T.squeeze, torch.squeeze, T.flatten, torch.flatten, T.select, torch.index_select,
    T.index_select, T.split, torch.split, T.chunk, torch.chunk, T.clone, torch.clone, T.to, T.float, T.double,
    T.type_as, T.narrow, T.unbind, torch.unbind, T.repeat, T.repeat_interleave, T.requires_grad_,
    T.type, T.half, T.bfloat16, torch.where, T.where, torch.masked_fill, T.masked_fill,
}  # fmt: skip
_SQUARE = {torch.pow, T.pow, T.__pow__, torch.square, T.square}
#: what a statistic may go through and stay one.
_STATISTIC = _SUM | _ADD | _SUB | _SCALE | _CASTS | _ROUTE | _SQUARE | {
    torch.rsqrt, T.rsqrt, torch.sqrt, T.sqrt, torch.reciprocal, T.reciprocal, T.__rtruediv__,
    torch.clamp, T.clamp, torch.clamp_min, T.clamp_min,
}  # fmt: skip
_MARK = "_headlens_lrp_statistic"


def _tensors(args, kwargs) -> list[Tensor]:
    """The tensors among the arguments, also inside lists and tuples (``torch.cat``'s)."""
    found = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(v for v in value if isinstance(v, Tensor))
    return found


def _leaves(result, dtype: torch.dtype | None = None):
    if isinstance(result, Tensor):
        if not result.is_floating_point():
            return result
        return (result if dtype is None else result.to(dtype)).requires_grad_()
    if isinstance(result, (tuple, list)):
        return type(result)(_leaves(r, dtype) for r in result)
    return result


def _mark(result):
    """Tag every tensor of ``result`` as a normalisation statistic."""
    for t in result if isinstance(result, (tuple, list)) else (result,):
        if isinstance(t, Tensor):
            setattr(t, _MARK, True)
    return result


def _carries(value) -> bool:
    return isinstance(value, Tensor) and value.requires_grad


def _constant(value) -> bool:
    """Not an activation: a number, a tensor without grad (a mask, a statistic) or a weight."""
    return not isinstance(value, Tensor) or not value.requires_grad or isinstance(value, nn.Parameter)


def _scaled_operand(func, a, b) -> int | None:
    """Which operand (0 or 1) a multiplication/division scales by a constant of no larger shape;
    None if neither (a product of two activations, a division *by* an activation, a broadcast)."""
    def fits(x, c):
        return not isinstance(c, Tensor) or torch.broadcast_shapes(x.shape, c.shape) == x.shape

    if _carries(a) and _constant(b) and fits(a, b):
        return 0
    divides = func in (torch.div, T.div, T.__truediv__)
    if not divides and _carries(b) and _constant(a) and fits(b, a):
        return 1
    return None


def _tensor_like(value, other: Tensor) -> Tensor:
    return value if isinstance(value, Tensor) else torch.as_tensor(value, dtype=other.dtype, device=other.device)


class LRPMode(TorchFunctionMode):
    """Routes each op of the forward pass to its LRP rule (see the module docstring).

    ``rules``: ``"chefer"`` or ``"attnlrp"``; ``dtype``: None (as the model runs) or the
    float precision to run the pass in; ``absorbed``: None, or a dict that collects, per
    rule name, the relevance the rules kept (see the module docstring).
    """

    def __init__(self, rules: str = "chefer", dtype: torch.dtype | None = None, absorbed: dict | None = None):
        super().__init__()
        self.attnlrp = rules == "attnlrp"
        self.dtype = dtype
        self.absorbed = absorbed
        self.suspended = 0  # > 0 inside a module whose relevance passes through whole

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.suspended:
            return func(*args, **kwargs)
        tensors = _tensors(args, kwargs)
        if any(getattr(t, _MARK, False) for t in tensors):
            handled = self._statistic(func, args, kwargs, tensors)
            if handled is not None:
                return handled[0]
        carrying = [a for a in tensors if a.requires_grad]
        if not carrying:
            return func(*args, **kwargs)
        if all(isinstance(a, nn.Parameter) for a in carrying):
            if all(isinstance(a, nn.Parameter) for a in tensors):
                with torch.no_grad():
                    return func(*args, **kwargs)  # weights alone (a cast, ``1 + w``): a constant
            # Data through weights (an embedding lookup, a projection of the pixels): the result
            # is where relevance stops — a fresh leaf, readable by autograd.grad.
            if self.dtype is not None and func is not F.embedding:  # a lookup is exact: cast after
                args, kwargs = self._cast(args), {k: self._cast_value(v) for k, v in kwargs.items()}
            with torch.no_grad():
                return _leaves(func(*args, **kwargs), self.dtype)
        if func in _LINEAR or (func is torch.addmm and not kwargs and isinstance(args[2], nn.Parameter)):
            return self._linear(func, args, kwargs)
        if self.dtype is not None:
            if func in _CASTS:
                lifted = self._lift(func, args, kwargs)
                if lifted is not None:
                    return lifted
            args, kwargs = self._cast(args), {k: self._cast_value(v) for k, v in kwargs.items()}
        if func in _MATMUL:
            return MatMulRule.apply(*args, self.attnlrp, self.absorbed)
        if func in _ADD and not kwargs and len(args) == 2:
            return self._add(*args)  # in-place adds return a new tensor: `x += y` rebinds x
        if func in _SUB and not kwargs and len(args) == 2:
            a, b = args if func is not T.__rsub__ else (args[1], args[0])
            return self._add(a, PassRule.apply(torch.neg, {}, b) if _carries(b) else -b)
        if func in _SUM and len(args) <= 2 and set(kwargs) <= {"dim", "keepdim"}:
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            return SumRule.apply(func, args[0], dim, kwargs.get("keepdim", False), self.absorbed)
        if self.attnlrp and func in _SOFTMAX and len(args) <= 2 and set(kwargs) <= {"dim", "dtype", "_stacklevel"}:
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            others = {k: v for k, v in kwargs.items() if k == "dtype"}
            return SoftmaxRule.apply(func, others, args[0], dim, self.absorbed)
        if self.attnlrp and func is F.layer_norm:
            return self._layer_norm(*args, **kwargs)
        if func in _PASS and not (self.attnlrp and (func in _SOFTMAX or func is F.layer_norm)):
            x, *rest = args
            return PassRule.apply(func, kwargs, x, *rest)
        if func in _SQUARE and _activation(args[0]) and self._squares(func, args, kwargs):
            with torch.no_grad():  # a normalisation statistic starts: no relevance flows through it
                return _mark(func(*args, **kwargs))
        if func in _SCALE and len(args) == 2 and not kwargs:
            scaled = _scaled_operand(func, *args)
            if scaled == 0:  # x·c or x/c with a constant c: relevance passes
                return PassRule.apply(func, {}, *args)
            if scaled == 1:  # c·x
                return PassRule.apply(torch.mul, {}, args[1], args[0])
            if func in _MUL and all(_activation(a) for a in args):
                return MulRule.apply(*args, self.absorbed)
        result = func(*args, **kwargs)
        outputs = result if isinstance(result, (tuple, list)) else (result,)
        if func in _ROUTE or not any(_carries(r) for r in outputs):
            return result
        raise RuntimeError(
            f"LRP has no rule for {resolve_name(func) or func} on a tensor that carries relevance; "
            "declare the module that calls it in the adapter's lrp_pass_modules, or add a rule"
        )

    def _add(self, a, b):
        a, b = _tensor_like(a, b), _tensor_like(b, a)
        return (EpsilonAddRule if self.attnlrp else AddRule).apply(a, b, self.absorbed)

    def _linear(self, func, args, kwargs):
        if func is torch.addmm:  # addmm(b, x, W) = x W + b: a linear layer with weight Wᵀ (GPT-2's Conv1D)
            bias, x, weight = args
            weight = weight.t()
        else:
            x = args[0]
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
        x = x if self.dtype is None else x.to(self.dtype)
        return (EpsilonLinearRule if self.attnlrp else LinearRule).apply(x, weight, bias, self.absorbed)

    def _layer_norm(self, x, shape, weight=None, bias=None, eps=1e-5):
        return LayerNormRule.apply(x, tuple(shape), weight, bias, eps, self.absorbed)

    @staticmethod
    def _squares(func, args, kwargs) -> bool:
        exponent = args[1] if len(args) > 1 else kwargs.get("exponent", 2)
        return func in (torch.square, T.square) or (not isinstance(exponent, Tensor) and exponent == 2)

    def _statistic(self, func, args, kwargs, tensors):
        """An op on a statistic: ``(result,)``, or None to dispatch it as usual (an activation
        scaled by the statistic)."""
        if not any(_activation(t) for t in tensors):
            with torch.no_grad():
                if self.dtype is not None and func in _CASTS:
                    result = self._lift(func, args, kwargs)
                    if result is not None:
                        return (_mark(result),)
                result = func(*args, **kwargs)
            outputs = result if isinstance(result, (tuple, list)) else (result,)
            if func in _STATISTIC or not any(isinstance(r, Tensor) for r in outputs):
                return (_mark(result),)
        elif func in _SCALE and len(args) == 2 and not kwargs and _scaled_operand(func, *args) is not None:
            return None
        raise RuntimeError(
            f"LRP treats a normalisation statistic (from pow(x, 2) of a tensor that carries relevance) as a "
            f"constant that scales activations, but {resolve_name(func) or func} uses it otherwise; declare the "
            "module that calls it in the adapter's lrp_pass_modules, or add a rule"
        )

    def _lift(self, func, args, kwargs):
        """A cast of a tensor to a floating precision, done in the pass's precision instead
        (None if the cast is to an integer or boolean type)."""
        x = args[0]
        target = func(x.detach().new_empty(()), *args[1:], **kwargs)  # where the cast would go
        if not isinstance(target, Tensor) or not target.is_floating_point():
            return None
        return x.to(device=target.device, dtype=self.dtype)

    def _cast_value(self, value):
        if isinstance(value, torch.dtype) and value.is_floating_point:
            return self.dtype
        if isinstance(value, Tensor) and value.is_floating_point() and value.dtype != self.dtype:
            return value.to(self.dtype) if _activation(value) else value.detach().to(self.dtype)  # a weight: a constant
        if isinstance(value, (list, tuple)) and any(isinstance(v, Tensor) for v in value):
            return type(value)(self._cast_value(v) for v in value)
        return value

    def _cast(self, args) -> tuple:
        return tuple(self._cast_value(a) for a in args)


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The precision of the model's first floating-point parameter (None if it has none)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``None``, ``"float32"``/``"float64"`` or a torch float dtype, as a torch dtype (or None)."""
    if dtype is None or isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return dtype
    named = {"float32": torch.float32, "float64": torch.float64}.get(dtype) if isinstance(dtype, str) else None
    if named is None:
        raise InputError(f"LRP precision {dtype!r} is not one of float32, float64")
    return named


@contextmanager
def lrp_mode(
    model: torch.nn.Module,
    pass_modules: tuple[str, ...] = (),
    rules: str = "chefer",
    dtype: torch.dtype | str | None = None,
    absorbed: dict | None = None,
) -> Iterator[LRPMode]:
    """Within the block, forward passes build graphs whose backward computes relevance.

    ``pass_modules`` are class names of submodules whose relevance passes from their
    first input to their output unchanged (their inner ops are not inspected), besides
    :data:`ELEMENTWISE_MODULES`. ``rules`` picks the variant (:data:`RULES`). ``dtype``
    (``"float64"``, say) runs every op of the pass in that precision, casting as it goes
    (also the model's own downcasts); None runs it as the model is. ``absorbed``, a dict,
    collects the relevance each rule kept, per rule (module docstring). Hooks are removed
    and the mode is left on exit, also after an exception.
    """
    from .. import attention_functions

    if rules not in RULES:
        raise InputError(f"unknown LRP rules {rules!r}; valid: {', '.join(RULES)}")
    dtype = resolve_dtype(dtype)
    mode = LRPMode(rules, dtype, absorbed)
    handles, undo = [], []
    through = set(pass_modules) | set(ELEMENTWISE_MODULES)

    def enter(module, args):
        mode.suspended += 1

    def leave(module, args, output):
        mode.suspended -= 1
        if mode.suspended == 0 and isinstance(output, Tensor) and args and isinstance(args[0], Tensor):
            return ThroughRule.apply(args[0], output)
        return None

    try:
        config = getattr(model, "config", None)
        if getattr(config, "_attn_implementation", "eager") not in ("eager", attention_functions.NAME):
            undo.append(attention_functions.select(config))  # fused attention (sdpa) has no rule: go eager
        for module in model.modules():
            if type(module).__name__ in through:
                handles.append(module.register_forward_pre_hook(enter))
                handles.append(module.register_forward_hook(leave))
        with mode:
            yield mode
    finally:
        for handle in handles:
            handle.remove()
        for step in undo:
            step()
