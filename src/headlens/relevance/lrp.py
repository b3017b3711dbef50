"""Layer-wise relevance propagation with the rules of Chefer et al., "Transformer
Interpretability Beyond Attention Visualization" (CVPR 2021), SPEC §7, without
forking model code.

Inside :func:`lrp_mode`, a ``TorchFunctionMode`` replaces each differentiable torch
op of the forward pass by an autograd function whose *backward computes relevance*
instead of a gradient; one backward from a one-hot at the target answer then
propagates relevance through the whole network, and ``torch.autograd.grad`` reads
it wherever it is wanted (the attention maps, the inputs). The rules are chosen by
op, so they serve every model family built from these ops:

============================  ===================================================
``F.linear``                  alpha = 1, beta = 0: with ``Z = W⁺x⁺ + W⁻x⁻``,
                              ``R_in = x⁺ ⊙ W⁺ᵀ(R/Z) + x⁻ ⊙ W⁻ᵀ(R/Z)``; bias ignored
``+`` (residuals, sums)        gradient × input per branch, rescaled so branch shares
                              follow ``|Σ branch|`` and the total is ``Σ R``, per example
``matmul`` of two activations  gradient × input to both operands, each halved
sum / mean over dimensions     gradient × input (each summand its share ``x R / Σx``)
softmax, GELU, LayerNorm,      relevance passes unchanged
dropout, tanh, ×/÷ a constant
views, indexing, concatenation the ordinary backward: relevance is routed, and a
                              tensor used twice sums what its uses return (Clone)
============================  ===================================================

Any other op on a tensor that carries relevance is an error naming the op, so a
model built from something else fails loudly instead of giving wrong numbers.
Modules whose whole forward should pass relevance through unchanged (a
hand-written activation, say) are named by the adapter's ``lrp_pass_modules``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode, resolve_name

EPSILON = 1e-9


def safe_divide(a: Tensor, b: Tensor) -> Tensor:
    """``a / (b + ε)`` where ``b ≠ 0`` and 0 where ``b = 0`` (ε = 1e-9), as the original."""
    denominator = b + EPSILON
    denominator = torch.where(denominator == 0, EPSILON, denominator)  # b = −ε exactly
    return (a / denominator).masked_fill_(b == 0, 0.0)


def per_example_sum(t: Tensor) -> Tensor:
    """Sum over every dimension but the first (the batch), kept for broadcasting."""
    if t.dim() == 0:
        return t
    return t.reshape(t.shape[0], -1).sum(1).reshape(-1, *([1] * (t.dim() - 1)))


def _reduce_to(t: Tensor, shape: torch.Size) -> Tensor:
    return t if t.shape == shape else t.sum_to_size(shape)


class LinearRule(torch.autograd.Function):
    """``F.linear`` forward; alpha-1-beta-0 relevance backward (bias ignored).

    ``W⁺x⁺ + W⁻x⁻ = (Wx + |W||x|)/2`` and ``x⁺⊙W⁺ᵀS + x⁻⊙W⁻ᵀS = (x⊙WᵀS + |x|⊙|W|ᵀS)/2``:
    one matmul for Z and two back, instead of two and four. ``Z ≥ 0``, so the
    stabilised division needs no sign care: ``S/2 = R / (2Z + 2ε)``, 0 where ``Z = 0``.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, weight_abs):
        y = F.linear(x, weight, bias)
        ctx.save_for_backward(x, weight, weight_abs, y if bias is None else y - bias)
        return y

    @staticmethod
    def backward(ctx, relevance):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        x, weight, weight_abs, wx = ctx.saved_tensors
        x_abs = x.abs()
        twice_z = wx + F.linear(x_abs, weight_abs)
        half_s = (relevance / (twice_z + 2 * EPSILON)).masked_fill_(twice_z == 0, 0.0)
        return torch.addcmul(x * (half_s @ weight), x_abs, half_s @ weight_abs), None, None, None


class AddRule(torch.autograd.Function):
    """``a + b`` forward; the Add rule backward, branch sums taken per example."""

    @staticmethod
    def forward(ctx, a, b):
        z = a + b
        ctx.save_for_backward(a, b, z)
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
        return _reduce_to(ra, a.shape), _reduce_to(rb, b.shape)


class MatMulRule(torch.autograd.Function):
    """``a @ b`` of two activations forward; gradient × input to each, halved, backward."""

    @staticmethod
    def forward(ctx, a, b):
        z = torch.matmul(a, b)
        ctx.save_for_backward(a, b, z)
        return z

    @staticmethod
    def backward(ctx, relevance):
        a, b, z = ctx.saved_tensors
        s = safe_divide(relevance, z)
        share = 0.5 if all(ctx.needs_input_grad[:2]) else 1.0
        ra = a * torch.matmul(s, b.transpose(-1, -2)) * share
        rb = b * torch.matmul(a.transpose(-1, -2), s) * share
        return _reduce_to(ra, a.shape), _reduce_to(rb, b.shape)


