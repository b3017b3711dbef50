"""MMF's VQA VisualBERT head on HF's VisualBERT encoder.

MMF's ``visual_bert.finetuned.vqa2.from_coco_train`` reads the hidden state of the
token before the final [SEP] (index ``sum(text_mask) − 2``) and classifies it with
``dense(768→768) → GELU → LayerNorm → Linear(768→3129)`` (keys ``classifier.0.dense``,
``classifier.0.LayerNorm``, ``classifier.1``). HF's ``VisualBertForQuestionAnswering``
has a single Linear there and cannot hold those weights, so this class keeps HF's
encoder and adds MMF's head — a head, not a copy of the model.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import VisualBertConfig, VisualBertModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.visual_bert.modeling_visual_bert import (
    VisualBertPredictionHeadTransform,
    VisualBertPreTrainedModel,
)


class MMFVisualBertForQuestionAnswering(VisualBertPreTrainedModel):
    config_class = VisualBertConfig

    def __init__(self, config: VisualBertConfig):
        super().__init__(config)
        self.visual_bert = VisualBertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Sequential(
            VisualBertPredictionHeadTransform(config), nn.Linear(config.hidden_size, config.num_labels)
        )
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        visual_embeds=None,
        visual_attention_mask=None,
        visual_token_type_ids=None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            raise ValueError("MMF's VisualBERT pools at sum(attention_mask) - 2: pass the text attention_mask")
        outputs = self.visual_bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            visual_embeds=visual_embeds,
            visual_attention_mask=visual_attention_mask,
            visual_token_type_ids=visual_token_type_ids,
        )
        rows = torch.arange(attention_mask.shape[0], device=attention_mask.device)
        pooled = outputs.last_hidden_state[rows, attention_mask.sum(1).long() - 2]
        return SequenceClassifierOutput(logits=self.classifier(self.dropout(pooled)))
