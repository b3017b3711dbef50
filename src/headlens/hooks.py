"""Scoped access to every attention site's probabilities: capture and gates.

Everything here attaches PyTorch hooks inside a ``with`` block and removes them
in ``finally``, so a model is left exactly as it was, also after an exception.

* :func:`intercept` — the one mechanism: calls ``fn(site_index, probs)`` on the
  post-softmax, pre-dropout probabilities of every site and lets it replace them.
* :func:`capture` — one forward and one backward of the target logit, returning
  every site's ``A`` and ``∂z_c/∂A`` (TransformerLens' ``run_with_cache``, for heads).
* :func:`gates` — per-example head masks ``[batch, sites, heads]`` multiplying
  each head's probabilities (SPEC §4: pruning a head is exactly this).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from . import attention_functions
from .adapters import Adapter, Inputs, Stream, adapter_for
from .sites import Site

#: ``fn(site_index, probs) -> probs`` with probs ``[batch, heads, n_query, n_key]``.
ProbsFn = Callable[[int, Tensor], Tensor]


@contextmanager
def intercept(model: nn.Module | Adapter, fn: ProbsFn) -> Iterator[Adapter]:
    """Route every site's attention probabilities through ``fn`` during forward passes.

    A site is a (module, call) pair: a hook counts the module's calls, and the count
    restarts whenever the model's root forward starts, so a module that is shared by
    two sites (LXMERT's cross-attention) serves each in turn. Sites reached through
    the module's input get a forward-pre-hook; sites reached through transformers'
    attention-function registry get headlens' attention function (eager attention with
    the hook between softmax and dropout), selected on the model's config for the
    block only. Yields the adapter. Everything is undone on exit.
    """
    adapter = adapter_for(model)
    by_module: dict[str, dict[int, int]] = {}
    via: dict[str, str] = {}
    for index, site in enumerate(adapter.sites):
        by_module.setdefault(site.module, {})[site.call] = index
        via[site.module] = site.via
    calls = dict.fromkeys(by_module, 0)

    def restart(module, args):
        for path in calls:
            calls[path] = 0

    def make_hook(path: str, sites_by_call: dict[int, int]):
        def hook(module, args):
            call = calls[path]
            calls[path] = call + 1
            index = sites_by_call.get(call)
            if index is None:  # a call that is not a site (LXMERT's last vision→language)
                return None
            return (fn(index, args[0]), *args[1:])

        return hook

    handles, undo = [], []
    try:
        handles.append(adapter.model.register_forward_pre_hook(restart))
        for path, sites_by_call in by_module.items():
            module = adapter.model.get_submodule(path)
            hook = make_hook(path, sites_by_call)
            if via[path] == "module_input":
                handles.append(module.register_forward_pre_hook(hook))
            else:
                undo.append(attention_functions.attach(module, hook))
        if undo:
            undo.append(attention_functions.select(adapter.model.config))
        yield adapter
    finally:
        for handle in handles:
            handle.remove()
        for step in reversed(undo):
            step()


@contextmanager
def gates(model: nn.Module | Adapter, mask: Tensor) -> Iterator[Adapter]:
    """Multiply head ``h`` of site ``s`` of example ``b`` by ``mask[b, s, h]`` in every forward pass.

    ``mask`` is ``[batch, sites, heads]`` (0 = pruned, 1 = kept; other values scale
    the head). Only the probabilities are scaled: the output projection and its bias,
    the residual, LayerNorm and FFN still run, and other heads are not rescaled.
    """
    adapter = adapter_for(model)
    expected = (adapter.num_sites, adapter.num_heads)
    if mask.dim() != 3 or tuple(mask.shape[1:]) != expected:
        raise ValueError(f"gate mask must be [batch, {expected[0]}, {expected[1]}], got {list(mask.shape)}")

    def apply(index: int, probs: Tensor) -> Tensor:
        if probs.shape[0] != mask.shape[0]:
            raise ValueError(f"gate mask is for {mask.shape[0]} examples, the forward pass has {probs.shape[0]}")
        return probs * mask[:, index, :, None, None].to(dtype=probs.dtype, device=probs.device)

    with intercept(adapter, apply):
        yield adapter


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (no dropout) for the block; restore every module's mode after."""
    training = [module for module in model.modules() if module.training]
    model.eval()
    try:
        yield model
    finally:
        for module in training:
            module.training = True


@dataclass
class Capture:
    """Attention maps, their gradients and their LRP relevance at every site, for one batch.

    Attributes:
        sites: the adapter's sites; every list below follows this order.
        logits: ``[batch, n_answers]`` raw logits of the unmodified model.
        target: ``long[batch]``, the class whose logit was differentiated
            (the predicted answer unless given).
        attn: per site, ``A`` ``[batch, heads, n_query, n_key]``.
        grad: per site, ``∂z_target/∂A`` (same shape), or None if not asked for.
        relevances: per LRP rule set captured (``"chefer"``, ``"attnlrp"``: see
            :mod:`headlens.relevance.lrp`), per site, the relevance ``R^A`` reaching ``A``
            (same shape; float64 when captured with ``lrp_dtype="float64"``).
        query, key: per site, the :class:`Stream` of its rows and of its columns.
        ids: example ids, one per row (used by seeded per-example methods).
    """

    sites: tuple[Site, ...]
    logits: Tensor
    target: Tensor
    attn: list[Tensor]
    grad: list[Tensor] | None
    query: list[Stream]
    key: list[Stream]
    ids: list
    relevances: dict[str, list[Tensor]] = field(default_factory=dict)

    @property
    def relevance(self) -> list[Tensor] | None:
        """Per site, ``R^A`` under the default (Chefer et al.) rules, or None if not captured."""
        return self.relevances.get("chefer")

    @property
    def batch_size(self) -> int:
        return self.logits.shape[0]


