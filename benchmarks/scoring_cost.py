"""Cost of scoring heads against a plain forward + backward of the same batch.

    python benchmarks/scoring_cost.py [--device cpu|cuda] [--sizes tiny base] [--batch 16] [--json PATH]

Targets (issue 5 and 7): ``grad`` ≤ 1.3×, ``lrp`` ≤ 2× the floor (one forward and one
backward of the target logit with parameter gradients, as training would run it).
"""

from __future__ import annotations

import argparse

import torch

import headlens
from _common import add_common_arguments, merge_json, plain_forward_backward, random_batch, random_model, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    add_common_arguments(parser)
    args = parser.parse_args()
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, batch {args.batch}")
    print(f"{'model':<18}{'fwd+bwd s':>10}{'grad s':>9}{'lrp s':>9}{'grad ×':>8}{'lrp ×':>8}{'lrp ex/s':>10}")
    figures = dict(device=args.device, threads=torch.get_num_threads(), batch=args.batch, repeat=args.repeat, models={})
    for size in args.sizes:
        for family in args.families:
            adapter = random_model(family, size, args.device)
            batch = random_batch(adapter, size, args.batch)
            floor = timed(plain_forward_backward(adapter, batch), args.repeat)
            grad = timed(lambda: headlens.score(adapter, batch, "grad"), args.repeat)
            lrp = timed(lambda: headlens.score(adapter, batch, "lrp"), args.repeat)
            print(f"{family + ' ' + size:<18}{floor:>10.4f}{grad:>9.4f}{lrp:>9.4f}"
                  f"{grad / floor:>8.2f}{lrp / floor:>8.2f}{args.batch / lrp:>10.1f}")  # fmt: skip
            figures["models"][f"{family} {size}"] = dict(
                family=family, size=size, floor_s=floor, grad_s=grad, lrp_s=lrp, grad_vs_floor=grad / floor,
                lrp_vs_floor=lrp / floor, lrp_examples_per_s=args.batch / lrp,
            )  # fmt: skip
            merge_json(args.json, "scoring_cost", figures)  # after each model: a killed run keeps what it measured


if __name__ == "__main__":
    main()
