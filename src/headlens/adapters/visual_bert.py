"""VisualBERT (HF ``VisualBertForQuestionAnswering``): one stream, ``text ⊕ boxes``.

Sites: ``enc.{i}.self``, the self-attention of each layer over the joint sequence
(question tokens, then every visual slot, padded slots kept and masked).

The classifier reads the hidden state at ``sum(text_mask) − 2`` — the token before
the final [SEP] (the "?"), not [CLS] — as MMF's and HF's VQA heads both do.
"""

from __future__ import annotations

import torch
from torch import Generator, Tensor

from ..sites import Site, site_name
from .base import Adapter, Inputs, random_question


class VisualBertAdapter(Adapter):
    family = "visual_bert"
    model_classes = ("VisualBertForQuestionAnswering",)
    count_rule = "prune_floor"
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

    # --- tiny random models for tests and smoke runs ------------------------------
    @staticmethod
    def tiny_config(**overrides):
        from transformers import VisualBertConfig

        params = dict(
            vocab_size=40, hidden_size=16, num_attention_heads=4, intermediate_size=32,
            num_hidden_layers=3, visual_embedding_dim=12, num_labels=7, max_position_embeddings=32,
            initializer_range=0.2,  # HF's 0.02 gives near-uniform attention: pruning would change nothing
        )  # fmt: skip
        params.update(overrides)
        return VisualBertConfig(**params)

    @staticmethod
    def random_example(config, generator: Generator, max_len: int = 8, boxes: int = 5) -> dict:
        """One random question and boxes, unbatched; half the examples get a padded last box slot."""
        ids = random_question(config.vocab_size, max_len, generator)
        visual_mask = torch.ones(boxes, dtype=torch.long)
        if torch.rand(1, generator=generator).item() < 0.5:
            visual_mask[-1] = 0
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "token_type_ids": torch.zeros_like(ids),
            "visual_embeds": torch.randn(boxes, config.visual_embedding_dim, generator=generator),
            "visual_attention_mask": visual_mask,
            # MMF's VisualBERT uses visual token type 0 (HF defaults to 1), SPEC §9.
            "visual_token_type_ids": torch.zeros(boxes, dtype=torch.long),
        }
