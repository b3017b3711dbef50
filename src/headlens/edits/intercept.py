"""Scoped access to every attention site's probabilities: interception, gates, eval mode.

Every change is an edit registered with :func:`headlens.edits.handles.editing`, so a model is
left exactly as it was when the block ends, also after an exception.

* :func:`intercept` — the one mechanism: calls ``fn(site_index, probs)`` on the
  post-softmax, pre-dropout probabilities of every site and lets it replace them.
* :func:`gates` — per-example head masks ``[batch, sites, heads]`` multiplying
  each head's probabilities (pruning a head is exactly this: docs/method.md#pruning-a-head).
* :func:`eval_mode` — no dropout for the block, every module's mode restored after.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from torch import Tensor, nn

from ..adapters import Adapter, adapter_for
from . import attention_function
from .handles import editing

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

    with editing() as edits:
        edits.hook(adapter.model.register_forward_pre_hook(restart))
        for path, sites_by_call in by_module.items():
            module = adapter.model.get_submodule(path)
            hook = make_hook(path, sites_by_call)
            if via[path] == "module_input":
                edits.hook(module.register_forward_pre_hook(hook))
            else:
                edits.add(attention_function.attach(module, hook))
        if "attention_function" in via.values():
            edits.add(attention_function.select(adapter.model.config))
        yield adapter


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

    def restore() -> None:
        for module in training:
            module.training = True

    with editing() as edits:
        model.eval()
        edits.add(restore)
        yield model
