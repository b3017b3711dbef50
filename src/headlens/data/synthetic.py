"""Random VQA-style examples for a tiny random model: for tests and smoke runs.

Every example is generated from ``(seed, index)`` alone, so it is the same in
whatever batch it is collated.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..adapters import Adapter
from ..hooks import eval_mode
from .batch import Batch, pad_collate


class SyntheticVQA:
    """``size`` random questions with random boxes.

    Args:
        adapter: the model's adapter (says which inputs the model takes).
        size: number of examples.
        seed: generator seed.
        max_len: longest question, in tokens (lengths vary from 3 up to it).
        boxes: visual slots per example; in half the examples the last slot is padding.
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
        self.vocab_size = adapter.model.config.vocab_size
        self.n_answers = adapter.num_answers

    def __len__(self) -> int:
        return self.size

    def example(self, index: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        length = int(torch.randint(3, self.max_len + 1, (1,), generator=generator))
        corners = torch.rand(self.boxes, 2, 2, generator=generator).sort(dim=1).values  # [box, (min, max), (x, y)]
        box_mask = torch.ones(self.boxes, dtype=torch.long)
        if torch.rand(1, generator=generator).item() < 0.5:
            box_mask[-1] = 0
        label = torch.zeros(self.n_answers)
        answers = torch.randperm(self.n_answers, generator=generator)[:2]
        label[answers[0]], label[answers[1]] = 1.0, 0.3
        return {
            "input_ids": torch.randint(1, self.vocab_size, (length,), generator=generator),
            "attention_mask": torch.ones(length, dtype=torch.long),
            "features": torch.randn(self.boxes, self.adapter.feature_dim, generator=generator),
            "boxes": corners.reshape(self.boxes, 4),  # x1, y1, x2, y2
            "box_mask": box_mask,
            "label": label,
        }

    def collate(self, indices: Sequence[int]) -> Batch:
        if any(not 0 <= i < self.size for i in indices):
            raise IndexError(f"example index out of range 0…{self.size - 1}")
        parts = pad_collate([self.example(i) for i in indices])
        labels = parts.pop("label")
        parts["features"] = parts["features"].to(self.adapter.dtype)  # the model's precision
        parts["boxes"] = parts["boxes"].to(self.adapter.dtype)
        batch = Batch(self.adapter.vqa_inputs(**parts), labels, [f"synthetic-{self.seed}-{i}" for i in indices])
        if self.labels == "model":
            batch.labels = self._model_answers(batch)
        return batch

    def _model_answers(self, batch: Batch) -> torch.Tensor:
        with eval_mode(self.adapter.model), torch.no_grad():
            answers = self.adapter.logits(batch.to(self.adapter.device).inputs).argmax(-1).cpu()
        return torch.nn.functional.one_hot(answers, self.n_answers).float()
