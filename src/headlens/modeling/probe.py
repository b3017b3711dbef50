"""A linear probe on a frozen BERT-family encoder's mean-pooled hidden states.

The classifier sentence-embedding models such as all-MiniLM-L6-v2 are made for: the
encoder's last hidden states averaged over the real tokens, then one linear layer.
``pooling = "mean"`` tells headlens' relevance maps to read the mean of the rows.
"""

from __future__ import annotations

from torch import nn
from transformers import BertConfig, BertModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.bert.modeling_bert import BertPreTrainedModel


class BertMeanPoolClassifier(BertPreTrainedModel):
    config_class = BertConfig
    pooling = "mean"

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def embed(self, input_ids, attention_mask, token_type_ids=None):
        """Mean of the last hidden states over the real tokens, ``[batch, hidden]``."""
        hidden = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask[:, :, None].to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=self.classifier(self.embed(input_ids, attention_mask, token_type_ids)))
