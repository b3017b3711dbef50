"""Accuracy and speed of the masked evaluation passes in bfloat16/float16 against float32.

    python benchmarks/precision.py [--dtype bfloat16|float16] [--examples 500] [demo overrides …]

Runs the demo's sweeps on the easy-VQA demo models (trained first if the cache has none)
twice — masked evaluation in float32, then under autocast to ``--dtype`` (scores are always
float32) — and prints, per curve, the largest accuracy difference over the levels and the
AUC difference, and the wall-time ratio. On a CPU, bfloat16 autocast is often slower.
"""

from __future__ import annotations

import argparse
import time

import headlens
from headlens.data.batch import sample
from headlens.demo import Splits, ensure_subject, family_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. demo.cache_dir=DIR device=cuda")
    args = parser.parse_args()
    splits = Splits()
    for family in ("lxmert", "visual_bert"):
        config = family_config(family, ["progress=false", *args.overrides], quick=False)
        subject, _ = ensure_subject(config, splits)
        data = sample(subject.dataset(splits["test"]), args.examples, config.data.seed)
        options = dict(methods=["grad", "random"], protocols=["per_example"], progress=False)
        started = time.perf_counter()
        full = headlens.sweep(subject.adapter, data, **options)
        middle = time.perf_counter()
        low = headlens.sweep(subject.adapter, data, eval_dtype=args.dtype, **options)
        ended = time.perf_counter()
        print(f"{family}: {args.dtype} / float32 wall time {(ended - middle) / (middle - started):.2f}")
        for a, b in zip(full.curves, low.curves):
            worst = max(abs(x - y) for x, y in zip(a.accuracy, b.accuracy))
            print(f"  {a.method}/{a.unit}/{a.order}: max |Δ accuracy| {worst:.2f} points, Δ AUC {b.auc - a.auc:+.2f}")


if __name__ == "__main__":
    main()
