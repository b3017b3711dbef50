"""VisualBERT (HF ``VisualBertForQuestionAnswering``): one stream, ``text ⊕ boxes``.

Sites: ``enc.{i}.self``, the self-attention of each layer over the joint sequence
(question tokens, then every visual slot, padded slots kept and masked).

The classifier reads the hidden state at ``sum(text_mask) − 2`` — the token before
the final [SEP] (the "?"), not [CLS] — as MMF's and HF's VQA heads both do.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..sites import Site, site_name
from .base import Adapter, Inputs


class VisualBertAdapter(Adapter):
    family = "visual_bert"
    model_classes = ("VisualBertForQuestionAnswering", "MMFVisualBertForQuestionAnswering")
    count_rule = "prune_floor"
    pooled_stream = "joint"
    image_key = "visual_embeds"
    image_mask_key = "visual_attention_mask"

    @classmethod
    def build_sites(cls, config) -> list[Site]:
        return [
            Site(
                site_name("enc", i, "self"),
                f"visual_bert.encoder.layer.{i}.attention.self.dropout",
                0,
                "joint",
                "joint",
                config.num_attention_heads,
            )
            for i in range(config.num_hidden_layers)
        ]

    def logits(self, inputs: Inputs) -> Tensor:
        return self.model(**inputs).logits

    def pooled_row(self, inputs: Inputs) -> Tensor:
        return inputs[self.text_mask_key].sum(-1).long() - 2

    @property
    def feature_dim(self) -> int:
        return self.model.config.visual_embedding_dim

    def vqa_inputs(self, input_ids, attention_mask, features, boxes, box_mask=None) -> dict[str, Tensor]:
        # HF's VisualBERT takes no box coordinates; MMF's VQA model did not use them either.
        slots = features.shape[:2]
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": torch.zeros_like(input_ids),
            "visual_embeds": features,
            "visual_attention_mask": (
                torch.ones(slots, dtype=torch.long, device=features.device) if box_mask is None else box_mask
            ),
            # MMF's VisualBERT uses visual token type 0 (HF defaults to 1), SPEC §9.
            "visual_token_type_ids": torch.zeros(slots, dtype=torch.long, device=features.device),
        }

    default_layers = {"layers": 4}
    tiny_layers = {"layers": 3}

    @classmethod
    def _family_config(cls, common: dict, layers: dict, feature_dim: int, n_answers: int):
        from transformers import VisualBertConfig

        return VisualBertConfig(
            **common, num_hidden_layers=layers["layers"], visual_embedding_dim=feature_dim, num_labels=n_answers
        )