class SumRule(torch.autograd.Function):
    """A sum or mean over dimensions forward; gradient × input backward (each summand gets its
    share ``x ⊙ R / Σx``: mean pooling over tokens, for one)."""

    @staticmethod
    def forward(ctx, fn, x, dim, keepdim):
        dims = tuple(range(x.dim())) if dim is None else (dim,) if isinstance(dim, int) else tuple(dim)
        ctx.save_for_backward(x)
        ctx.dims, ctx.keepdim = dims, keepdim
        return fn(x, dim=dims, keepdim=keepdim)

    @staticmethod
    def backward(ctx, relevance):
        (x,) = ctx.saved_tensors
        total = x.sum(dim=ctx.dims, keepdim=True)
        if not ctx.keepdim:
            for dim in sorted(d % x.dim() for d in ctx.dims):
                relevance = relevance.unsqueeze(dim)
        return None, x * safe_divide(relevance, total), None, None


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
_PASS = {F.softmax, T.softmax, torch.softmax, F.gelu, F.layer_norm, F.dropout, torch.tanh, T.tanh, F.relu, torch.relu}
_SCALE = {torch.div, T.div, T.__truediv__, torch.mul, T.mul, T.__mul__, T.__rmul__}
_SUM = {torch.sum, T.sum, torch.mean, T.mean}
_ROUTE = {
    T.view, T.reshape, torch.reshape, T.transpose, torch.transpose, T.permute, torch.permute, T.contiguous,
    T.__getitem__, torch.gather, T.gather, torch.cat, torch.stack, T.expand, T.expand_as, T.unsqueeze,
    torch.unsqueeze, T.squeeze, torch.squeeze, T.flatten, torch.flatten, T.select, torch.index_select,
    T.index_select, T.split, torch.split, T.chunk, torch.chunk, T.clone, torch.clone, T.to, T.float, T.double,
    T.type_as, T.narrow, T.unbind, torch.unbind, T.repeat, T.repeat_interleave, T.requires_grad_,
}  # fmt: skip


def _carries(value) -> bool:
    return isinstance(value, Tensor) and value.requires_grad


def _tensors(args, kwargs) -> list[Tensor]:
    """The tensors among the arguments, also inside lists and tuples (``torch.cat``'s)."""
    found = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(v for v in value if isinstance(v, Tensor))
    return found


def _leaves(result):
    if isinstance(result, Tensor):
        return result.requires_grad_() if result.is_floating_point() else result
    if isinstance(result, (tuple, list)):
        return type(result)(_leaves(r) for r in result)
    return result


def _constant(value) -> bool:
    return not isinstance(value, Tensor) or not value.requires_grad


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


class LRPMode(TorchFunctionMode):
    """Routes each op of the forward pass to its LRP rule (see the module docstring)."""

    def __init__(self):
        super().__init__()
        self.suspended = 0  # > 0 inside a module whose relevance passes through whole
        self.weight_abs: dict[int, Tensor] = {}  # |W| of each weight, computed once per pass

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        carrying = [a for a in _tensors(args, kwargs) if a.requires_grad]
        if self.suspended or not carrying:
            return func(*args, **kwargs)
        if all(isinstance(a, nn.Parameter) for a in carrying):
            # Only weights carry gradients (an embedding lookup, a patch projection of the pixels):
            # the result is where relevance stops — a fresh leaf, readable by autograd.grad.
            with torch.no_grad():
                result = func(*args, **kwargs)
            return _leaves(result)
        if func in _LINEAR:
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            weight_abs = self.weight_abs.get(id(weight))
            if weight_abs is None:
                weight_abs = self.weight_abs[id(weight)] = weight.detach().abs()
            return LinearRule.apply(args[0], weight, bias, weight_abs)
        if func in _MATMUL:
            return MatMulRule.apply(*args)
        if func in _ADD and not kwargs and len(args) == 2:
            a, b = args
            a = a if isinstance(a, Tensor) else torch.as_tensor(a, dtype=b.dtype, device=b.device)
            b = b if isinstance(b, Tensor) else torch.as_tensor(b, dtype=a.dtype, device=a.device)
            return AddRule.apply(a, b)  # in-place adds return a new tensor: `x += y` rebinds x
        if func in _SUM and len(args) <= 2 and set(kwargs) <= {"dim", "keepdim"}:
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            return SumRule.apply(func, args[0], dim, kwargs.get("keepdim", False))
        if func in _PASS:
            x, *rest = args
            return PassRule.apply(func, kwargs, x, *rest)
        if func in _SCALE and len(args) == 2 and not kwargs:
            scaled = _scaled_operand(func, *args)
            if scaled == 0:  # x·c or x/c with a constant c: relevance passes
                return PassRule.apply(func, {}, *args)
            if scaled == 1:  # c·x
                return PassRule.apply(torch.mul, {}, args[1], args[0])
        result = func(*args, **kwargs)
        outputs = result if isinstance(result, (tuple, list)) else (result,)
        if func in _ROUTE or not any(_carries(r) for r in outputs):
            return result
        raise RuntimeError(
            f"LRP has no rule for {resolve_name(func) or func} on a tensor that carries relevance; "
            "declare the module that calls it in the adapter's lrp_pass_modules, or add a rule"
        )


@contextmanager
def lrp_mode(model: torch.nn.Module, pass_modules: tuple[str, ...] = ()) -> Iterator[LRPMode]:
    """Within the block, forward passes build graphs whose backward computes relevance.

    ``pass_modules`` are class names of submodules whose relevance passes from their
    first input to their output unchanged (their inner ops are not inspected). Hooks
    are removed and the mode is left on exit, also after an exception.
    """
    from .. import attention_functions

    mode = LRPMode()
    handles, undo = [], []

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
        for module in model.modules() if pass_modules else ():
            if type(module).__name__ in pass_modules:
                handles.append(module.register_forward_pre_hook(enter))
                handles.append(module.register_forward_hook(leave))
        with mode:
            yield mode
    finally:
        for handle in handles:
            handle.remove()
        for step in undo:
            step()
