"""The LRP rules, one autograd function per op kind: a forward that computes the op and a
backward that computes relevance instead of a gradient (the rules of both variants are
listed in :mod:`headlens.edits.lrp`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: the stabiliser of divisions under ``rules="chefer"`` (the original's).
EPSILON = 1e-9
#: the epsilon rule's stabiliser under ``rules="attnlrp"``.
ATTNLRP_EPSILON = 1e-6


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


def cast_to(t: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    return t if t is None or t.dtype == dtype else t.to(dtype)


def is_activation(value) -> bool:
    """A tensor relevance flows to: one that requires grad and is not a weight."""
    return isinstance(value, Tensor) and value.requires_grad and not isinstance(value, nn.Parameter)


def _audit(ctx, name: str, relevance: Tensor, *parts: Tensor | None) -> None:
    """Add to the pass's ``absorbed`` ledger what this op did not pass on to activations."""
    if ctx.absorbed is None:
        return
    passed = sum(part.sum() for part, live in zip(parts, ctx.live) if live and part is not None)
    ctx.absorbed[name] = ctx.absorbed.get(name, 0.0) + (relevance.sum() - passed).detach()


def _keep(ctx, absorbed: dict | None, *inputs) -> None:
    ctx.absorbed, ctx.live = absorbed, [is_activation(x) for x in inputs]


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
        bias = cast_to(bias, x.dtype)
        y = F.linear(x, cast_to(weight, x.dtype), bias)
        ctx.save_for_backward(x, weight, y if bias is None else y - bias)
        _keep(ctx, absorbed, x)
        return y

    @staticmethod
    def backward(ctx, relevance):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        x, weight, wx = ctx.saved_tensors
        weight = cast_to(weight, x.dtype)
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
        y = F.linear(x, cast_to(weight, x.dtype), cast_to(bias, x.dtype))
        ctx.save_for_backward(x, weight, y)
        _keep(ctx, absorbed, x)
        return y

    @staticmethod
    def backward(ctx, relevance):
        x, weight, y = ctx.saved_tensors
        found = x * (epsilon_divide(relevance, y) @ cast_to(weight, x.dtype))
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
        weight, bias = cast_to(weight, x.dtype), cast_to(bias, x.dtype)
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
