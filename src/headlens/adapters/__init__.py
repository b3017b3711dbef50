"""Model adapters: the only code that knows a model family's attribute paths.

``adapter_for(model)`` picks the adapter by the model's class name.
"""

from __future__ import annotations

from torch import nn

from .base import Adapter, Stream
from .encoders import TextEncoderAdapter, ViTAdapter
from .lxmert import LxmertAdapter
from .visual_bert import VisualBertAdapter

#: every adapter, by family name.
ADAPTERS: dict[str, type[Adapter]] = {
    adapter.family: adapter for adapter in (LxmertAdapter, VisualBertAdapter, TextEncoderAdapter, ViTAdapter)
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


__all__ = [
    "ADAPTERS", "Adapter", "LxmertAdapter", "Stream", "TextEncoderAdapter", "ViTAdapter", "VisualBertAdapter",
    "adapter_class", "adapter_for",
]  # fmt: skip
