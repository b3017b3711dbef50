"""Partial results of a long run, so that an interrupted run resumes where it stopped — and
only when every input that decides the numbers is unchanged.

A sweep writes, every so many examples, what it has computed (per-example soft scores,
which batches are done, the example ids, the global protocol's mean scores) to one
``.npz`` per process, whole or not at all. Two things tie it to its inputs:

* a *key*: a hash of the run's settings and of the model — its class, its config and
  every parameter and buffer, byte for byte (:func:`fingerprint`);
* a *digest of what was read*: per batch, of the batch's inputs, labels and ids as
  collated (:func:`batch_digest`), and one for the global protocol's scoring split. The
  data files, the tokenizer and the answer list all reach the numbers only through these
  batches, so re-reading a done batch and comparing its digest tells whether any of them
  changed — in content, not in size or modification time.

Rerunning the same command loads the file and, when the key matches and the data reads
the same, computes only the missing batches; otherwise it says why in one line and starts
afresh.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import parallel
from .data.batch import batch_count, batch_positions
from .errors import notice
from .files import atomic_write


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """The raw bytes of a tensor (any dtype, bfloat16 included), with its dtype and shape."""
    flat = tensor.detach().reshape(-1).contiguous().cpu()
    header = f"{flat.dtype}|{tuple(tensor.shape)}|".encode()
    return header + flat.view(torch.uint8).numpy().tobytes()


def model_digest(model: torch.nn.Module) -> str:
    """A hash of the model's class, config and every parameter and buffer, byte for byte."""
    digest = hashlib.sha256(type(model).__name__.encode())
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        settings = {k: v for k, v in config.to_dict().items() if k not in ("_attn_implementation_autoset",)}
        digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict(keep_vars=False).items():
        digest.update(name.encode() + b"\0")
        digest.update(tensor_bytes(tensor))
    return digest.hexdigest()


def fingerprint(settings: dict, model: torch.nn.Module) -> str:
    """The key of a run's partial results: its settings and its model (see the module docstring)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(model_digest(model).encode())
    return digest.hexdigest()[:24]


def batch_digest(batch) -> str:
    """A hash of what a batch holds: ids, labels and every input tensor."""
    digest = hashlib.sha256(json.dumps([str(i) for i in batch.ids]).encode())
    digest.update(tensor_bytes(batch.labels))
    for key in sorted(batch.inputs):
        digest.update(key.encode() + b"\0")
        digest.update(tensor_bytes(batch.inputs[key]))
    return digest.hexdigest()


def combine(digests: Sequence[str]) -> str:
    """One digest of several, in order."""
    return hashlib.sha256("|".join(digests).encode()).hexdigest()


class Checkpoint:
    """One process's partial results (``path``; ``<stem>.rank<r>-of-<w>.npz`` under torchrun)."""

    def __init__(self, path: str | Path, key: str, rank: int = 0, world: int = 1):
        self.path = self.rank_path(path, rank, world)
        self.key = key

    @staticmethod
    def rank_path(path: str | Path, rank: int, world: int) -> Path:
        path = Path(path)
        return path if world == 1 else path.with_name(f"{path.stem}.rank{rank}-of-{world}{path.suffix}")

    @classmethod
    def all_paths(cls, path: str | Path, world: int) -> list[Path]:
        """Every process's file of a run of ``world`` processes."""
        return [cls.rank_path(path, rank, world) for rank in range(world)]

    def load(self) -> dict | None:
        """The saved state if it belongs to this run's settings and model, else None (saying
        why when a file was there)."""
        if not self.path.is_file():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as saved:
                key = str(saved["key"])
                state = {name: saved[name] for name in saved.files if name != "key"}
        except (OSError, ValueError, KeyError) as error:
            notice(f"{self.path}: unreadable partial results ({error}); starting afresh")
            return None
        if key != self.key:
            notice(f"{self.path}: partial results of other settings or another model's weights; starting afresh")
            return None
        state["ids"] = [None if i == "" else str(i) for i in state["ids"]]
        state["digests"] = [str(d) for d in state.get("digests", np.asarray([""] * len(state["done"])))]
        state["means"] = {k[len("mean_"):]: torch.from_numpy(v) for k, v in state.items() if k.startswith("mean_")}
        if "score_ids" in state:
            state["score_ids"] = [str(i) for i in state["score_ids"]]
        state["score_digest"] = str(state["score_digest"]) if "score_digest" in state else None
        return state

    def save(self, soft: np.ndarray, done: np.ndarray, ids: list, digests: list, means: dict | None,
             score_ids: list | None, score_digest: str | None) -> None:  # fmt: skip
        arrays = {"key": np.asarray(self.key), "soft": soft, "done": done,
                  "ids": np.asarray(["" if i is None else str(i) for i in ids]),
                  "digests": np.asarray([d or "" for d in digests])}  # fmt: skip
        for name, value in (means or {}).items():
            arrays[f"mean_{name}"] = value.cpu().numpy()
        if score_ids is not None:
            arrays["score_ids"] = np.asarray([str(i) for i in score_ids])
        if score_digest is not None:
            arrays["score_digest"] = np.asarray(score_digest)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, buffer.getvalue())


def split_digest(data, batch_size: int) -> str:
    """The digest of a whole split as collated in batches (each process reads its share)."""
    count = batch_count(len(data), batch_size)
    mine = {i: batch_digest(data.collate(list(batch_positions(i, batch_size, len(data))))) for i in parallel.mine(count)}
    merged = {i: d for piece in parallel.gather(mine) for i, d in piece.items()}
    return combine([merged[i] for i in range(count)])


def resumable(state: dict | None, saved: Checkpoint | None, data, score_data, batch_size: int) -> dict | None:
    """``state`` if the data still reads as it did when it was saved, else None (saying why).

    Every batch this process finished is collated again and its digest compared; so is the
    scoring split behind saved global means. The processes of a torchrun group agree: one
    mismatch anywhere makes all of them start afresh."""
    reason = None
    if state is not None:
        for index in np.flatnonzero(state["done"]):
            batch = data.collate(list(batch_positions(int(index), batch_size, len(data))))
            if batch_digest(batch) != state["digests"][index]:
                reason = f"the data read for batch {int(index)} (examples {batch.ids[0]}…) changed"
                break
        if reason is None and state.get("means"):
            if score_data is None or split_digest(score_data, batch_size) != state.get("score_digest"):
                reason = "the global protocol's scoring split changed"
    fresh = state is None or reason is not None
    if any(parallel.gather(fresh)):
        if reason:
            notice(f"{saved.path}: the inputs changed since these partial results were saved ({reason}); "
                   "starting afresh")  # fmt: skip
        return None
    done = int(state["done"].sum())
    notice(f"{saved.path}: resuming: {done} of {len(state['done'])} batches already done, inputs unchanged")
    return state
