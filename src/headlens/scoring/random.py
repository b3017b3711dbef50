"""``random``: seeded random head scores, the chance baseline.

The score of head ``n`` of example ``id`` is a hash of ``(seed, id, n)`` mapped to
``[0, 1)`` — a counter-based generator, so an example gets the same scores
whatever batch it sits in and whatever order examples come in.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import Tensor

from ..edits import Capture

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser (Steele et al., 2014), elementwise on uint64 with wrap-around."""
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def stable_id(example_id) -> int:
    """A 64-bit integer for an example id (ints as themselves, anything else by its string's hash)."""
    if isinstance(example_id, (int, np.integer)) and not isinstance(example_id, bool):
        return int(example_id) % (1 << 64)
    return int.from_bytes(hashlib.blake2b(str(example_id).encode(), digest_size=8).digest(), "little")


def score(capture: Capture, seed: int = 0) -> Tensor:
    """``float[batch, sites, heads]`` uniform in ``[0, 1)``, fixed by ``(seed, example id)``."""
    sites, heads = len(capture.sites), capture.attn[0].shape[1]
    ids = np.array([stable_id(i) for i in capture.ids], dtype=np.uint64)
    streams = _splitmix64(ids ^ _splitmix64(np.uint64(stable_id(seed))))  # one stream per example
    counters = np.arange(sites * heads, dtype=np.uint64)
    bits = _splitmix64(streams[:, None] + counters[None, :])
    uniform = (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return torch.from_numpy(uniform.reshape(-1, sites, heads)).to(torch.float32).to(capture.logits.device)
