"""One forward and one backward of the target logit: every site's attention maps, their
gradients and their LRP relevance (TransformerLens' ``run_with_cache``, for heads;
docs/method.md#capture)."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from ..adapters import Adapter, Inputs, Stream, adapter_for
from ..sites import Site
from .intercept import intercept
from .lrp import RULES, lrp_mode, model_dtype

#: what a capture can hold beyond the maps, in the one vocabulary that scoring methods and
#: relevance-map methods declare their needs in: ∂z/∂A, and LRP's R^A under the default rules
#: (``"relevance:<rules>"`` under another rule set).
GRADIENT, RELEVANCE = "gradient", "relevance"


def capture_options(needs: Iterable[str]) -> dict:
    """The :func:`capture` keywords that fill ``needs`` (see :data:`GRADIENT`, :data:`RELEVANCE`)."""
    needs = set(needs)
    wanted = {need.partition(":")[2] or RULES[0] for need in needs if need.partition(":")[0] == RELEVANCE}
    rules = tuple(r for r in RULES if r in wanted)
    return {"grad": GRADIENT in needs, "relevance": bool(rules), "lrp_rules": rules or RULES[:1]}


@dataclass
class Capture:
    """Attention maps, their gradients and their LRP relevance at every site, for one batch.

    Attributes:
        sites: the adapter's sites; every list below follows this order.
        logits: ``[batch, n_answers]`` raw logits of the unmodified model.
        target: ``long[batch]``, the class whose logit was differentiated
            (the predicted answer unless given).
        attn: per site, ``A`` ``[batch, heads, n_query, n_key]``.
        grad: per site, ``∂z_target/∂A`` (same shape), or None if not asked for.
        relevances: per LRP rule set captured (``"chefer"``, ``"attnlrp"``: see
            :mod:`headlens.edits.lrp`), per site, the relevance ``R^A`` reaching ``A``
            (same shape; float64 when captured with ``lrp_dtype="float64"``).
        query, key: per site, the :class:`Stream` of its rows and of its columns.
        ids: example ids, one per row (used by seeded per-example methods).
        pairs: per site, ``float[batch]``, the (query, key) pairs of its map that exist: the
            per-head means' denominator (:meth:`headlens.adapters.Adapter.pair_counts`; None:
            query × key counts of the streams).
    """

    sites: tuple[Site, ...]
    logits: Tensor
    target: Tensor
    attn: list[Tensor]
    grad: list[Tensor] | None
    query: list[Stream]
    key: list[Stream]
    ids: list
    relevances: dict[str, list[Tensor]] = field(default_factory=dict)
    pairs: list[Tensor] | None = None

    @property
    def relevance(self) -> list[Tensor] | None:
        """Per site, ``R^A`` under the default (Chefer et al.) rules, or None if not captured."""
        return self.relevances.get("chefer")

    @property
    def batch_size(self) -> int:
        return self.logits.shape[0]


def capture(
    model: nn.Module | Adapter,
    inputs: Inputs,
    *,
    target: Tensor | None = None,
    grad: bool = True,
    relevance: bool = False,
    lrp_rules: str | Sequence[str] = "chefer",
    lrp_dtype: torch.dtype | str | None = None,
    ids: Sequence | None = None,
) -> Capture:
    """One forward and, if ``grad``, one backward of the target logit to the attention maps;
    if ``relevance``, one forward and one backward in LRP mode (:mod:`headlens.edits.lrp`)
    per rule set in ``lrp_rules`` (a name or several), run in ``lrp_dtype`` (None: the
    model's precision; ``"float64"`` casts op by op, without a float64 copy of the model).

    The gradient backward differentiates ``Σ_b z[b, target[b]]`` with respect to the
    attention maps only (no parameter gradients are formed or accumulated); examples do
    not interact, so each example's gradient is its own. The target defaults to the
    predicted answer of the first pass (never one the adapter excludes). The model runs in the
    mode it is in: use :func:`eval_mode` for analysis.
    """
    adapter = adapter_for(model)
    grads, relevances = None, {}
    if grad or not relevance:
        logits, attn, grads, target = _pass(adapter, inputs, target, GRADIENT if grad else None)
    if relevance:
        for rules in (lrp_rules,) if isinstance(lrp_rules, str) else tuple(dict.fromkeys(lrp_rules)):
            logits_lrp, attn_lrp, relevances[rules], target = _pass(
                adapter, inputs, target, RELEVANCE, rules, lrp_dtype
            )
            if not grad and len(relevances) == 1:
                logits, attn = logits_lrp, attn_lrp
    streams = adapter.streams(inputs)
    return Capture(
        sites=adapter.sites,
        logits=logits,
        target=target.to(logits.device),
        attn=attn,
        grad=grads,
        query=[streams[site.query] for site in adapter.sites],
        key=[streams[site.key] for site in adapter.sites],
        ids=list(range(logits.shape[0])) if ids is None else list(ids),
        relevances=relevances,
        pairs=adapter.pair_counts(inputs, streams),
    )


def _pass(
    adapter: Adapter, inputs: Inputs, target: Tensor | None, backward: str | None,
    lrp_rules: str = "chefer", lrp_dtype: torch.dtype | str | None = None,
):  # fmt: skip
    """A forward recording every site's ``A``, then the requested backward to them:
    ``"gradient"`` of the target logit, ``"relevance"`` from a one-hot at the target
    (LRP under ``lrp_rules``, in ``lrp_dtype``), or None. Returns detached ``(logits, attn,
    per-site results or None, target)``; logits and maps in the model's precision."""
    attn: list[Tensor | None] = [None] * adapter.num_sites

    def record(index: int, probs: Tensor) -> Tensor:
        if backward and not probs.requires_grad:  # nothing upstream needs grad (frozen model): make it a leaf
            probs = probs.detach().requires_grad_()
        attn[index] = probs
        return probs

    rules = nullcontext()
    if backward == RELEVANCE:
        rules = lrp_mode(adapter.model, rules=lrp_rules, dtype=lrp_dtype)
    with torch.enable_grad() if backward else torch.no_grad(), rules, intercept(adapter, record):
        logits = adapter.logits(inputs)
    missing = [site.name for site, a in zip(adapter.sites, attn) if a is None]
    if missing:
        raise RuntimeError(f"{adapter.family}: sites not reached in the forward pass: {', '.join(missing)}")
    if target is None:
        target = adapter.predict(logits.detach())
    target = target.to(logits.device)[:, None]
    found = None
    if backward == GRADIENT:
        found = torch.autograd.grad(logits.gather(1, target).sum(), attn, allow_unused=True)
    elif backward == RELEVANCE:
        one_hot = torch.zeros_like(logits).scatter_(1, target, 1.0)
        found = torch.autograd.grad(logits, attn, grad_outputs=one_hot, allow_unused=True)
    if found is not None:
        found = [torch.zeros_like(a) if f is None else f.detach() for a, f in zip(attn, found)]
    logits, attn = logits.detach(), [a.detach() for a in attn]
    if backward == RELEVANCE and lrp_dtype is not None:  # a pass in another precision: maps as the model's
        dtype = model_dtype(adapter.model) or logits.dtype
        logits, attn = logits.to(dtype), [a.to(dtype) for a in attn]
    return logits, attn, found, target[:, 0]
