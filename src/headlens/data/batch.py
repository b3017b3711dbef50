"""The one batch type every dataset produces, and helpers to sample and iterate."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Mapping, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor


@dataclass
class Batch:
    """A batch of labelled examples.

    Attributes:
        fields: what the dataset read, under model-independent names (``input_ids``,
            ``attention_mask``, ``features``, ``boxes``, ``box_mask``, ``pixels``), every tensor
            with the batch first.
        labels: ``float[batch, n_answers]``, the soft score (0…1) of every answer.
        ids: one id per example (question ids), recorded in result files.
        extras: anything a dataset wants to carry along (image names, questions…).
        inputs: the model's forward kwargs made from ``fields`` by a model's adapter
            (:meth:`headlens.adapters.Adapter.examples`); None until then.
    """

    fields: dict[str, Tensor]
    labels: Tensor
    ids: list
    extras: dict = field(default_factory=dict)
    inputs: dict[str, Tensor] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str) -> "Batch":
        inputs = None if self.inputs is None else {key: value.to(device) for key, value in self.inputs.items()}
        return Batch(self.fields, self.labels.to(device), self.ids, self.extras, inputs)


class Examples(Protocol):
    """A dataset: indexable examples that collate into a :class:`Batch`."""

    def __len__(self) -> int: ...

    def collate(self, indices: Sequence[int]) -> Batch: ...


class Subset:
    """The examples of ``base`` at ``indices``, in that order."""

    def __init__(self, base: Examples, indices: Sequence[int]):
        self.base = base
        self.indices = [int(i) for i in indices]

    def describe(self, index: int, *args, **kwargs):
        """The base's picture material of this subset's example ``index`` (see the datasets' ``describe``)."""
        return self.base.describe(self.indices[index], *args, **kwargs)

    def __len__(self) -> int:
        return len(self.indices)

    def collate(self, indices: Sequence[int]) -> Batch:
        return self.base.collate([self.indices[i] for i in indices])


def sample(examples: Examples, n: int | None, seed: int) -> Subset:
    """The first ``n`` examples of a seeded random permutation (all of them if ``n`` is None)."""
    order = np.random.default_rng(seed).permutation(len(examples))
    return Subset(examples, order if n is None else order[: min(n, len(examples))])


def batch_count(total: int, batch_size: int) -> int:
    """How many batches of ``batch_size`` hold ``total`` examples."""
    return -(-total // batch_size)


def batch_positions(index: int, batch_size: int, total: int) -> range:
    """Positions of batch ``index`` of ``total`` examples cut into batches of ``batch_size`` (the
    unit that processes share, that partial results mark done and that digests cover)."""
    return range(index * batch_size, min((index + 1) * batch_size, total))


def iterate(examples: Examples, batch_size: int) -> Iterator[tuple[range, Batch]]:
    """Yield ``(positions, batch)`` over consecutive chunks of ``examples``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    for index in range(batch_count(len(examples), batch_size)):
        positions = batch_positions(index, batch_size, len(examples))
        yield positions, examples.collate(list(positions))


def pad_collate(examples: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Stack per-example tensors, zero-padding the first dimension to the longest."""
    keys = examples[0].keys()
    out = {}
    for key in keys:
        tensors = [example[key] for example in examples]
        if tensors[0].dim() == 0:
            out[key] = torch.stack(tensors)
            continue
        length = max(t.shape[0] for t in tensors)
        padded = tensors[0].new_zeros((len(tensors), length, *tensors[0].shape[1:]))
        for row, tensor in enumerate(tensors):
            padded[row, : tensor.shape[0]] = tensor
        out[key] = padded
    return out
