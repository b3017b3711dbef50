"""headlens' entry in transformers' attention-function registry.

Models written for transformers 5's registry (BERT, RoBERTa, DistilBERT, ViT, the decoders of
:mod:`headlens.adapters.decoders`, …) compute
attention in a function chosen by ``config._attn_implementation``. headlens registers
``"headlens"``: eager attention (the maps are materialised) that passes the
post-softmax, pre-dropout probabilities through the hooks attached to the calling
module. :func:`select` switches a config to it for a block; :func:`attach` hangs a hook
on one module. Without hooks it computes plain eager attention.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

NAME = "headlens"
_HOOKS: dict[int, list[Callable]] = {}  # id(module) -> hooks, oldest first
_registered = False


def headlens_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, softcap=None, **kwargs):
    """Eager attention (``[batch, heads, q, d]`` in), with the module's hooks on the probabilities.

    Grouped-query attention: ``key``/``value`` with fewer heads than ``query`` are shared by
    consecutive query heads (``repeat_kv``'s order: query head ``h`` reads key/value head
    ``h // groups``), so the probabilities, and the hooks, are per query head. ``softcap``
    (Gemma 2): the logits become ``c·tanh(logits / c)`` before the mask. Sliding windows
    arrive in ``attention_mask``."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if softcap is not None:
        weights = torch.tanh(weights / softcap) * softcap
    if attention_mask is not None:
        weights = weights + attention_mask[:, :, :, : key.shape[-2]]
    # Softmax in at least float32 (as ViT's eager attention does), never below the model's precision.
    weights = nn.functional.softmax(weights, dim=-1, dtype=torch.promote_types(query.dtype, torch.float32))
    weights = weights.to(query.dtype)
    for hook in _HOOKS.get(id(module), ()):
        replaced = hook(module, (weights,))
        if replaced is not None:
            weights = replaced[0]
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


def register() -> None:
    """Add ``"headlens"`` to transformers' attention and attention-mask registries (once)."""
    global _registered
    if _registered:
        return
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask
    from transformers.modeling_utils import AttentionInterface

    AttentionInterface.register(NAME, headlens_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, eager_mask)  # additive float masks, as eager attention takes
    _registered = True


def attach(module: nn.Module, hook: Callable) -> Callable[[], None]:
    """Run ``hook(module, (probs,))`` on ``module``'s probabilities; returns the undo."""
    register()
    hooks = _HOOKS.setdefault(id(module), [])
    hooks.append(hook)

    def detach() -> None:
        hooks.remove(hook)
        if not hooks:
            _HOOKS.pop(id(module), None)

    return detach


def select(config) -> Callable[[], None]:
    """Make ``config`` use headlens' attention function; returns the undo."""
    register()
    before = config._attn_implementation
    config._attn_implementation = NAME

    def restore() -> None:
        config._attn_implementation = before

    return restore


def attached() -> int:
    """How many modules carry hooks now (0 outside every headlens context)."""
    return len(_HOOKS)
