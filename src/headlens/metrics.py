"""VQA soft scores, accuracy per level, and the area under a pruning curve (SPEC §5)."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
import torch
from torch import Tensor


def predict(logits: Tensor, exclude: Sequence[int] = ()) -> Tensor:
    """The predicted answers ``long[...]``: the argmax over the last axis, never one of ``exclude``
    (MMF's metric leaves ``<unk>``, answer 0, out)."""
    if len(exclude):
        index = torch.as_tensor(list(exclude), device=logits.device)
        logits = logits.index_fill(-1, index, float("-inf"))
    return logits.argmax(-1)


def soft_scores(labels: Tensor, predictions: Tensor) -> Tensor:
    """``float[...]``: the soft score (0…1) of each predicted answer.

    ``labels`` is ``[batch, n_answers]`` (the VQA soft score of every answer),
    ``predictions`` is ``long[batch, ...]`` answer indices.
    """
    flat = predictions.reshape(predictions.shape[0], -1).to(labels.device)
    return labels.gather(1, flat).reshape(predictions.shape)


def accuracy(per_example: np.ndarray | Tensor, divisor: int | None = None) -> np.ndarray:
    """Accuracy ×100 over the first axis: ``100 · Σ score / divisor`` (default: examples processed).

    The original's VisualBERT divided by the number of examples *requested*; pass it as
    ``divisor`` to reproduce that.
    """
    values = np.asarray(per_example, dtype=np.float64)
    count = values.shape[0] if divisor is None else divisor
    if count <= 0:
        raise ValueError("accuracy of zero examples")
    return 100.0 * values.sum(axis=0) / count


def auc(levels: Sequence[float], accuracy_percent: Sequence[float]) -> float:
    """Area under an accuracy-vs-fraction-pruned curve, the original authors' convention.

    ``np.trapz(accuracy / 100, x=levels) × 100``, the unpruned point at ``x = 0``
    included: with levels 0…0.9 a model that never loses accuracy scores 90·acc.
    """
    x = np.asarray(levels, dtype=np.float64)
    y = np.asarray(accuracy_percent, dtype=np.float64) / 100.0
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"levels and accuracies must be 1-D and equally long, got {x.shape} and {y.shape}")
    return float(((y[1:] + y[:-1]) * np.diff(x)).sum() / 2.0 * 100.0)


def vqa_soft_target(human_answers: Sequence[str], answer: str) -> float:
    """VQA v2 soft score of ``answer`` given the 10 human answers (MMF's rule).

    The mean, over the 10 leave-one-out subsets of 9 answers, of
    ``min(1, count(answer in subset) / 3)``.
    """
    n = len(human_answers)
    if n == 0:
        return 0.0
    hits = Counter(human_answers)[answer]
    # Leaving out one of the `hits` matching answers leaves hits-1; leaving out another leaves hits.
    subsets = hits * min(1.0, (hits - 1) / 3) + (n - hits) * min(1.0, hits / 3)
    return subsets / n


def soft_score_table(labels: Sequence[dict[int, float]], n_answers: int) -> Tensor:
    """Dense ``[batch, n_answers]`` soft scores from sparse ``{answer index: score}`` dicts."""
    table = torch.zeros(len(labels), n_answers)
    for row, label in enumerate(labels):
        for index, value in label.items():
            table[row, int(index)] = float(value)
    return table
