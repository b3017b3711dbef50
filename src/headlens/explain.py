"""Relevance maps after pruning (docs/method.md#pictures-after-pruning): score heads, prune the least important, explain.

For a batch: one capture of the unpruned model gives the head scores (``grad``)
and the gradients; for each level ``p`` the ``p`` least important heads of each
example are masked *inside the head averages only* (gradients stay those of the
unpruned pass), and the printed answer is the pruned model's (a gated forward).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .adapters import Adapter, adapter_for
from .data.batch import Batch
from .edits import capture, eval_mode
from .masks import head_masks
from .relevance import map_needs, relevance_from_capture
from .scoring import capture_needs, score_capture
from .evaluate import masked_predictions

#: the levels the original drew.
PICTURE_LEVELS = (0.0, 0.4, 0.6, 0.9)


@dataclass
class Explained:
    """Relevance of a batch at several pruning levels.

    ``text`` ``[batch, levels, T]`` and ``image`` ``[batch, levels, V]`` per map method (None
    for a stream the model does not have);
    ``predictions`` ``long[batch, levels]`` are the pruned model's answers (None when not asked for);
    ``head_scores`` ``[batch, sites, heads]`` the ranking scores (by ``score_method``, pruned
    ``order``-first); ``keep`` the masks used.
    """

    levels: list[float]
    text: dict[str, Tensor | None]
    image: dict[str, Tensor | None]
    text_mask: Tensor | None
    image_mask: Tensor | None
    predictions: Tensor | None
    head_scores: Tensor
    keep: Tensor
    score_method: str = "grad"
    order: str = "negative"


def explain(
    model: nn.Module | Adapter,
    batch: Batch,
    levels: Sequence[float] = PICTURE_LEVELS,
    map_methods: Sequence[str] = ("ours",),
    score_method: str = "grad",
    order: str = "negative",
    eval_batch_size: int = 256,
    predict: bool = True,
) -> Explained:
    """Maps of every method in ``map_methods`` at every level, pruning ``order``-first by
    ``score_method``; with ``predict``, also the pruned model's answers (a gated forward pass
    per level)."""
    adapter = adapter_for(model)
    levels = [float(level) for level in levels]
    needs = capture_needs([score_method], map_needs(map_methods))
    with eval_mode(adapter.model):
        cap = capture(adapter, batch.inputs, ids=batch.ids, **needs)
        scores = score_capture(cap, score_method, adapter=adapter, inputs=batch.inputs, rows=eval_batch_size)
        keep = head_masks(scores, levels, order, "head", adapter.count_rule)  # [B, L, S, H]
        predictions = None
        if predict:
            predictions = masked_predictions(adapter, batch.inputs, keep, cap.target, eval_batch_size)
        text, image = {}, {}
        for method in map_methods:
            maps = [relevance_from_capture(adapter, cap, batch.inputs, method, keep[:, i]) for i in range(len(levels))]
            text[method] = None if maps[0].text is None else torch.stack([m.text for m in maps], 1)
            image[method] = None if maps[0].image is None else torch.stack([m.image for m in maps], 1)
    return Explained(levels, text, image, maps[0].text_mask, maps[0].image_mask, predictions, scores, keep, score_method, order)


def pointing_game(box_scores: Tensor, on_target: Tensor, valid: Tensor | None = None) -> tuple[float, float]:
    """How often the top-scoring box overlaps the target (%), and the share of the (positive)
    relevance that falls on target boxes (%), over examples ``[N, V]``. An example whose
    boxes all score the same points nowhere: a miss, with share 0."""
    scores = box_scores.double()
    valid = torch.ones_like(on_target) if valid is None else valid
    highest = scores.masked_fill(~valid, float("-inf")).max(-1)
    lowest = scores.masked_fill(~valid, float("inf")).min(-1).values
    hits = on_target.gather(1, highest.indices[:, None])[:, 0] & (highest.values > lowest)
    positive = scores.clamp(min=0) * valid
    total = positive.sum(-1)
    share = torch.where(total > 0, (positive * on_target).sum(-1) / total.clamp_min(1e-300), torch.zeros_like(total))
    return 100.0 * hits.double().mean().item(), 100.0 * share.mean().item()


def answers_text(predictions: Tensor, answers: Sequence[str]) -> np.ndarray:
    return np.asarray(answers, dtype=object)[predictions.cpu().numpy()]
