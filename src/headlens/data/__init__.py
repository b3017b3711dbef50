"""Datasets. Each yields the one batch type, :class:`headlens.data.batch.Batch`."""

from .batch import Batch, Examples, Subset, iterate, pad_collate, sample

__all__ = ["Batch", "Examples", "Subset", "iterate", "pad_collate", "sample"]
