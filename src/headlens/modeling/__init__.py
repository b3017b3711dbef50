"""Model classes headlens defines itself, as plain HF-style modules (no headlens logic):
MMF's VQA head on HF's VisualBERT encoder, and a linear probe on a mean-pooled BERT."""

from .mmf_visual_bert import MMFVisualBertForQuestionAnswering
from .probe import BertMeanPoolClassifier

#: by the architecture name saved in config.json.
OWN_CLASSES = {cls.__name__: cls for cls in (MMFVisualBertForQuestionAnswering, BertMeanPoolClassifier)}

__all__ = ["OWN_CLASSES", "BertMeanPoolClassifier", "MMFVisualBertForQuestionAnswering"]
