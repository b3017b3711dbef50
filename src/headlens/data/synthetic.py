"""Random VQA-style examples for a tiny random model: for tests and smoke runs.

Every example is generated from ``(seed, index)`` alone, so it is the same in
whatever batch it is collated.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..adapters import Adapter
from .batch import Batch, pad_collate


class SyntheticVQA:
    """``size`` random questions with random boxes.

    Args:
        adapter: the model's adapter (says which inputs the model takes).
        size: number of examples.
        seed: generator seed.
        max_len: longest question, in tokens (lengths vary from 3 up to it).
        boxes: visual slots per example.
        labels: ``"random"`` — a random best answer (score 1) and a partly right one
            (0.3); ``"model"`` — the unpruned model's own answer scores 1, so accuracy
            measures agreement with the unpruned model (a random model's answers are
            otherwise unrelated to any label).
    """

    def __init__(
        self, adapter: Adapter, size: int, seed: int = 0, max_len: int = 8, boxes: int = 5, labels: str = "random"
    ):
        if labels not in ("random", "model"):
            raise ValueError(f"labels must be 'random' or 'model', got {labels!r}")
        self.adapter, self.size, self.seed, self.labels = adapter, size, seed, labels
        self.max_len, self.boxes = max_len, boxes
        config = adapter.model.config
        self.n_answers = getattr(config, "num_qa_labels", None) or config.num_labels

    def __len__(self) -> int:
        return self.size

    def example(self, index: int) -> tuple[dict, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        inputs = self.adapter.random_example(self.adapter.model.config, generator, self.max_len, self.boxes)
        label = torch.zeros(self.n_answers)
        answers = torch.randperm(self.n_answers, generator=generator)[:2]
        label[answers[0]], label[answers[1]] = 1.0, 0.3
        return inputs, label

    def collate(self, indices: Sequence[int]) -> Batch:
        if any(not 0 <= i < self.size for i in indices):
            raise IndexError(f"example index out of range 0…{self.size - 1}")
        inputs, labels = zip(*(self.example(i) for i in indices))
        dtype = self.adapter.dtype  # features in the model's precision
        inputs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in pad_collate(inputs).items()}
        batch = Batch(inputs, torch.stack(labels), [f"synthetic-{self.seed}-{i}" for i in indices])
        if self.labels == "model":
            batch.labels = self._model_answers(batch)
        return batch

    def _model_answers(self, batch: Batch) -> torch.Tensor:
        model = self.adapter.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                answers = self.adapter.logits(batch.to(self.adapter.device).inputs).argmax(-1).cpu()
        finally:
            model.train(was_training)
        return torch.nn.functional.one_hot(answers, self.n_answers).float()
