"""Tiny random decoders of every family headlens serves, and padded batches for them, shared by the tests."""

from __future__ import annotations

import torch
import transformers

from headlens.adapters import adapter_for
from headlens.data.batch import Batch

F64 = torch.float64
COMMON = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              vocab_size=50, initializer_range=0.2)  # fmt: skip
#: tiny decoders of every family (eager attention; sliding windows shorter than the 6-token
#: inputs; Gemma 2 with attention and final-logit soft-capping that bite).
DECODERS = {
    "llama": lambda: transformers.LlamaConfig(**COMMON),
    "qwen2": lambda: transformers.Qwen2Config(**COMMON),
    "qwen3": lambda: transformers.Qwen3Config(**COMMON, head_dim=8),
    "mistral": lambda: transformers.MistralConfig(**COMMON, sliding_window=3),
    "gemma2": lambda: transformers.Gemma2Config(**COMMON, head_dim=8, sliding_window=3, attn_logit_softcapping=2.0,
                                                final_logit_softcapping=3.0),
    "gemma3": lambda: transformers.Gemma3TextConfig(**COMMON, head_dim=8, sliding_window=3),
    "gpt2": lambda: transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_inner=64, vocab_size=50,
                                            initializer_range=0.2, bos_token_id=0, eos_token_id=0),
}  # fmt: skip
#: the families whose linear layers have biases (Qwen 2's q/k/v; GPT-2's everywhere, and LayerNorm's).
BIASED = {"qwen2", "gpt2"}


def decoder(family: str, dtype=F64, **overrides):
    """A random decoder (float64 by default) with non-zero biases and norm weights away from 1;
    ``overrides`` change its config (``num_key_value_heads=1``: multi-query attention)."""
    torch.manual_seed(0)
    config = DECODERS[family]()
    for key, value in overrides.items():
        setattr(config, key, value)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    model = model.eval().to(dtype)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias") or "norm" in name or ".ln_" in name:
                parameter.add_(0.3 * torch.randn_like(parameter))
    return model


def decoder_adapter(family: str, dtype=F64, classes=None, **overrides):
    return adapter_for(decoder(family, dtype, **overrides), classes=classes)


LENGTHS = (6, 3, 5, 1)


def token_lists(count: int = 4, seed: int = 0) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 50, (LENGTHS[i % len(LENGTHS)],), generator=generator).tolist() for i in range(count)]


def padded(tokens: list[list[int]], side: str = "right", extra: int = 0) -> Batch:
    """``tokens`` as one batch padded on ``side`` to the longest plus ``extra`` (pad id 0)."""
    length = max(map(len, tokens)) + extra
    ids = torch.zeros(len(tokens), length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(tokens):
        span = slice(0, len(seq)) if side == "right" else slice(length - len(seq), length)
        ids[row, span] = torch.tensor(seq)
        mask[row, span] = 1
    fields = {"input_ids": ids, "attention_mask": mask}
    return Batch(fields, torch.zeros(len(tokens), 1), list(range(len(tokens))))


def decoder_batch(adapter, tokens, side: str = "right", extra: int = 0) -> Batch:
    batch = padded(tokens, side, extra)
    batch.inputs = adapter.inputs(batch.fields)
    return batch


class TokenExamples:
    """Token lists with class labels, as a dataset (``collate`` gives right-padded batches of
    fields and one-hot labels over ``n_answers``)."""

    def __init__(self, tokens: list[list[int]], labels: list[int], n_answers: int, side: str = "right"):
        self.tokens, self.labels, self.n_answers, self.side = tokens, labels, n_answers, side

    def __len__(self) -> int:
        return len(self.tokens)

    def collate(self, indices) -> Batch:
        batch = padded([self.tokens[i] for i in indices], self.side)
        labels = torch.nn.functional.one_hot(torch.tensor([self.labels[i] for i in indices]), self.n_answers).float()
        return Batch(batch.fields, labels, [f"t{i}" for i in indices])


def tiny_lm_folder(root):
    """A tiny random Llama (float32) with a 50-word whitespace tokenizer, saved as an HF folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<unk>"] + [f"w{i}" for i in range(48)]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>")
    folder = root / "tiny-lm"
    decoder_adapter("llama", dtype=torch.float32).model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
