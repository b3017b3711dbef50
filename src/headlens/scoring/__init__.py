"""Head-scoring methods: each ``score(capture, **options) -> Tensor[batch, sites, heads]``.

Higher = more important, for every method. Methods are registered in the one
literal dict :data:`METHODS`; an unknown name raises and lists the valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from torch import Tensor

from ..adapters import Adapter, Inputs
from ..edits import GRADIENT, RELEVANCE, Capture, capture, capture_options
from ..errors import choose
from . import entropy, grad, lrp, random, taylor


@dataclass(frozen=True)
class Method:
    """A scoring method: its function and what its capture must hold."""

    name: str
    fn: Callable[..., Tensor]
    needs: frozenset[str]  # what its capture must hold, in :mod:`headlens.edits.capture`'s vocabulary
    summary: str
    seeded: bool = False  # takes a ``seed`` keyword


GRAD, LRP, ATTNLRP = frozenset({GRADIENT}), frozenset({RELEVANCE}), frozenset({f"{RELEVANCE}:attnlrp"})

METHODS: dict[str, Method] = {
    "grad": Method("grad", grad.score, GRAD, "gradient × attention, signed mean per head (the paper's 'ours')"),
    "lrp": Method("lrp", lrp.score, LRP, "LRP relevance at the attention map, signed mean (Chefer et al. 2021)"),
    "attnlrp": Method("attnlrp", partial(lrp.score, rules="attnlrp"), ATTNLRP,
                      "the same under the AttnLRP rules (Achtibat et al. 2024)"),
    "taylor": Method("taylor", taylor.score, GRAD, "|∂z/∂gate| at gate = 1 (Michel et al. 2019)"),
    "entropy": Method("entropy", entropy.score, frozenset(), "negative mean attention entropy"),
    "random": Method("random", random.score, frozenset(), "seeded random scores, per example", seeded=True),
}

#: names accepted for compatibility with the original's vocabulary.
ALIASES = {"ours": "grad"}


def get_method(name: str) -> Method:
    """The registered method called ``name`` (or an alias of it)."""
    valid = list(METHODS) + [f"{a} (= {m})" for a, m in ALIASES.items()]
    return METHODS[choose(ALIASES.get(name, name), METHODS, "scoring method", KeyError, listed=valid)]


def capture_needs(methods, extra=()) -> dict:
    """The :func:`headlens.edits.capture` keywords that serve every method named, and the
    ``extra`` needs (e.g. a relevance map's)."""
    return capture_options(frozenset(extra).union(*(get_method(m).needs for m in methods)))


def score_batch(adapter: Adapter, inputs: Inputs, methods, seed: int = 0, ids=None, lrp_dtype=None, target=None):
    """Capture a batch once and score it with every method: ``(capture, {method: [batch, sites, heads]})``;
    ``target`` (``long[batch]``): the answers whose logits are differentiated (None: the predicted ones)."""
    cap = capture(adapter, inputs, target=target, ids=ids, lrp_dtype=lrp_dtype, **capture_needs(methods))
    return cap, {name: score_capture(cap, name, seed) for name in methods}


def score_capture(capture: Capture, method: str, seed: int = 0, **options) -> Tensor:
    """Head scores ``[batch, sites, heads]`` of ``method`` from a capture; ``seed`` reaches
    only the seeded methods, ``options`` go to the method."""
    spec = get_method(method)
    return spec.fn(capture, seed=seed, **options) if spec.seeded else spec.fn(capture, **options)


def layer_scores(head_scores: Tensor) -> Tensor:
    """Site ("layer") scores ``[batch, sites]``: head scores averaged over heads (docs/method.md#layer-scores)."""
    return head_scores.mean(-1)


__all__ = ["ALIASES", "METHODS", "Method", "capture_needs", "get_method", "layer_scores", "score_batch", "score_capture"]