def capture(
    model: nn.Module | Adapter,
    inputs: Inputs,
    *,
    target: Tensor | None = None,
    grad: bool = True,
    relevance: bool = False,
    lrp_rules: str | Sequence[str] = "chefer",
    lrp_dtype: torch.dtype | str | None = None,
    ids: Sequence | None = None,
) -> Capture:
    """One forward and, if ``grad``, one backward of the target logit to the attention maps;
    if ``relevance``, one forward and one backward in LRP mode (:mod:`headlens.relevance.lrp`)
    per rule set in ``lrp_rules`` (a name or several), run in ``lrp_dtype`` (None: the
    model's precision; ``"float64"`` casts op by op, without a float64 copy of the model).

    The gradient backward differentiates ``Σ_b z[b, target[b]]`` with respect to the
    attention maps only (no parameter gradients are formed or accumulated); examples do
    not interact, so each example's gradient is its own. The target defaults to the
    predicted answer of the first pass (never one the adapter excludes). The model runs in the
    mode it is in: use :func:`eval_mode` for analysis.
    """
    adapter = adapter_for(model)
    grads, relevances = None, {}
    if grad or not relevance:
        logits, attn, grads, target = _pass(adapter, inputs, target, "gradient" if grad else None)
    if relevance:
        for rules in (lrp_rules,) if isinstance(lrp_rules, str) else tuple(dict.fromkeys(lrp_rules)):
            logits_lrp, attn_lrp, relevances[rules], target = _pass(
                adapter, inputs, target, "relevance", rules, lrp_dtype
            )
            if not grad and len(relevances) == 1:
                logits, attn = logits_lrp, attn_lrp
    streams = adapter.streams(inputs)
    return Capture(
        sites=adapter.sites,
        logits=logits,
        target=target.to(logits.device),
        attn=attn,
        grad=grads,
        query=[streams[site.query] for site in adapter.sites],
        key=[streams[site.key] for site in adapter.sites],
        ids=list(range(logits.shape[0])) if ids is None else list(ids),
        relevances=relevances,
    )


def _pass(
    adapter: Adapter, inputs: Inputs, target: Tensor | None, backward: str | None,
    lrp_rules: str = "chefer", lrp_dtype: torch.dtype | str | None = None,
):  # fmt: skip
    """A forward recording every site's ``A``, then the requested backward to them:
    ``"gradient"`` of the target logit, ``"relevance"`` from a one-hot at the target
    (LRP under ``lrp_rules``, in ``lrp_dtype``), or None. Returns detached ``(logits, attn,
    per-site results or None, target)``; logits and maps in the model's precision."""
    from .relevance.lrp import lrp_mode, model_dtype

    attn: list[Tensor | None] = [None] * adapter.num_sites

    def record(index: int, probs: Tensor) -> Tensor:
        if backward and not probs.requires_grad:  # nothing upstream needs grad (frozen model): make it a leaf
            probs = probs.detach().requires_grad_()
        attn[index] = probs
        return probs

    rules = nullcontext()
    if backward == "relevance":
        rules = lrp_mode(adapter.model, rules=lrp_rules, dtype=lrp_dtype)
    with torch.enable_grad() if backward else torch.no_grad(), rules, intercept(adapter, record):
        logits = adapter.logits(inputs)
    missing = [site.name for site, a in zip(adapter.sites, attn) if a is None]
    if missing:
        raise RuntimeError(f"{adapter.family}: sites not reached in the forward pass: {', '.join(missing)}")
    if target is None:
        target = adapter.predict(logits.detach())
    target = target.to(logits.device)[:, None]
    found = None
    if backward == "gradient":
        found = torch.autograd.grad(logits.gather(1, target).sum(), attn, allow_unused=True)
    elif backward == "relevance":
        one_hot = torch.zeros_like(logits).scatter_(1, target, 1.0)
        found = torch.autograd.grad(logits, attn, grad_outputs=one_hot, allow_unused=True)
    if found is not None:
        found = [torch.zeros_like(a) if f is None else f.detach() for a, f in zip(attn, found)]
    logits, attn = logits.detach(), [a.detach() for a in attn]
    if backward == "relevance" and lrp_dtype is not None:  # a pass in another precision: maps as the model's
        dtype = model_dtype(adapter.model) or logits.dtype
        logits, attn = logits.to(dtype), [a.to(dtype) for a in attn]
    return logits, attn, found, target[:, 0]
