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

FAMILIES = ("lxmert", "visual_bert")

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
    config = make_config(family, vocab_size=30522 if size == "base" else 40, feature_dim=INPUTS[size][2],
                         n_answers=n_answers if size == "base" else 13, init_range=init_range, **spec)  # fmt: skip
    torch.manual_seed(0)
    model = new_model(family, config).to(device).eval()
    return adapter_for(model)


def random_batch(adapter, size: str, batch: int, seed: int = 0):
    text, boxes, _ = INPUTS[size]
    data = adapter.examples(synthetic_for(adapter, batch, seed, max_len=text, boxes=boxes))
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


def add_common_arguments(parser: argparse.ArgumentParser, families=FAMILIES) -> None:
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
