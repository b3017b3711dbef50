"""Head-scoring methods: each ``score(capture, **options) -> Tensor[batch, sites, heads]``.

Higher = more important, for every method. Methods are registered in the one
literal dict :data:`METHODS`; an unknown name raises and lists the valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from torch import Tensor

from ..edits import Capture
from . import entropy, grad, lrp, random, taylor


@dataclass(frozen=True)
class Method:
    """A scoring method: its function and what its capture must hold."""

    name: str
    fn: Callable[..., Tensor]
    needs: frozenset[str]  # of "grad" (∂z/∂A), "relevance" (LRP R^A, Chefer rules), "relevance:<rules>"
    summary: str
    seeded: bool = False  # takes a ``seed`` keyword


GRAD, RELEVANCE, ATTNLRP = frozenset({"grad"}), frozenset({"relevance"}), frozenset({"relevance:attnlrp"})

METHODS: dict[str, Method] = {
    "grad": Method("grad", grad.score, GRAD, "gradient × attention, signed mean per head (the paper's 'ours')"),
    "lrp": Method("lrp", lrp.score, RELEVANCE, "LRP relevance at the attention map, signed mean (Chefer et al. 2021)"),
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
    method = METHODS.get(ALIASES.get(name, name))
    if method is None:
        valid = ", ".join(list(METHODS) + [f"{a} (= {m})" for a, m in ALIASES.items()])
        raise KeyError(f"unknown scoring method {name!r}; valid: {valid}")
    return method


def capture_needs(methods, extra=()) -> dict:
    """The :func:`headlens.edits.capture` keywords that serve every method named, and the
    ``extra`` needs (e.g. a relevance map's): ``grad``, ``relevance`` and ``lrp_rules``, the
    LRP rule sets whose relevance is wanted ("relevance" is the default rules', "relevance:X"
    rule set X's)."""
    from ..edits.lrp import RULES

    needs = frozenset(extra).union(*(get_method(m).needs for m in methods))
    wanted = {need.partition(":")[2] or RULES[0] for need in needs if need.partition(":")[0] == "relevance"}
    rules = tuple(r for r in RULES if r in wanted)
    return {"grad": "grad" in needs, "relevance": bool(rules), "lrp_rules": rules or RULES[:1]}


def score_capture(capture: Capture, method: str, seed: int = 0, **options) -> Tensor:
    """Head scores ``[batch, sites, heads]`` of ``method`` from a capture; ``seed`` reaches
    only the seeded methods, ``options`` go to the method."""
    spec = get_method(method)
    return spec.fn(capture, seed=seed, **options) if spec.seeded else spec.fn(capture, **options)


def layer_scores(head_scores: Tensor) -> Tensor:
    """Site ("layer") scores ``[batch, sites]``: head scores averaged over heads (SPEC §3)."""
    return head_scores.mean(-1)


__all__ = ["ALIASES", "METHODS", "Method", "capture_needs", "get_method", "layer_scores", "score_capture"]
