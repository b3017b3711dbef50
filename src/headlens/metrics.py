"""Soft scores of predicted answers, accuracy per level, and the area under a pruning curve
(docs/method.md#metric-and-auc)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import Tensor


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
