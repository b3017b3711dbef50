"""Model adapters: the only code that knows a model family.

Each family is one literal table (:class:`~headlens.adapters.family.Family`) in its own
file; one generic :class:`~headlens.adapters.adapter.Adapter` reads it.
``adapter_for(model)`` picks the table by the model's class name.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from .adapter import Adapter, AttentionWeights, Inputs, Stream, sites_of
from .decoders import DECODERS
from .encoders import TEXT_ENCODERS, VIT
from .family import Family
from .lxmert import LXMERT
from .visual_bert import VISUAL_BERT

#: every family, by name.
FAMILIES: dict[str, Family] = {family.name: family for family in (LXMERT, VISUAL_BERT, TEXT_ENCODERS, VIT, DECODERS)}


def family_of(model: nn.Module) -> Family:
    """The family table serving ``model``'s class; an unsupported class is an error listing the supported ones."""
    name = type(model).__name__
    for family in FAMILIES.values():
        if name in family.model_classes:
            return family
    supported = ", ".join(f"{cls} ({family.name})" for family in FAMILIES.values() for cls in family.model_classes)
    raise TypeError(f"no headlens adapter for {name}; supported model classes: {supported}")


def adapter_for(model: nn.Module | Adapter, exclude_answers: Sequence[int] = (),
                classes: Sequence[int] | None = None) -> Adapter:  # fmt: skip
    """The adapter of ``model`` (returned as is if it already is one); ``classes``: a decoder's
    label-token ids (see :class:`Adapter`)."""
    if isinstance(model, Adapter):
        return model
    return Adapter(model, family_of(model), exclude_answers, classes)


def family_table(name: str) -> Family:
    """The table of a family by its name."""
    if name not in FAMILIES:
        raise KeyError(f"unknown model family {name!r}; valid: {', '.join(FAMILIES)}")
    return FAMILIES[name]


__all__ = [
    "FAMILIES", "Adapter", "AttentionWeights", "Family", "Inputs", "Stream", "adapter_for", "family_of", "family_table",
    "sites_of",
]  # fmt: skip
