"""``exact``: the drop in the target logit when one head alone is gated off.

    s(site, h) = z_c(ξ) − z_c(ξ with ξ[site, h] = 0)

for every head, where ``z_c`` is the logit the other methods differentiate (the predicted
answer of the capture's pass, or the target given) and ``ξ`` the gates the capture ran
under (all ones unless re-scoring a pruned model: :mod:`headlens.iterative`). It is the
quantity the first-order methods approximate (``taylor`` is its linearisation at ξ = 1,
up to the sign), computed exactly with one gated forward per (example, head): the batch is
repeated over a chunk of heads, each row the example under its own gates, at most
``rows`` rows per forward pass (memory is bounded by ``rows``, not by the number of
heads). A head already gated off scores 0 and costs no pass. Higher = more important;
signed (a head whose removal raises the logit scores below 0). No gradients are formed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..adapters import Adapter, Inputs
from ..edits import Capture, gates

#: rows (one example under one head's gates) per forward pass, unless told.
ROWS = 256


def score(capture: Capture, adapter: Adapter, inputs: Inputs, gate: Tensor | None = None, rows: int = ROWS) -> Tensor:
    """``float[batch, sites, heads]``: ``z_c`` under ``gate`` (``[batch, sites, heads]``, None:
    every head kept) minus ``z_c`` with each head also gated off, in the model's precision."""
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    batch, sites, heads = capture.batch_size, adapter.num_sites, adapter.num_heads
    logits = capture.logits
    base = torch.ones(batch, sites * heads, dtype=logits.dtype, device=logits.device)
    if gate is not None:
        base = gate.reshape(batch, sites * heads).to(dtype=logits.dtype, device=logits.device)
    target = capture.target.to(logits.device)
    reference = logits.gather(1, target[:, None])[:, 0]
    examples, units = (base != 0).nonzero(as_tuple=True)  # heads still on: one row each
    drops = torch.zeros(batch, sites * heads, dtype=logits.dtype, device=logits.device)
    with torch.no_grad():
        for start in range(0, examples.shape[0], rows):
            e, u = examples[start : start + rows], units[start : start + rows]
            masks = base[e].clone()
            masks[torch.arange(e.shape[0], device=e.device), u] = 0
            chunk = {key: value[e.to(value.device)] for key, value in inputs.items()}
            with gates(adapter, masks.view(-1, sites, heads)):
                ablated = adapter.logits(chunk).gather(1, target[e][:, None].to(logits.device))[:, 0]
            drops[e, u] = reference[e] - ablated.to(logits.dtype)
    return drops.view(batch, sites, heads)
