"""Evaluating a model on batches: its answers unpruned and under per-row head masks.

:func:`masked_predictions` is the batched masked forward that sweeps and explanations
share; :class:`LabelledByModel` labels data with the model's own answers.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Sequence

import torch
from torch import Tensor

from .adapters import Adapter, Inputs
from .data.batch import Batch
from .edits import eval_mode, gates

#: precisions the masked evaluation passes may run in (None: the model's).
EVAL_DTYPES = {None: None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def predictions(adapter: Adapter, inputs: Inputs) -> Tensor:
    """The unpruned model's answers ``long[batch]`` (no gradients; the model in the mode it is in)."""
    with torch.no_grad():
        return adapter.predict(adapter.logits(inputs))


def masked_predictions(
    adapter: Adapter,
    inputs: Inputs,
    masks: Tensor,
    unpruned: Tensor,
    eval_batch_size: int,
    autocast_dtype: torch.dtype | None = None,
) -> Tensor:
    """Predicted answers ``long[batch, *grid]`` of every example under every mask.

    ``masks`` is ``[batch, *grid, sites, heads]`` — any grid of masks per example
    (arms × levels in a sweep, levels in an explanation). Rows whose mask keeps every head
    take the unpruned prediction ``unpruned[batch]`` without a forward pass; an (example,
    mask) pair that occurs more than once (orders or methods agreeing, levels with equal
    counts) runs once; the rest run in chunks of ``eval_batch_size`` rows, each row the
    example's inputs under its own gates (under autocast to ``autocast_dtype`` if given).
    """

    def answers(chunk_inputs: Inputs) -> Tensor:
        return adapter.predict(adapter.logits(chunk_inputs).float())

    return masked_values(adapter, inputs, masks, unpruned, eval_batch_size, answers, autocast_dtype)


def masked_values(
    adapter: Adapter,
    inputs: Inputs,
    masks: Tensor,
    unpruned: Tensor,
    eval_batch_size: int,
    measure: Callable[[Inputs], Tensor],
    autocast_dtype: torch.dtype | None = None,
) -> Tensor:
    """``measure(inputs) -> [rows, *value]`` of every example under every mask: ``[batch, *grid,
    *value]``, computed as :func:`masked_predictions` describes (``unpruned``, ``[batch, *value]``,
    serves the rows that keep every head; each distinct (example, mask) pair runs once, in
    chunks of ``eval_batch_size`` rows under their own gates)."""
    batch, *grid = masks.shape[:-2]
    sites, heads = masks.shape[-2:]
    tail = unpruned.shape[1:]
    answers = unpruned.view(batch, *([1] * len(grid)), *tail).expand(batch, *grid, *tail).clone()
    pruned = ~(masks == 1).flatten(-2).all(-1)  # [batch, *grid]
    rows = pruned.nonzero(as_tuple=True)
    keys = torch.cat([rows[0][:, None].to(masks.dtype), masks[rows].flatten(1)], dim=1)
    distinct, inverse = torch.unique(keys, dim=0, return_inverse=True)
    examples = distinct[:, 0].long()
    distinct_masks = distinct[:, 1:].view(-1, sites, heads)
    out = torch.empty(examples.shape[0], *tail, dtype=answers.dtype, device=answers.device)
    precision = torch.autocast(answers.device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    with torch.no_grad(), precision:
        for start in range(0, examples.shape[0], eval_batch_size):
            chunk = slice(start, start + eval_batch_size)
            chunk_inputs = {key: value[examples[chunk]] for key, value in inputs.items()}
            with gates(adapter, distinct_masks[chunk]):
                out[chunk] = measure(chunk_inputs).to(answers.dtype)
    answers[rows] = out[inverse]
    return answers


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
        with eval_mode(self.adapter.model):
            answers = predictions(self.adapter, batch.inputs).cpu()
        batch.labels = torch.nn.functional.one_hot(answers, self.adapter.num_answers).float()
        return batch
