"""Cost of scoring heads against a plain forward + backward of the same batch.

    python benchmarks/scoring_cost.py [--device cpu|cuda] [--sizes tiny base] [--batch 16] [--json PATH]
                                      [--precision-examples 32] [--memory]

Targets (issue 5 and 7): ``grad`` ≤ 1.3×, ``lrp`` ≤ 2× the floor (one forward and one
backward of the target logit with parameter gradients, as training would run it).

Then ``exact`` (one gated forward per head and example, ``--exact-rows`` rows per pass) at
``--exact-sizes``: its time against the same floor and against ``grad``, and the forwards it
runs per example (the number of heads). Then, for the LRP variants: the cost of ``attnlrp`` and of ``lrp`` run in float64 against
the same floor; how far float32 ``lrp`` head scores are from float64 ones at base size
with weights of standard deviation 0.1 (largest and median relative difference per
example, max over heads of |Δ| over max of |score|, and the share of per-example masks
at 50 % that change); with ``--memory``, the peak resident memory that scoring one
example at base size adds (VmHWM in a fresh process) for ``grad``, ``lrp``, ``attnlrp``
and float64 ``lrp``. A float64 pass casts each weight anew for each op and frees it; glibc's
malloc may keep those buffers resident (``MALLOC_MMAP_THRESHOLD_=131072`` makes it return them).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

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
    add_lrp_arguments(parser)
    args = parser.parse_args()
    if args.measure:
        return measure(*args.measure)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, batch {args.batch}")
    print(f"{'model':<18}{'fwd+bwd s':>10}{'grad s':>9}{'lrp s':>9}{'grad ×':>8}{'lrp ×':>8}{'lrp ex/s':>10}")
    figures = dict(device=args.device, threads=torch.get_num_threads(), batch=args.batch, repeat=args.repeat, models={})
    for family, size, adapter, batch, floor in each_model(args, args.sizes):
        grad = timed(lambda: headlens.score(adapter, batch, "grad"), args.repeat)
        lrp = timed(lambda: headlens.score(adapter, batch, "lrp"), args.repeat)
        print(f"{family + ' ' + size:<18}{floor:>10.4f}{grad:>9.4f}{lrp:>9.4f}"
              f"{grad / floor:>8.2f}{lrp / floor:>8.2f}{args.batch / lrp:>10.1f}")  # fmt: skip
        figures["models"][f"{family} {size}"] = dict(
            family=family, size=size, floor_s=floor, grad_s=grad, lrp_s=lrp, grad_vs_floor=grad / floor,
            lrp_vs_floor=lrp / floor, lrp_examples_per_s=args.batch / lrp,
        )  # fmt: skip
        merge_json(args.json, "scoring_cost", figures)  # after each model: a killed run keeps what it measured
    exact_cost(args)
    lrp_variants(args)


def each_model(args, sizes):
    """``(family, size, adapter, batch, floor seconds)`` for every size and family asked for."""
    for size in sizes:
        for family in args.families:
            adapter = random_model(family, size, args.device)
            batch = random_batch(adapter, size, args.batch)
            yield family, size, adapter, batch, timed(plain_forward_backward(adapter, batch), args.repeat)


def exact_cost(args) -> None:
    """``exact``'s time against the floor and against ``grad``."""
    figures: dict = {"rows": args.exact_rows, "batch": args.batch, "models": {}}
    print(f"\nexact single-head ablation ({args.exact_rows} rows per forward pass)")
    print(f"{'model':<18}{'heads':>7}{'fwd+bwd s':>10}{'exact s':>9}{'exact ×':>9}{'vs grad':>9}{'ex/s':>8}")
    for family, size, adapter, batch, floor in each_model(args, args.exact_sizes):
        grad = timed(lambda: headlens.score(adapter, batch, "grad"), args.repeat)
        exact = timed(lambda: headlens.score(adapter, batch, "exact", rows=args.exact_rows), 1)
        heads = adapter.num_sites * adapter.num_heads
        print(f"{family + ' ' + size:<18}{heads:>7}{floor:>10.4f}{exact:>9.3f}{exact / floor:>9.1f}"
              f"{exact / grad:>9.1f}{args.batch / exact:>8.1f}")  # fmt: skip
        figures["models"][f"{family} {size}"] = dict(heads=heads, floor_s=floor, grad_s=grad, exact_s=exact,
                                                     exact_vs_floor=exact / floor, exact_vs_grad=exact / grad,
                                                     examples_per_s=args.batch / exact)  # fmt: skip
        merge_json(args.json, "exact_cost", figures)


# LRP variants: attnlrp and float64 costs, float32-vs-float64 deviation, peak memory.

PASSES = {"lrp": ("lrp", None), "attnlrp": ("attnlrp", None), "lrp f64": ("lrp", "float64")}


