"""Encoders written for transformers 5's attention-function registry: the BERT family
(BERT, RoBERTa, DistilBERT, MiniLM-style BERT) for text classification, and ViT.

Their attention modules hand the maps to a registered attention function (``via =
"attention_function"``: see :mod:`headlens.attention_functions`); the sites are those
modules in model order, one self-attention per layer, named ``enc.{i}.self``. The
classifier reads [CLS] (position 0) — or, for :class:`~headlens.models.BertMeanPoolClassifier`,
the mean of the real tokens.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from ..sites import Site, site_name
from .base import Adapter, AttentionWeights, Inputs, Stream

#: attention modules (class names) whose forward passes the maps to the registry → their
#: query/key/value projections and the output projection (a sibling's path with ``../``).
ATTENTION_CLASSES = {
    "BertSelfAttention": (("query", "key", "value"), "../output.dense"),
    "RobertaSelfAttention": (("query", "key", "value"), "../output.dense"),
    "DistilBertSelfAttention": (("q_lin", "k_lin", "v_lin"), "out_lin"),
    "ViTAttention": (("q_proj", "k_proj", "v_proj"), "o_proj"),
}


def _attention_sites(model: nn.Module, stream: str) -> list[Site]:
    found = [(name, m) for name, m in model.named_modules() if type(m).__name__ in ATTENTION_CLASSES]
    if not found:
        raise TypeError(f"{type(model).__name__}: no attention module of the classes {', '.join(ATTENTION_CLASSES)}")
    heads = model.config.num_attention_heads  # DistilBertConfig maps it to n_heads
    return [Site(site_name("enc", i, "self"), name, 0, stream, stream, heads, via="attention_function")
            for i, (name, _) in enumerate(found)]  # fmt: skip


class _RegistryEncoder(Adapter):
    """What the registry-based encoders share: sites found on the model, logits, [CLS] pooling."""

    count_rule = "prune_floor"
    #: the one token stream (``text`` or ``image``) and the input that carries it.
    stream: ClassVar[str]
    input_key: ClassVar[str]

    def sites_of(self, model: nn.Module) -> list[Site]:
        return _attention_sites(model, self.stream)

    @classmethod
    def build_sites(cls, config) -> list[Site]:
        raise TypeError(f"{cls.family}: sites are found on a model, not a config: use the adapter of a model")

    def attention_weights(self, site: Site) -> AttentionWeights:
        """The site's module is the attention module itself; its layout depends on its class."""
        qkv, output = ATTENTION_CLASSES[type(self.model.get_submodule(site.module)).__name__]
        if output.startswith("../"):
            output = site.module.rsplit(".", 1)[0] + "." + output[3:]
        else:
            output = f"{site.module}.{output}"
        return AttentionWeights(site.module, qkv, output)

    def logits(self, inputs: Inputs) -> Tensor:
        return self.model(**inputs).logits

    def pooled_row(self, inputs: Inputs) -> Tensor | None:
        if getattr(self.model, "pooling", "cls") == "mean":
            return None
        first = inputs[self.input_key]
        return torch.zeros(first.shape[0], dtype=torch.long, device=first.device)


class TextEncoderAdapter(_RegistryEncoder):
    family = "bert"
    model_classes = (
        "BertForSequenceClassification", "RobertaForSequenceClassification", "DistilBertForSequenceClassification",
        "BertMeanPoolClassifier",
    )  # fmt: skip
    stream, input_key = "text", "input_ids"

    @property
    def max_text_tokens(self) -> int | None:
        config = self.model.config
        if config.model_type == "roberta":  # positions start after the padding index
            return config.max_position_embeddings - config.pad_token_id - 1
        return config.max_position_embeddings


class ViTAdapter(_RegistryEncoder):
    family = "vit"
    model_classes = ("ViTForImageClassification",)
    pooled_stream = "image"
    image_key = "pixel_values"
    stream, input_key = "image", "pixel_values"

    @property
    def patches_per_side(self) -> int:
        return self.model.config.image_size // self.model.config.patch_size

    def streams(self, inputs: Inputs) -> dict[str, Stream]:
        """One stream: [CLS] and every patch, none of them padding."""
        batch = inputs["pixel_values"].shape[0]
        tokens = 1 + self.patches_per_side**2
        mask = torch.ones(batch, tokens, dtype=torch.bool, device=inputs["pixel_values"].device)
        return {"image": Stream(mask, mask.sum(-1).to(torch.float32))}
