"""VisualBERT (HF ``VisualBertForQuestionAnswering``, and MMF's VQA head on HF's encoder):
one stream, ``text ⊕ boxes``.

Sites: ``enc.{i}.self``, the self-attention of each layer over the joint sequence (question
tokens, then every visual slot, padded slots kept and masked; docs/method.md#sites-of-visualbert).

The classifier reads the hidden state at ``sum(text_mask) − 2`` — the token before the final
[SEP] (the "?"), not [CLS] — as MMF's and HF's VQA heads both do. HF's VisualBERT takes no box
coordinates (MMF's VQA model did not use them either), and MMF's visual token type is 0
where HF defaults to 1.
"""

from __future__ import annotations

from .family import Family, Field, FieldOrOnes, Layout, SitePattern, Stack, Stacks, Zeros

VISUAL_BERT = Family(
    name="visual_bert",
    model_classes=("VisualBertForQuestionAnswering", "MMFVisualBertForQuestionAnswering"),
    sites=Stacks((
        Stack("num_hidden_layers", (
            SitePattern("enc.{i}.self", "visual_bert.encoder.layer.{i}.attention.self.dropout", "joint", "joint"),
        )),
    )),
    inputs={
        "input_ids": Field("input_ids"), "attention_mask": Field("attention_mask"), "token_type_ids": Zeros("input_ids"),
        "visual_embeds": Field("features"), "visual_attention_mask": FieldOrOnes("box_mask", like="features"),
        "visual_token_type_ids": Zeros("features"),
    },
    pooled_stream="joint",
    pooled_row="before_final_sep",
    image="visual_embeds",
    image_mask="visual_attention_mask",
    layout=Layout("..", ("query", "key", "value"), "../output.dense"),
    feature_dim="visual_embedding_dim",
)  # fmt: skip