def add_lrp_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exact-sizes", nargs="*", default=["tiny"], help="sizes at which to time exact (none: skip)")
    parser.add_argument("--exact-rows", type=int, default=256, help="rows per forward pass of exact")
    parser.add_argument("--precision-examples", type=int, default=32,
                        help="examples for the float32-vs-float64 deviation of lrp at base size (0: skip it)")
    parser.add_argument("--memory", action="store_true",
                        help="also measure the peak memory of scoring one example at base size, per method")
    parser.add_argument("--measure", nargs=3, metavar=("FAMILY", "METHOD", "DTYPE"), help=argparse.SUPPRESS)


def lrp_variants(args) -> None:
    figures: dict = {"vs_floor": {}, "float32_vs_float64": {}, "peak_mb": {}}
    print(f"\n{'model':<18}{'fwd+bwd s':>10}" + "".join(f"{name + ' ×':>11}" for name in PASSES))
    for family, size, adapter, batch, floor in each_model(args, args.sizes):
        ratios = [timed(lambda: headlens.score(adapter, batch, m, lrp_dtype=d), args.repeat) / floor
                  for m, d in PASSES.values()]  # fmt: skip
        print(f"{family + ' ' + size:<18}{floor:>10.4f}" + "".join(f"{r:>11.2f}" for r in ratios))
        figures["vs_floor"][f"{family} {size}"] = dict(zip(PASSES, ratios))
        merge_json(args.json, "lrp_variants", figures)
    if args.precision_examples:
        print(f"\nlrp head scores in float32 against float64: base size, weights ~ N(0, 0.1²), "
              f"{args.precision_examples} examples")  # fmt: skip
        print(f"{'model':<18}{'max rel':>10}{'median rel':>12}{'masks changed (neg / pos)':>28}")
        for family in args.families:
            row = figures["float32_vs_float64"][f"{family} base"] = precision_row(family, args)
            print(f"{family + ' base':<18}{row['max_relative']:>10.2%}{row['median_relative']:>12.2%}"
                  f"{row['masks_changed_negative']:>19.0%} / {row['masks_changed_positive']:.0%}")  # fmt: skip
            merge_json(args.json, "lrp_variants", figures)
    if args.memory:
        print("\npeak memory scoring one example at base size (MB added to the loaded model, fresh processes)")
        print(f"{'model':<18}" + "".join(f"{name:>10}" for name in ("grad", *PASSES)))
        for family in args.families:
            cells = [peak_mb(family, "grad", "float32")] + [peak_mb(family, m, d or "float32") for m, d in PASSES.values()]
            print(f"{family + ' base':<18}" + "".join(f"{c:>10.0f}" for c in cells))
            figures["peak_mb"][f"{family} base"] = dict(zip(("grad", *PASSES), cells))
            merge_json(args.json, "lrp_variants", figures)


def precision_row(family: str, args) -> dict:
    from headlens.masks import head_masks

    adapter = random_model(family, "base", args.device, init_range=0.1)
    low, high = [], []
    for start in range(0, args.precision_examples, args.batch):
        batch = random_batch(adapter, "base", min(args.batch, args.precision_examples - start), seed=start)
        low.append(headlens.score(adapter, batch, "lrp"))
        high.append(headlens.score(adapter, batch, "lrp", lrp_dtype="float64"))
    low, high = torch.cat(low).double(), torch.cat(high).double()
    relative = (low - high).abs().amax((1, 2)) / high.abs().amax((1, 2))
    changed = [
        (head_masks(low, [0.5], order, "head", adapter.count_rule) != head_masks(high, [0.5], order, "head",
         adapter.count_rule)).flatten(1).any(1).double().mean().item()
        for order in ("negative", "positive")
    ]  # fmt: skip
    return dict(max_relative=relative.max().item(), median_relative=relative.median().item(),
                masks_changed_negative=changed[0], masks_changed_positive=changed[1])  # fmt: skip


def peak_mb(family: str, method: str, dtype: str) -> float:
    """MB that scoring one example adds to the resident peak, in a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--measure", family, method, dtype],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def measure(family: str, method: str, dtype: str) -> None:
    """(In the fresh process) build the model, reset the peak, score one example, print the peak's rise."""
    adapter = random_model(family, "base", "cpu")
    batch = random_batch(adapter, "base", 1)
    headlens.score(adapter, batch, "entropy")  # a forward: buffers and lazy initialisation settle
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # VmHWM := VmRSS
    before = _status_kb("VmRSS")
    headlens.score(adapter, batch, method, **({} if dtype == "float32" else {"lrp_dtype": dtype}))
    print((_status_kb("VmHWM") - before) / 1024)


if __name__ == "__main__":
    main()
