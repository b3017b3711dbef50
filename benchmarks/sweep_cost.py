"""Cost of a full per-example head-pruning sweep (score + 10 levels), against its floor and
against a faithful batch-size-1 loop like the original's.

    python benchmarks/sweep_cost.py [--device cpu|cuda] [--sizes tiny base] [--examples 16] [--memory] [--json PATH]

* floor: one forward + backward of the batch (parameter gradients, as training runs it) plus
  9 forwards of the same batch (level 0 reuses the scoring pass) — target: sweep ≤ 1.3× floor;
* original: per example, batch size 1, a forward + backward (the gradient), an LRP pass
  (the original ran one for every example, whatever the method), then for each of the 10
  levels an unpruned forward to read the target and a masked forward — 20 forwards.
  Targets: ≥ 3× faster on CPU at BERT-base size, ≥ 50× on a GPU;
* iterative (at ``--iterative-sizes``, tiny unless told): the same sweep with ``iterative=True``
  (re-scored before each of the 9 pruned levels, :mod:`headlens.iterative`), against the plain sweep;
* peak memory of the sweep at N and 4N examples (in fresh processes): it must not grow with N.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

import headlens
from headlens.edits import capture, gates
from headlens.masks import LEVELS, head_masks
from _common import add_common_arguments, merge_json, plain_forward_backward, random_batch, random_data, random_model, timed


def sweep_run(adapter, data, batch, iterative=False):
    return lambda: headlens.sweep(adapter, data, methods=["grad"], orders=["negative"], units=["head"],
                                  batch_size=batch, iterative=iterative, progress=False)  # fmt: skip


def floor_run(adapter, inputs):
    backward = plain_forward_backward(adapter, type("B", (), {"inputs": inputs})())

    def run():
        backward()
        with torch.no_grad():
            for _ in range(9):
                adapter.logits(inputs)

    return run


def original_run(adapter, examples):
    """The original's loop: batch size 1; gradient pass, LRP pass, 2 forwards per level."""

    def run():
        for inputs in examples:
            cap = capture(adapter, inputs)
            capture(adapter, inputs, grad=False, relevance=True)
            scores = headlens.scoring.get_method("grad").fn(cap)
            masks = head_masks(scores, LEVELS, "negative", "head", adapter.count_rule)[0]
            with torch.no_grad():
                for level in range(len(LEVELS)):
                    adapter.logits(inputs).argmax(-1)  # the original re-ran the unpruned model for the target
                    with gates(adapter, masks[level][None]):
                        adapter.logits(inputs).argmax(-1)

    return run


def peak_memory(family: str, size: str, examples: int, batch: int, device: str) -> float:
    """Peak memory (MB) of one sweep in a fresh process: RSS on CPU, allocated on CUDA. On Linux the
    RSS high-water mark is reset after the model is built (``/proc/self/clear_refs``), so the peak
    is the sweep's own, not that of building a random model (which can exceed it)."""
    code = f"""
import gc, resource, sys, torch, headlens
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from _common import random_model, random_data
a = random_model({family!r}, {size!r}, {device!r})
data = random_data(a, {size!r}, {examples})
gc.collect()
status = Path("/proc/self/status")
if status.is_file():
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
headlens.sweep(a, data, methods=["grad"], orders=["negative"], units=["head"], batch_size={batch}, progress=False)
cuda = torch.cuda.is_available() and {device!r} != "cpu"
if cuda:
    print(torch.cuda.max_memory_allocated() / 2**20)
elif status.is_file():
    print(next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmHWM")) / 1024)
else:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"])
    parser.add_argument("--examples", type=int, default=16, help="examples per measurement (also the batch)")
    parser.add_argument("--original-examples", type=int, default=4, help="examples for the slow batch-1 loop")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--iterative-sizes", nargs="*", default=["tiny"], help="sizes at which to time iterative")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory at N and 4N examples")
    add_common_arguments(parser)
    args = parser.parse_args()
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, {args.examples} examples per batch")
    figures = dict(device=args.device, threads=torch.get_num_threads(), examples=args.examples,
                   original_examples=args.original_examples, repeat=args.repeat, models={})  # fmt: skip
    for size in args.sizes:
        for family in args.families:
            adapter = random_model(family, size, args.device)
            batch = random_batch(adapter, size, args.examples)
            data = random_data(adapter, size, args.examples)
            sweep_s = timed(sweep_run(adapter, data, args.examples), args.repeat)
            floor_s = timed(floor_run(adapter, batch.inputs), args.repeat)
            singles = [{k: v[i : i + 1] for k, v in batch.inputs.items()} for i in range(args.original_examples)]
            original_s = timed(original_run(adapter, singles), 1, warmup=0) / args.original_examples * args.examples
            row = dict(model=f"{family} {size}", sweep_s=sweep_s, floor_s=floor_s, original_s=original_s,
                       vs_floor=sweep_s / floor_s, speedup_vs_original=original_s / sweep_s,
                       examples_per_s=args.examples / sweep_s)  # fmt: skip
            if size in args.iterative_sizes:
                row["iterative_s"] = timed(sweep_run(adapter, data, args.examples, iterative=True), 1)
                row["iterative_vs_sweep"] = row["iterative_s"] / sweep_s
            if args.memory:
                row["peak_mb_N"] = peak_memory(family, size, args.examples, args.examples, args.device)
                row["peak_mb_4N"] = peak_memory(family, size, 4 * args.examples, args.examples, args.device)
                row["peak_4N_vs_N"] = row["peak_mb_4N"] / row["peak_mb_N"]
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
            figures["models"][row["model"]] = row
            merge_json(args.json, "sweep_cost", figures)  # after each model: a killed run keeps what it measured


if __name__ == "__main__":
    main()
