"""Model adapters: the only code that knows a model family's attribute paths.

``adapter_for(model)`` picks the adapter by the model's class name.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Adapter, Stream
from .lxmert import LxmertAdapter
from .visual_bert import VisualBertAdapter

#: every adapter, by family name.
ADAPTERS: dict[str, type[Adapter]] = {
    LxmertAdapter.family: LxmertAdapter,
    VisualBertAdapter.family: VisualBertAdapter,
}


def adapter_for(model: nn.Module | Adapter) -> Adapter:
    """The adapter of ``model`` (returned as is if it already is one)."""
    if isinstance(model, Adapter):
        return model
    name = type(model).__name__
    for adapter in ADAPTERS.values():
        if name in adapter.model_classes:
            return adapter(model)
    supported = ", ".join(f"{cls} ({family})" for family, a in ADAPTERS.items() for cls in a.model_classes)
    raise TypeError(f"no headlens adapter for {name}; supported model classes: {supported}")


def adapter_class(family: str) -> type[Adapter]:
    """The adapter class of a model family name."""
    if family not in ADAPTERS:
        raise KeyError(f"unknown model family {family!r}; valid: {', '.join(ADAPTERS)}")
    return ADAPTERS[family]


def load_model(family: str, path: str | None = None, seed: int = 0) -> nn.Module:
    """A model of ``family``: from ``path`` (HF id or folder) with ``from_pretrained``, or,
    when ``path`` is None, a tiny random-init model (initialised from ``seed``) for smoke runs."""
    import transformers

    adapter = adapter_class(family)
    model_class = getattr(transformers, adapter.model_classes[0])
    if path is not None:
        return model_class.from_pretrained(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(adapter.tiny_config())


__all__ = ["ADAPTERS", "Adapter", "LxmertAdapter", "Stream", "VisualBertAdapter", "adapter_class", "adapter_for", "load_model"]
