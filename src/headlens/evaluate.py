"""Evaluating a model on batches: its answers, and data labelled by them.

The batched masked forward that sweeps and explanations share lives here too (see
:func:`masked_predictions` once moved); this module only looks down, at adapters, model
edits and data.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .adapters import Adapter
from .data.batch import Batch


class LabelledByModel:
    """``examples`` whose labels are the model's own unpruned answers (score 1), so that accuracy
    measures agreement with the unpruned model — for random models on random inputs (smoke runs,
    tests), whose answers are unrelated to any real label."""

    def __init__(self, examples, adapter: Adapter):
        self.examples, self.adapter = adapter.examples(examples), adapter

    def __len__(self) -> int:
        return len(self.examples)

    def collate(self, indices: Sequence[int]) -> Batch:
        batch = self.examples.collate(indices)
        model = self.adapter.model
        training = [m for m in model.modules() if m.training]
        model.eval()
        try:
            with torch.no_grad():
                answers = self.adapter.predict(self.adapter.logits(batch.inputs)).cpu()
        finally:
            for m in training:
                m.training = True
        batch.labels = torch.nn.functional.one_hot(answers, self.adapter.num_answers).float()
        return batch
