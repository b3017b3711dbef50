"""Accuracy and speed of the masked evaluation passes in bfloat16/float16 against float32.

    python benchmarks/precision.py [demo overrides …] [--dtype bfloat16 [float16]] [--examples 500]
                                   [--device auto] [--random-size base] [--random-examples 128]
                                   [--quick] [--json PATH]

Runs the demo's sweeps on the easy-VQA demo models (trained first if the cache has none)
twice — masked evaluation in float32, then under autocast to each ``--dtype`` (scores are
always float32) — and prints, per curve, the largest accuracy difference over the levels and the
AUC difference, and the wall-time ratio. On a CPU, bfloat16 autocast is often slower.

The demo models are tiny (width 64), too small for reduced precision to save time; with
``--random-size base`` the same comparison also runs (first) on random-init BERT-base-size models, on
synthetic questions whose label is the unpruned float32 model's own answer (accuracy there is
agreement with it). Each sweep is timed after a warm-up sweep of a few examples in the same
dtype, so the first one does not pay for the device's start-up. ``--quick`` uses the demo's
quick training settings (seconds; for checking this script, not for figures).
"""

from __future__ import annotations

import argparse
import time

import headlens
from headlens.data.batch import sample
from headlens.demo import Splits, ensure_subject, family_config
from headlens.devices import resolve_device
from headlens.pipeline import synthetic_for
from _common import INPUTS, add_common_arguments, merge_json, random_model

OPTIONS = dict(methods=["grad", "random"], protocols=["per_example"], progress=False)


def timed_sweep(adapter, data, dtype: str | None):
    """A sweep in ``dtype`` (None: float32) and its wall time, after a warm-up sweep of 4 examples."""
    headlens.sweep(adapter, sample(data, min(4, len(data)), 0), eval_dtype=dtype, **OPTIONS)
    started = time.perf_counter()
    result = headlens.sweep(adapter, data, eval_dtype=dtype, **OPTIONS)
    return result, time.perf_counter() - started


def compare(name: str, adapter, data, dtypes) -> dict:
    """Float32 against each dtype on ``data``: printed, and returned as figures."""
    full, full_s = timed_sweep(adapter, data, None)
    figures = dict(examples=len(data), float32_s=full_s, unpruned_accuracy=full.curves[0].accuracy[0])
    for dtype in dtypes:
        low, low_s = timed_sweep(adapter, data, dtype)
        print(f"{name}: {dtype} / float32 wall time {low_s / full_s:.2f}")
        curves = {}
        for a, b in zip(full.curves, low.curves):
            worst = max(abs(x - y) for x, y in zip(a.accuracy, b.accuracy))
            print(f"  {a.method}/{a.unit}/{a.order}: max |Δ accuracy| {worst:.2f} points, Δ AUC {b.auc - a.auc:+.2f}")
            curves[f"{a.method}/{a.unit}/{a.order}"] = dict(max_abs_delta_accuracy=worst, delta_auc=b.auc - a.auc)
        figures[dtype] = dict(seconds=low_s, time_ratio=low_s / full_s, curves=curves,
                              max_abs_delta_accuracy=max(c["max_abs_delta_accuracy"] for c in curves.values()))  # fmt: skip
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", nargs="+", default=["bfloat16"], choices=["bfloat16", "float16"])
    parser.add_argument("--examples", type=int, default=500, help="easy-VQA test questions per sweep")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    parser.add_argument("--random-size", choices=sorted(INPUTS), help="also compare on random models of this size")
    parser.add_argument("--random-examples", type=int, default=128, help="synthetic questions per random-model sweep")
    parser.add_argument("--quick", action="store_true", help="the demo's quick training settings (a check, not figures)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. demo.cache_dir=DIR")
    add_common_arguments(parser)
    args = parser.parse_args()
    figures = dict(device=args.device, dtypes=args.dtype, quick=args.quick, trained={}, random={})
    if args.random_size:
        device = resolve_device(args.device)
        text, boxes, _ = INPUTS[args.random_size]
        for family in args.families:
            adapter = random_model(family, args.random_size, device)
            data = synthetic_for(adapter, args.random_examples, max_len=text, boxes=boxes, labels="model")
            name = f"{family} {args.random_size}"
            figures["random"][name] = compare(name, adapter, data, args.dtype)
            merge_json(args.json, "precision", figures)
    splits = Splits()  # the random models first: they take seconds, training may take minutes
    for family in args.families:
        config = family_config(family, ["progress=false", f"device={args.device}", *args.overrides], quick=args.quick)
        subject, trained_now = ensure_subject(config, splits)
        data = sample(subject.dataset(splits["test"]), args.examples, config.data.seed)
        figures["trained"][family] = compare(family, subject.adapter, data, args.dtype)
        record = subject.report
        report = record["report"]
        figures["trained"][family].update(trained_now=trained_now, trained_on=record["config"]["device"],
                                          training_steps=report["steps"], train_wall_time_s=report["train_wall_time_s"],
                                          test_accuracy=report["test_accuracy"], model=str(subject.folder))  # fmt: skip
        merge_json(args.json, "precision", figures)


if __name__ == "__main__":
    main()
