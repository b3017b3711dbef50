"""Decoder LLMs written for transformers 5's attention-function registry: Llama (SmolLM2 is
one), Qwen 2 and 3, Mistral, Gemma 2 and 3, and GPT-2.

Their attention modules hand the maps to a registered attention function (sites ``via =
"attention_function"``, as the encoders'); the sites are those modules in model order, one
causal self-attention per layer, named ``dec.{i}.self`` (docs/method.md#decoder-llms). Query
heads are the sites' heads; under grouped-query attention ``kv_heads`` key/value heads are
shared by ``heads // kv_heads`` consecutive query heads each (transformers' ``repeat_kv``
order).

The answer logits are the next-token logits at the **last real token** of each example
(right or left padding alike), over the vocabulary — or over a list of label-token ids given
to the adapter (prompt classification). Position ids are counted over the real tokens, so a
left-padded example sees the positions it sees alone (GPT-2's absolute embeddings need this;
rotary ones only up to rounding).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .family import ByClass, Family, Field, Layout, Positions

#: Llama-style attention: separate q/k/v projections (k and v with ``kv_heads`` heads), ``o_proj``.
_SEPARATE = Layout(".", ("q_proj", "k_proj", "v_proj"), "o_proj")
#: GPT-2: one Conv1D ``c_attn`` holding q, k and v side by side, ``c_proj`` mixing the heads back.
_FUSED = Layout(".", ("c_attn", "c_attn", "c_attn"), "c_proj")


def next_token_logits(model: nn.Module, inputs, rows: Tensor) -> Tensor:
    """``[batch, vocabulary]``: the logits at position ``rows[b]`` of example ``b``. Only the rows
    asked for go through the output layer (``logits_to_keep``), and no key/value cache is kept.

    A model set to transformers' eager attention runs headlens' (the same eager attention,
    :mod:`headlens.edits.attention_function`) for the call: transformers' casts the float64
    logits to float32 for the softmax, where the mask's float64 minimum becomes −∞ and a
    left-padded row with no key to see becomes NaN, which then reaches every real row through
    ``0 · NaN``."""
    from ..edits import attention_function  # (the edits import the adapters)

    restore = attention_function.select(model.config) if model.config._attn_implementation == "eager" else None
    try:
        kept, where = torch.unique(rows, return_inverse=True)
        logits = model(**inputs, use_cache=False, logits_to_keep=kept).logits  # [batch, len(kept), vocabulary]
    finally:
        if restore is not None:
            restore()
    return logits[torch.arange(len(rows), device=logits.device), where]


def sliding_window(module: nn.Module, config) -> int | None:
    """An attention module's sliding window: its own attribute where the family sets one per layer
    (Qwen, Gemma: None on full-attention layers), else the config's (Mistral: every layer)."""
    if hasattr(module, "sliding_window"):
        return module.sliding_window
    return getattr(config, "sliding_window", None)


DECODERS = Family(
    name="decoder",
    model_classes=(
        "LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "MistralForCausalLM", "Gemma2ForCausalLM",
        "Gemma3ForCausalLM", "GPT2LMHeadModel",
    ),
    sites=ByClass({
        "LlamaAttention": _SEPARATE, "Qwen2Attention": _SEPARATE, "Qwen3Attention": _SEPARATE,
        "MistralAttention": _SEPARATE, "Gemma2Attention": _SEPARATE, "Gemma3Attention": _SEPARATE,
        "GPT2Attention": _FUSED,
    }, name="dec.{i}.self"),
    inputs={"input_ids": Field("input_ids"), "attention_mask": Field("attention_mask"),
            "position_ids": Positions("attention_mask")},
    pooled_row="last",
    head_count=("num_heads", "num_attention_heads"),
    head_size_total=(),
    answers="vocab_size",
    readout=next_token_logits,
    kv_heads="num_key_value_heads",
    window=sliding_window,
    causal=True,
)  # fmt: skip
