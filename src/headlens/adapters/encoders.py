"""Encoders written for transformers 5's attention-function registry: the BERT family (BERT,
RoBERTa, DistilBERT, MiniLM-style BERT and headlens' mean-pooling probe) for text
classification, and ViT for images.

Their attention modules hand the maps to a registered attention function (sites ``via =
"attention_function"``: see :mod:`headlens.edits.attention_function`); the sites are those
modules in model order, one self-attention per layer, named ``enc.{i}.self``
(docs/method.md#sites-of-bert-family-encoders-and-vit). The classifier reads [CLS] (position
0) — or, for a model whose ``pooling`` is ``"mean"``, the mean of the real tokens.
"""

from __future__ import annotations

from .family import ByClass, Family, Field, Layout

#: attention modules (class names) → their query/key/value projections and the output projection.
_BERT = Layout(".", ("query", "key", "value"), "../output.dense")


def _roberta_offset(config) -> int:
    """RoBERTa's positions start after the padding index."""
    return config.pad_token_id + 1 if config.model_type == "roberta" else 0


TEXT_ENCODERS = Family(
    name="bert",
    model_classes=(
        "BertForSequenceClassification", "RobertaForSequenceClassification", "DistilBertForSequenceClassification",
        "BertMeanPoolClassifier",
    ),
    sites=ByClass({
        "BertSelfAttention": _BERT, "RobertaSelfAttention": _BERT,
        "DistilBertSelfAttention": Layout(".", ("q_lin", "k_lin", "v_lin"), "out_lin"),
    }),
    inputs={"input_ids": Field("input_ids"), "attention_mask": Field("attention_mask")},
    position_offset=_roberta_offset,
)  # fmt: skip


def _vit_tokens(config) -> int:
    return 1 + (config.image_size // config.patch_size) ** 2  # [CLS] and every patch


VIT = Family(
    name="vit",
    model_classes=("ViTForImageClassification",),
    sites=ByClass({"ViTAttention": Layout(".", ("q_proj", "k_proj", "v_proj"), "o_proj")}, stream="image"),
    inputs={"pixel_values": Field("pixels")},
    pooled_stream="image",
    text_mask=None,
    image="pixel_values",
    image_tokens=_vit_tokens,
    max_positions=None,
)  # fmt: skip
