"""What every model adapter provides.

An adapter is the only place that knows a model family's attribute paths and
input names. Everything else (hooks, scoring, pruning, plotting) talks to the
model through this interface:

* :attr:`Adapter.sites` — the attention sites in their canonical order;
* :meth:`Adapter.logits` — run the model on a dict of forward kwargs;
* :meth:`Adapter.streams` — which token positions are real, per example;
* :meth:`Adapter.pooled_row` — the row whose output the classifier reads;
* :attr:`Adapter.count_rule` — how the original counted pruned heads (SPEC §4).

Subclasses are mostly declarative: they list their sites and input keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import torch
from torch import Generator, Tensor, nn

from ..sites import Site

Inputs = Mapping[str, Tensor]


@dataclass(frozen=True)
class Stream:
    """Token positions of one stream of a batch.

    Attributes:
        mask: ``bool[batch, n]``, True at real (non-padding) positions.
        count: ``float[batch]``, how many positions the per-head means of SPEC §3
            divide by: real text tokens, and *every* visual slot of the input tensor
            (the original's VisualBERT mean included padded box slots; its data padded
            every image to the same number of slots, so this count is a property of
            the example, never of the batch it sits in).
    """

    mask: Tensor
    count: Tensor


class Adapter:
    """Base class of the model adapters. See the module docstring."""

    #: short family name used in configs and result files.
    family: ClassVar[str]
    #: HF model classes this adapter serves (by class name, so importing is lazy).
    model_classes: ClassVar[tuple[str, ...]]
    #: SPEC §4: ``"prune_floor"`` prunes ``int(p·N)``; ``"keep_floor"`` keeps ``int((1−p)·N)``.
    count_rule: ClassVar[str] = "prune_floor"
    #: forward kwarg holding the text attention mask (1 = real token).
    text_mask_key: ClassVar[str] = "attention_mask"
    #: forward kwarg holding the visual features ``[batch, boxes, dim]`` (None: text-only model).
    image_key: ClassVar[str | None] = None
    #: forward kwarg holding the visual attention mask, if the model takes one.
    image_mask_key: ClassVar[str | None] = None

    def __init__(self, model: nn.Module):
        self.model = model
        self.sites: tuple[Site, ...] = tuple(self.build_sites(model.config))
        heads = {site.heads for site in self.sites}
        if len(heads) != 1:
            raise ValueError(f"{self.family}: sites with different head counts {sorted(heads)} are not supported")
        self.num_heads: int = heads.pop()
        for site in self.sites:  # fail at construction, not mid-run, on a wrong path
            model.get_submodule(site.module)

    # --- declared by each family -------------------------------------------------
    @classmethod
    def build_sites(cls, config) -> list[Site]:
        """The sites of a model with this config, in canonical order."""
        raise NotImplementedError

    def logits(self, inputs: Inputs) -> Tensor:
        """Raw answer logits ``[batch, n_answers]`` (before any sigmoid/softmax)."""
        raise NotImplementedError

    def pooled_row(self, inputs: Inputs) -> Tensor:
        """``long[batch]``: position, in the stream the classifier reads, of the pooled token."""
        raise NotImplementedError

    # --- shared --------------------------------------------------------------------
    @property
    def site_names(self) -> list[str]:
        return [site.name for site in self.sites]

    @property
    def num_sites(self) -> int:
        return len(self.sites)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def streams(self, inputs: Inputs) -> dict[str, Stream]:
        """Real positions and mean denominators of every stream of a batch."""
        ids = inputs.get("input_ids")
        batch, length = ids.shape if ids is not None else inputs["inputs_embeds"].shape[:2]
        device = self.device
        text_mask = inputs.get(self.text_mask_key)
        text_mask = (
            torch.ones(batch, length, dtype=torch.bool, device=device) if text_mask is None else text_mask.bool()
        )
        streams = {"text": Stream(text_mask, text_mask.sum(-1).to(torch.float32))}
        if self.image_key is not None:
            slots = inputs[self.image_key].shape[1]
            image_mask = inputs.get(self.image_mask_key) if self.image_mask_key else None
            image_mask = (
                torch.ones(batch, slots, dtype=torch.bool, device=device) if image_mask is None else image_mask.bool()
            )
            streams["image"] = Stream(image_mask, torch.full((batch,), float(slots), device=device))
            streams["joint"] = Stream(
                torch.cat([text_mask, image_mask], dim=1), streams["text"].count + streams["image"].count
            )
        return streams

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.num_sites} sites × {self.num_heads} heads>"



def random_question(vocab: int, max_len: int, generator: Generator) -> Tensor:
    """Token ids of one random question, ``3…max_len`` tokens long (for tests and smoke runs)."""
    length = int(torch.randint(3, max_len + 1, (1,), generator=generator))
    return torch.randint(1, vocab, (length,), generator=generator)
