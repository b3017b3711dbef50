"""Speed-up of physically pruned models (``headlens export``) at 30/50/70 % of the heads removed.

    python benchmarks/export_speed.py [--device cpu|cuda] [--size base] [--batch 16] [--json PATH]

Heads are removed at random (the speed does not depend on which). The full and the pruned
models run in turn on the same batch, ``--repeat`` rounds; each model's fastest time counts
(the least disturbed by whatever else the machine does).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from headlens.export import export
from headlens.models import load_model
from _common import add_common_arguments, merge_json, random_batch, random_model

FRACTIONS = (0.3, 0.5, 0.7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", default="base")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=7)
    add_common_arguments(parser, families=["visual_bert", "lxmert"])
    args = parser.parse_args()
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, batch {args.batch}, size {args.size}")
    figures = dict(device=args.device, threads=torch.get_num_threads(), batch=args.batch, size=args.size,
                   repeat=args.repeat, models={})  # fmt: skip
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for family in args.families:
        adapter = random_model(family, args.size, args.device)
        batch = random_batch(adapter, args.size, args.batch)
        models, removed = {"full": adapter.model}, {}
        for fraction in FRACTIONS:
            scores = torch.rand(adapter.num_sites * adapter.num_heads, generator=torch.Generator().manual_seed(0))
            keep = (scores.argsort().argsort() >= int(fraction * scores.numel())).float()
            with tempfile.TemporaryDirectory() as folder:
                report = export(adapter.model, keep.view(adapter.num_sites, adapter.num_heads), folder)
                models[fraction] = load_model(family, folder).to(args.device)
            removed[fraction] = report["pruned_effective"] / report["heads"]
        best = dict.fromkeys(models, float("inf"))
        with torch.no_grad():
            for model in models.values():  # warm-up
                model(**batch.inputs)
            for _ in range(args.repeat):
                for name, model in models.items():
                    sync()
                    start = time.perf_counter()
                    model(**batch.inputs)
                    sync()
                    best[name] = min(best[name], time.perf_counter() - start)
        parts = [f"{family:<12} full {best['full']:.4f} s"]
        parts += [f"{f:.0%}: {best['full'] / best[f]:.2f}x ({removed[f]:.0%} removed)" for f in FRACTIONS]
        print(" | ".join(parts))
        figures["models"][f"{family} {args.size}"] = dict(full_s=best["full"], fractions={
            f"{f:g}": dict(seconds=best[f], speedup=best["full"] / best[f], removed=removed[f]) for f in FRACTIONS
        })  # fmt: skip
        merge_json(args.json, "export_speed", figures)


if __name__ == "__main__":
    main()
