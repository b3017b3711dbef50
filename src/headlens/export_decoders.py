"""Physical pruning of decoder attention (:mod:`headlens.adapters.decoders`): query heads and
whole key/value groups removed, the model kept an ordinary transformers model.

Llama-style modules (separate ``q_proj``/``k_proj``/``v_proj``, ``o_proj``): a removed query
head loses its ``q_proj`` rows and its ``o_proj`` columns; a key/value head none of whose query
heads is kept loses its ``k_proj``/``v_proj`` rows; a group that keeps some query heads keeps
its K/V. transformers' attention reads query head ``h`` against key/value head ``h // r`` with
one ``r`` per module (``num_key_value_groups``), so when the kept groups keep unequal numbers of
query heads (3 and 1, say), ``r`` becomes the greatest common divisor of those numbers and a
group keeping ``c`` heads has its K/V rows written ``c / r`` times: the arithmetic is exactly
the gated model's, at the price of those copies in the projections and the key/value cache
(docs/method.md#exporting-a-pruned-decoder). GPT-2 (one fused ``c_attn``, every head its own
K/V) loses the head's query, key and value columns and its ``c_proj`` rows.

A module losing every head keeps query head 0 and its key/value head with the value rows
zeroed, so its output is the output projection's bias, as gating every head gives.
"""

from __future__ import annotations

from math import gcd
from typing import Callable

import torch
from torch import Tensor, nn

from .adapters import Adapter, AttentionWeights


def head_rows(heads: list[int], size: int) -> Tensor:
    """``long[len(heads)·size]``: the feature indices of ``heads`` of ``size`` features each, in order."""
    return torch.cat([torch.arange(h * size, (h + 1) * size) for h in heads])


def kept_layout(total: int, kv_heads: int, removed: list[int]) -> tuple[list[int], list[int], int]:
    """For a module of ``total`` query heads sharing ``kv_heads`` key/value heads, with
    ``removed`` query heads gone: the kept query heads, the key/value head each K/V slot of
    the pruned module copies (in order), and the query heads per slot (``num_key_value_groups``)."""
    size = total // kv_heads
    kept = [h for h in range(total) if h not in set(removed)] or [0]
    counts: dict[int, int] = {}
    for head in kept:
        counts[head // size] = counts.get(head // size, 0) + 1
    share = 0
    for count in counts.values():
        share = gcd(share, count)
    slots = [group for group in sorted(counts) for _ in range(counts[group] // share)]
    return kept, slots, share


def prune_decoder_module(adapter: Adapter, weights: AttentionWeights, heads: list[int],
                         select: Callable[[nn.Linear, Tensor, int], nn.Linear]) -> None:  # fmt: skip
    """Remove query heads ``heads`` from one decoder attention module (in place); ``select``
    cuts an ``nn.Linear`` to the given rows (``dim=0``) or columns (``dim=1``)."""
    attention = adapter.model.get_submodule(weights.module)
    if len(set(weights.qkv)) == 1:
        _prune_fused(adapter, attention, weights, heads)
        return
    total, size = adapter.num_heads, attention.head_dim
    kept, slots, share = kept_layout(total, adapter.kv_heads, heads)
    query_rows, kv_rows = head_rows(kept, size), head_rows(slots, size)
    for name, rows in zip(weights.qkv, (query_rows, kv_rows, kv_rows)):
        setattr(attention, name, select(getattr(attention, name), rows, 0))
    parent_path, _, output = weights.output.rpartition(".")
    parent = adapter.model.get_submodule(parent_path)
    setattr(parent, output, select(getattr(parent, output), query_rows, 1))
    attention.num_key_value_groups = share
    if len(heads) == total:
        value = getattr(attention, weights.qkv[2])
        _silence(value.weight, value.bias, slice(None))


def _silence(weight: Tensor, bias: Tensor | None, features: slice) -> None:
    """Zero the output ``features`` of a projection (``weight`` with the output features first)."""
    with torch.no_grad():
        weight[features].zero_()
        if bias is not None:
            bias[features].zero_()


def _prune_fused(adapter: Adapter, attention: nn.Module, weights: AttentionWeights, heads: list[int]) -> None:
    """GPT-2: ``c_attn`` (Conv1D, weight ``[in, 3·width]``: queries, keys, values side by side)
    loses the heads' columns of each part, ``c_proj`` (weight ``[width, out]``) their rows."""
    from transformers.pytorch_utils import Conv1D

    total, size = adapter.num_heads, attention.head_dim
    kept = [h for h in range(total) if h not in set(heads)] or [0]
    width, rows = total * size, head_rows(kept, size)
    fused = getattr(attention, weights.qkv[0])
    columns = torch.cat([rows + part * width for part in range(3)])
    new = Conv1D(len(columns), fused.weight.shape[0]).to(fused.weight.device, fused.weight.dtype)
    projection = adapter.model.get_submodule(weights.output)
    mixed = Conv1D(projection.weight.shape[1], len(rows)).to(projection.weight.device, projection.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(fused.weight[:, columns])
        new.bias.copy_(fused.bias[columns])
        mixed.weight.copy_(projection.weight[rows])
        mixed.bias.copy_(projection.bias)
    if len(heads) == total:
        _silence(new.weight.T, new.bias, slice(2 * len(rows), 3 * len(rows)))  # Conv1D: outputs are columns
    setattr(attention, weights.qkv[0], new)
    parent_path, _, output = weights.output.rpartition(".")
    setattr(adapter.model.get_submodule(parent_path), output, mixed)
    attention.num_heads, attention.split_size = len(kept), len(kept) * size
