"""The ``TorchFunctionMode`` that routes each op of a forward pass to its LRP rule, and
:func:`lrp_mode`, the edit that turns it on for a block (see :mod:`headlens.edits.lrp`)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode, resolve_name

from ...errors import InputError
from .. import attention_function
from ..handles import editing
from .rules import (
    AddRule, EpsilonAddRule, EpsilonLinearRule, LayerNormRule, LinearRule, MatMulRule, MulRule, PassRule, SoftmaxRule,
    SumRule, ThroughRule, is_activation,
)  # fmt: skip

#: the rule sets :func:`lrp_mode` knows; the first is the default (docs/method.md#lrp-rules).
RULES = ("chefer", "attnlrp")
#: transformers' elementwise activations written as tensor arithmetic (``0.5·x·(1 + tanh(…))``):
#: relevance passes through them whole, as through any activation.
ELEMENTWISE_MODULES = ("NewGELUActivation", "FastGELUActivation", "QuickGELUActivation", "AccurateGELUActivation")

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
        if func in _SQUARE and is_activation(args[0]) and self._squares(func, args, kwargs):
            with torch.no_grad():  # a normalisation statistic starts: no relevance flows through it
                return _mark(func(*args, **kwargs))
        if func in _SCALE and len(args) == 2 and not kwargs:
            scaled = _scaled_operand(func, *args)
            if scaled == 0:  # x·c or x/c with a constant c: relevance passes
                return PassRule.apply(func, {}, *args)
            if scaled == 1:  # c·x
                return PassRule.apply(torch.mul, {}, args[1], args[0])
            if func in _MUL and all(is_activation(a) for a in args):
                return MulRule.apply(*args, self.absorbed)
        result = func(*args, **kwargs)
        outputs = result if isinstance(result, (tuple, list)) else (result,)
        if func in _ROUTE or not any(_carries(r) for r in outputs):
            return result
        raise RuntimeError(
            f"LRP has no rule for {resolve_name(func) or func} on a tensor that carries relevance; "
            "name the module that calls it in lrp_mode's pass_modules, or add a rule to headlens.edits.lrp"
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
        if not any(is_activation(t) for t in tensors):
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
            f"constant that scales activations, but {resolve_name(func) or func} uses it otherwise; name the "
            "module that calls it in lrp_mode's pass_modules, or add a rule to headlens.edits.lrp"
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
            return value.to(self.dtype) if is_activation(value) else value.detach().to(self.dtype)  # a weight: a constant
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
    and the mode is left on exit, also after an exception (one :func:`~headlens.edits.handles.editing` block).
    """
    if rules not in RULES:
        raise InputError(f"unknown LRP rules {rules!r}; valid: {', '.join(RULES)}")
    dtype = resolve_dtype(dtype)
    mode = LRPMode(rules, dtype, absorbed)
    through = set(pass_modules) | set(ELEMENTWISE_MODULES)

    def enter(module, args):
        mode.suspended += 1

    def leave(module, args, output):
        mode.suspended -= 1
        if mode.suspended == 0 and isinstance(output, Tensor) and args and isinstance(args[0], Tensor):
            return ThroughRule.apply(args[0], output)
        return None

    with editing() as edits:
        config = getattr(model, "config", None)
        if getattr(config, "_attn_implementation", "eager") not in ("eager", attention_function.NAME):
            edits.add(attention_function.select(config))  # fused attention (sdpa) has no rule: go eager
        for module in model.modules():
            if type(module).__name__ in through:
                edits.hook(module.register_forward_pre_hook(enter))
                edits.hook(module.register_forward_hook(leave))
        mode.__enter__()
        edits.add(lambda: mode.__exit__(None, None, None))
        yield mode
