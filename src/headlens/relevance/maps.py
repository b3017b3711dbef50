"""Relevancy maps: one score per question token and one per box, for the pooled token.

Methods (each reads one :class:`~headlens.edits.Capture`):

* ``ours`` — Chefer et al. (ICCV 2021): per site ``Ā = mean_h clamp_{≥0}(∇A ⊙ A)``,
  propagated with the self- and co-attention rules in the adapter's schedule (docs/method.md#lxmerts-relevance-schedule);
* ``lrp`` — the same with LRP's relevance ``R^A`` in place of ``A``: ``mean_h clamp(∇A ⊙ R^A)``;
* ``rollout`` — the same propagation with the raw head-averaged attention ``Ā = mean_h A``:
  for a single stream ``R ← (I + Ā) R`` is attention rollout (Abnar & Zuidema 2020)
  up to a factor 2 per layer, so rows rank tokens identically;
* ``raw`` — the head-averaged attention of the last site from the pooled stream to
  each stream (LXMERT: the last language self-attention and language→vision cross-attention).

Head masks (``keep``, ``[batch, sites, heads]``, 0 = pruned) zero pruned heads inside
the head average only; the mean still divides by the full head count (docs/method.md#pictures-after-pruning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from ..adapters import Adapter, Inputs, adapter_for
from ..edits import GRADIENT, RELEVANCE, Capture, capture, capture_options, eval_mode
from ..errors import choose
from .propagation import co_attention_updates, head_average, identity_like, self_attention_update


@dataclass
class Relevance:
    """Relevance of each question token and each box (or image patch) for the model's answer.

    ``text`` ``[batch, T]`` and ``image`` ``[batch, V]``; 0 at padding, which
    ``text_mask``/``image_mask`` mark False. A text-only model has no ``image`` (None);
    an image-only one no ``text``. For ViT, ``image`` is [CLS] then the patches.
    """

    text: Tensor | None
    image: Tensor | None
    text_mask: Tensor | None
    image_mask: Tensor | None


def _site_maps(cap: Capture, keep: Tensor | None, with_gradient: bool, values: str = "attn") -> list[Tensor]:
    """``Ā`` of every site, zero on padded rows and columns: a padded query's attention is not
    a token's (gradient-weighted maps are 0 there anyway; raw attention rows are not).
    ``values``: ``"attn"`` (A) or ``"relevance"`` (LRP's R^A in place of A)."""
    if with_gradient and cap.grad is None:
        raise ValueError("this relevance method needs attention gradients: capture with grad=True")
    per_site = cap.attn if values == "attn" else cap.relevance
    if per_site is None:
        raise ValueError("this relevance method needs LRP relevance: capture with relevance=True")
    maps = []
    for index, attn in enumerate(per_site):
        weights = cap.grad[index] if with_gradient else None
        cam = head_average(attn, None if keep is None else keep[:, index], weights, clamp=with_gradient)
        real = cap.query[index].mask[:, :, None] & cap.key[index].mask[:, None, :]
        maps.append(cam * real.to(cam.dtype))
    return maps


def propagate(adapter: Adapter, cap: Capture, maps: list[Tensor]) -> dict[tuple[str, str], Tensor]:
    """Run the adapter's schedule of self/co-attention updates; returns every ``R^{st}``."""
    index = {name: i for i, name in enumerate(adapter.site_names)}
    sizes: dict[str, int] = {}
    for site, attn in zip(cap.sites, cap.attn):
        sizes[site.query], sizes[site.key] = attn.shape[-2], attn.shape[-1]
    batch, like = cap.batch_size, maps[0]
    relevance = {
        (s, t): identity_like(batch, sizes[s], like) if s == t else like.new_zeros(batch, sizes[s], sizes[t])
        for s in sizes
        for t in sizes
    }
    for step in adapter.relevance_schedule():
        additions = []
        for name in step:
            site, cam = cap.sites[index[name]], maps[index[name]]
            s, q = site.query, site.key
            if s == q:
                additions += [((s, t), self_attention_update(cam, relevance[(s, t)])) for t in sizes]
            else:
                to_sq, to_ss = co_attention_updates(cam, relevance[(s, s)], relevance[(q, q)], relevance[(q, s)])
                additions += [((s, q), to_sq), ((s, s), to_ss)]
        for key, value in additions:  # all from the matrices as they were before this step
            relevance[key] = relevance[key] + value
    return relevance


def _raw(adapter: Adapter, cap: Capture, keep: Tensor | None) -> dict[tuple[str, str], Tensor]:
    """Per output stream, the head-averaged attention of the last site from the pooled stream
    (plus the identity on the pooled stream's own matrix, like the propagated ones; the
    reading takes the token itself out again)."""
    maps = _site_maps(cap, keep, with_gradient=False)
    found = {}
    for site, cam in zip(cap.sites, maps):
        if site.query == adapter.pooled_stream:
            found[(site.query, site.key)] = cam.clone()
    pooled = (adapter.pooled_stream, adapter.pooled_stream)
    found[pooled] = found[pooled] + torch.eye(found[pooled].shape[-1], dtype=found[pooled].dtype,
                                                device=found[pooled].device)  # fmt: skip
    return found


def _propagated(with_gradient: bool, values: str = "attn") -> Callable:
    def method(adapter: Adapter, cap: Capture, keep: Tensor | None):
        return propagate(adapter, cap, _site_maps(cap, keep, with_gradient, values))

    return method


#: relevance-map methods: name → (capture flags they need, function returning the R matrices).
MAP_METHODS: dict[str, tuple[frozenset[str], Callable]] = {
    "ours": (frozenset({GRADIENT}), _propagated(with_gradient=True)),
    "lrp": (frozenset({GRADIENT, RELEVANCE}), _propagated(with_gradient=True, values="relevance")),
    "rollout": (frozenset(), _propagated(with_gradient=False)),
    "raw": (frozenset(), _raw),
}


def _method(name: str) -> tuple[frozenset[str], Callable]:
    return MAP_METHODS[choose(name, MAP_METHODS, "relevance-map method", KeyError)]


def map_needs(methods) -> frozenset[str]:
    """What a capture must hold for the relevance maps of ``methods`` (see :mod:`headlens.edits.capture`)."""
    return frozenset().union(*(_method(m)[0] for m in methods))


def relevance_from_capture(
    model: nn.Module | Adapter, cap: Capture, inputs: Inputs, method: str = "ours", keep: Tensor | None = None
) -> Relevance:
    """Token and box relevance from an existing capture (e.g. of the unpruned model), with
    optional head masks ``keep`` ``[batch, sites, heads]`` applied in the head averages."""
    adapter = adapter_for(model)
    _, fn = _method(method)
    relevance = fn(adapter, cap, keep)
    streams = adapter.streams(inputs)
    pooled = adapter.pooled_stream
    outputs = {target: _pooled_rows(adapter, relevance, inputs, streams, pooled, target)
               for target in ("text", "image") if (pooled, target) in relevance}  # fmt: skip
    if pooled == "joint":
        row = _pooled_rows(adapter, relevance, inputs, streams, pooled, "joint")
        length = streams["text"].mask.shape[1]
        outputs = {"text": row[:, :length], "image": row[:, length:]}
    text, image = outputs.get("text"), outputs.get("image")
    text_mask = streams["text"].mask if text is not None else None
    image_mask = streams["image"].mask if image is not None else None
    return Relevance(
        None if text is None else text * text_mask, None if image is None else image * image_mask, text_mask, image_mask
    )


def _pooled_rows(adapter, relevance, inputs, streams, pooled: str, target: str) -> Tensor:
    """``R^{pooled,target}`` read at what the classifier reads: the pooled token's row (its own
    entry zeroed: a token's relevance for itself says nothing), or — for a classifier that
    averages the real tokens — the mean of their rows with the identity taken out."""
    matrix = relevance[(pooled, target)]
    rows = adapter.pooled_row(inputs)
    if rows is None:
        if target == pooled:
            matrix = matrix - torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
        real = streams[pooled].mask.to(matrix.dtype)
        return (matrix * real[:, :, None]).sum(1) / real.sum(1, keepdim=True)
    rows = rows.to(matrix.device)
    batch = torch.arange(matrix.shape[0], device=matrix.device)
    row = matrix[batch, rows].clone()
    if target == pooled:
        row[batch, rows] = 0
    return row


def relevance_maps(
    model: nn.Module | Adapter,
    inputs: Inputs,
    method: str = "ours",
    keep: Tensor | None = None,
    target: Tensor | None = None,
) -> Relevance:
    """Capture a batch (eval mode) and compute its relevance maps with ``method``."""
    adapter = adapter_for(model)
    needs = capture_options(map_needs([method]))
    with eval_mode(adapter.model):
        cap = capture(adapter, inputs, target=target, **needs)
    return relevance_from_capture(adapter, cap, inputs, method, keep)
