"""Shared pieces of the benchmark scripts: models of a given size, batches, a timer.

Benchmarks print ratios measured in one run on one machine; they assert nothing.
"""

from __future__ import annotations

import statistics
import time

import torch
import transformers

from headlens.adapters import adapter_class, adapter_for
from headlens.data.synthetic import SyntheticVQA

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
    weights drawn with standard deviation ``init_range``."""
    spec = dict(SIZES[size])
    if spec["layers"] == "base":
        spec["layers"] = BASE_LAYERS[family]
    cls = adapter_class(family)
    config = cls.make_config(vocab_size=30522 if size == "base" else 40, feature_dim=INPUTS[size][2],
                             n_answers=n_answers if size == "base" else 13, init_range=init_range, **spec)  # fmt: skip
    torch.manual_seed(0)
    model = getattr(transformers, cls.model_classes[0])(config).to(device).eval()
    return adapter_for(model)


def random_batch(adapter, size: str, batch: int, seed: int = 0):
    text, boxes, _ = INPUTS[size]
    data = SyntheticVQA(adapter, batch, seed=seed, max_len=text, boxes=boxes)
    return data.collate(range(batch)).to(adapter.device)


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
