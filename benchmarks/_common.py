"""Shared pieces of the benchmark scripts: models of a given size, batches, a timer, and
the ``--json`` file their figures go to.

Benchmarks print ratios measured in one run on one machine; they assert nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from headlens.adapters import adapter_for
from headlens.adapters.configs import make_config, new_model
from headlens.pipeline import synthetic_for
from headlens.files import atomic_write

FAMILIES = ("lxmert", "visual_bert", "decoder")
#: the families a benchmark runs unless told (the decoder is asked for with ``--families decoder``).
DEFAULT_FAMILIES = ("lxmert", "visual_bert")
#: decoder sizes: a tiny Llama, and SmolLM2-135M's shape (30 layers × 9 query heads, 3 KV heads), with
#: the tokens per example of each.
DECODER_SIZES = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, vocab_size=50),
    "base": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                 intermediate_size=1536, vocab_size=49152, tie_word_embeddings=True),
}  # fmt: skip
DECODER_TOKENS = {"tiny": 12, "base": 64}

#: model sizes: the easy-VQA demo's, and BERT-base (LXMERT 9/5/5, VisualBERT 12 layers).
SIZES = {
    "tiny": dict(hidden=64, heads=4, intermediate=128, layers={}),
    "base": dict(hidden=768, heads=12, intermediate=3072, layers="base"),
}
BASE_LAYERS = {"lxmert": {"language": 9, "cross": 5, "vision": 5}, "visual_bert": {"layers": 12}}
#: (text tokens, boxes, visual feature size) per size, as the real inputs have them.
INPUTS = {"tiny": (12, 16, 121), "base": (20, 36, 2048)}


def random_model(family: str, size: str, device: str = "cpu", n_answers: int = 3129, init_range: float = 0.02):
    """A random-init model of ``size`` (the benchmarks' cost does not depend on training), its
    weights drawn with standard deviation ``init_range``; ``decoder``: a Llama of
    :data:`DECODER_SIZES` (``base``: SmolLM2-135M's shape), eager attention."""
    if family == "decoder":
        import transformers

        torch.manual_seed(0)
        config = transformers.LlamaConfig(**DECODER_SIZES[size], initializer_range=init_range)
        model = transformers.LlamaForCausalLM._from_config(config, attn_implementation="eager")
        return adapter_for(model.to(device).eval())
    spec = dict(SIZES[size])
    if spec["layers"] == "base":
        spec["layers"] = BASE_LAYERS[family]
    config = make_config(family, vocab_size=30522 if size == "base" else 40, feature_dim=INPUTS[size][2],
                         n_answers=n_answers if size == "base" else 13, init_range=init_range, **spec)  # fmt: skip
    torch.manual_seed(0)
    model = new_model(family, config).to(device).eval()
    return adapter_for(model)


def random_data(adapter, size: str, count: int, seed: int = 0):
    """``count`` random examples for ``adapter``'s model: questions and boxes, or (a decoder)
    :data:`DECODER_TOKENS` random tokens each, labelled by the model's own answers."""
    if adapter.family != "decoder":
        text, boxes, _ = INPUTS[size]
        return adapter.examples(synthetic_for(adapter, count, seed, max_len=text, boxes=boxes))
    from headlens.data.batch import Batch
    from headlens.evaluate import LabelledByModel

    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, adapter.model.config.vocab_size, (count, DECODER_TOKENS[size]), generator=generator)

    class Tokens:
        def __len__(self):
            return count

        def collate(self, indices):
            rows = list(indices)
            fields = {"input_ids": tokens[rows], "attention_mask": torch.ones_like(tokens[rows])}
            return Batch(fields, torch.zeros(len(rows), 1), [f"tokens-{i}" for i in rows])

    return LabelledByModel(adapter.examples(Tokens()), adapter)


def random_batch(adapter, size: str, batch: int, seed: int = 0):
    return random_data(adapter, size, batch, seed).collate(range(batch)).to(adapter.device)


def timed(fn, repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds (CUDA synchronised)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def plain_forward_backward(adapter, batch):
    """The floor: one forward and one backward of the target logit with parameter gradients."""

    def run():
        adapter.model.zero_grad(set_to_none=True)
        logits = adapter.logits(batch.inputs)
        logits.gather(1, logits.argmax(-1, keepdim=True)).sum().backward()

    return run


def add_common_arguments(parser: argparse.ArgumentParser, families=DEFAULT_FAMILIES) -> None:
    """``--families`` and ``--json``, which every benchmark takes."""
    parser.add_argument("--families", nargs="+", default=list(families), choices=FAMILIES)
    parser.add_argument("--json", metavar="PATH", help="also merge the figures into this JSON file, under the script's name")


def merge_json(path: str | None, key: str, figures: dict) -> None:
    """Set ``key`` of the JSON object in ``path`` (created if missing) to ``figures``; the
    file is replaced whole, so a reader never sees half of it. Nothing when ``path`` is None."""
    if path is None:
        return
    path = Path(path)
    content = json.loads(path.read_text()) if path.is_file() else {}
    content[key] = figures
    atomic_write(path, json.dumps(content, indent=1) + "\n")
