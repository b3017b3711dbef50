"""Head-scoring methods: each ``score(capture, **options) -> Tensor[batch, sites, heads]``.

Higher = more important, for every method. Methods are registered in the one
literal dict :data:`METHODS`; an unknown name raises and lists the valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from ..hooks import Capture
from . import entropy, grad, lrp, random, taylor


@dataclass(frozen=True)
class Method:
    """A scoring method: its function and what its capture must hold."""

    name: str
    fn: Callable[..., Tensor]
    needs: frozenset[str]  # of "grad" (∂z/∂A) and "relevance" (LRP R^A)
    summary: str
    seeded: bool = False  # takes a ``seed`` keyword


GRAD, RELEVANCE = frozenset({"grad"}), frozenset({"relevance"})

METHODS: dict[str, Method] = {
    "grad": Method("grad", grad.score, GRAD, "gradient × attention, signed mean per head (the paper's 'ours')"),
    "lrp": Method("lrp", lrp.score, RELEVANCE, "LRP relevance at the attention map, signed mean (Chefer et al. 2021)"),
    "taylor": Method("taylor", taylor.score, GRAD, "|∂z/∂gate| at gate = 1 (Michel et al. 2019)"),
    "entropy": Method("entropy", entropy.score, frozenset(), "negative mean attention entropy"),
    "random": Method("random", random.score, frozenset(), "seeded random scores, per example", seeded=True),
}

#: names accepted for compatibility with the original's vocabulary.
ALIASES = {"ours": "grad"}


def get_method(name: str) -> Method:
    """The registered method called ``name`` (or an alias of it)."""
    method = METHODS.get(ALIASES.get(name, name))
    if method is None:
        valid = ", ".join(list(METHODS) + [f"{a} (= {m})" for a, m in ALIASES.items()])
        raise KeyError(f"unknown scoring method {name!r}; valid: {valid}")
    return method


def capture_needs(methods) -> dict[str, bool]:
    """The :func:`headlens.hooks.capture` flags that serve every method named."""
    needs = frozenset().union(*(get_method(m).needs for m in methods))
    return {"grad": "grad" in needs, "relevance": "relevance" in needs}


def score_capture(capture: Capture, method: str, seed: int = 0, **options) -> Tensor:
    """Head scores ``[batch, sites, heads]`` of ``method`` from a capture; ``seed`` reaches
    only the seeded methods, ``options`` go to the method."""
    spec = get_method(method)
    return spec.fn(capture, seed=seed, **options) if spec.seeded else spec.fn(capture, **options)


def layer_scores(head_scores: Tensor) -> Tensor:
    """Site ("layer") scores ``[batch, sites]``: head scores averaged over heads (SPEC §3)."""
    return head_scores.mean(-1)


__all__ = ["ALIASES", "METHODS", "Method", "capture_needs", "get_method", "layer_scores", "score_capture"]
