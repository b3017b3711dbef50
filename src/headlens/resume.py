"""Partial results of a long run, so that an interrupted run resumes where it stopped.

A sweep writes, every so many examples, what it has computed (per-example soft scores,
which batches are done, the example ids, the global protocol's mean scores) to one
``.npz`` per process, whole or not at all, with a fingerprint of everything that decides
the numbers. Rerunning the same command loads it and computes only the missing batches;
a different configuration (other fingerprint) starts afresh.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import torch

from .io import atomic_write


def fingerprint(settings: dict, model: torch.nn.Module) -> str:
    """A hash of the run's settings and a sample of the model's weights."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for _, parameter in zip(range(8), model.parameters()):
        digest.update(parameter.detach().flatten()[:512].double().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


class Checkpoint:
    """One process's partial results (``path``; ``<stem>.rank<r>-of-<w>.npz`` under torchrun)."""

    def __init__(self, path: str | Path, key: str, rank: int = 0, world: int = 1):
        path = Path(path)
        self.path = path if world == 1 else path.with_name(f"{path.stem}.rank{rank}-of-{world}{path.suffix}")
        self.key = key

    def load(self) -> dict | None:
        """The saved state if it belongs to this run, else None."""
        if not self.path.is_file():
            return None
        with np.load(self.path, allow_pickle=False) as saved:
            if str(saved["key"]) != self.key:
                return None
            state = {name: saved[name] for name in saved.files if name != "key"}
        state["ids"] = [None if i == "" else str(i) for i in state["ids"]]
        state["means"] = {k[len("mean_"):]: torch.from_numpy(v) for k, v in state.items() if k.startswith("mean_")}
        if "score_ids" in state:
            state["score_ids"] = [str(i) for i in state["score_ids"]]
        return state

    def save(self, soft: np.ndarray, done: np.ndarray, ids: list, means: dict | None, score_ids: list | None) -> None:
        arrays = {"key": np.asarray(self.key), "soft": soft, "done": done,
                  "ids": np.asarray(["" if i is None else str(i) for i in ids])}  # fmt: skip
        for name, value in (means or {}).items():
            arrays[f"mean_{name}"] = value.cpu().numpy()
        if score_ids is not None:
            arrays["score_ids"] = np.asarray([str(i) for i in score_ids])
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, buffer.getvalue())
