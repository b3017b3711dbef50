"""Random VQA-style examples for a tiny random model: for tests and smoke runs.

Every example is generated from ``(seed, index)`` alone, so it is the same in
whatever batch it is collated.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .batch import Batch, pad_collate


class SyntheticVQA:
    """``size`` random questions with random boxes, for a model of the given sizes.

    Args:
        size: number of examples.
        vocab_size, feature_dim, n_answers: the model's token vocabulary, visual feature size
            and answer count.
        seed: generator seed.
        max_len: longest question, in tokens (lengths vary from 3 up to it).
        boxes: visual slots per example; in half the examples the last slot is padding.

    Labels are random: a best answer (score 1) and a partly right one (0.3). A random model's
    answers are unrelated to any label; :func:`headlens.evaluate.labelled_by_model` relabels
    examples with the unpruned model's own answers, so that accuracy measures agreement.
    """

    def __init__(self, size: int, *, vocab_size: int, feature_dim: int, n_answers: int, seed: int = 0, max_len: int = 8,
                 boxes: int = 5):  # fmt: skip
        self.size, self.seed, self.max_len, self.boxes = size, seed, max_len, boxes
        self.vocab_size, self.feature_dim, self.n_answers = vocab_size, feature_dim, n_answers

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
            "features": torch.randn(self.boxes, self.feature_dim, generator=generator),
            "boxes": corners.reshape(self.boxes, 4),  # x1, y1, x2, y2
            "box_mask": box_mask,
            "label": label,
        }

    def collate(self, indices: Sequence[int]) -> Batch:
        if any(not 0 <= i < self.size for i in indices):
            raise IndexError(f"example index out of range 0…{self.size - 1}")
        fields = pad_collate([self.example(i) for i in indices])
        labels = fields.pop("label")
        return Batch(fields, labels, [f"synthetic-{self.seed}-{i}" for i in indices])
