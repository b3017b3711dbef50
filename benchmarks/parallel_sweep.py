"""A sweep in one process against the same sweep in ``--nproc`` processes under torchrun.

    python benchmarks/parallel_sweep.py [--nproc 2] [--device auto] [--examples 256] [--json PATH]

Both run ``headlens sweep --preset tiny-visual_bert`` (random questions, the grad, lrp and
random methods, both protocols) as the command line would; under torchrun each process takes
every ``nproc``-th batch (NCCL on GPUs, gloo on CPUs) and rank 0 writes the files. Prints the
wall times (whole commands, and the sweeps as ``results.json`` records them) and whether the
curves and the per-example scores are equal, bit for bit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import merge_json


def sweep_arguments(examples: int, out: Path, device: str) -> list[str]:
    """``headlens sweep`` arguments (after the command name)."""
    return ["sweep", "--preset", "tiny-visual_bert", "progress=false",
            f"data.num_examples={examples}", f"data.score_examples={max(8, examples // 2)}", "sweep.batch_size=16",
            "sweep.methods=[grad,lrp,random]", "sweep.protocols=[per_example,global]", f"out_dir={out}",
            f"device={device}"]  # fmt: skip


def launch(command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--device", default="auto", help="auto: one GPU per process when CUDA is present (NCCL)")
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--json", metavar="PATH", help="also merge the figures into this JSON file, under 'torchrun'")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        single, double = Path(folder) / "single", Path(folder) / "parallel"
        single_s = launch([sys.executable, "-m", "headlens.cli", *sweep_arguments(args.examples, single, args.device)])
        parallel_s = launch([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                             str(args.nproc), "--module", "headlens.cli",
                             *sweep_arguments(args.examples, double, args.device)])  # fmt: skip
        a = json.loads((single / "results.json").read_text())["runs"][0]
        b = json.loads((double / "results.json").read_text())["runs"][0]
        with np.load(single / "per_example.npz") as x, np.load(double / "per_example.npz") as y:
            soft_equal = all(np.array_equal(x[key], y[key]) for key in x.files)
    figures = dict(nproc=args.nproc, device=args.device, examples=args.examples, single_command_s=single_s,
                   torchrun_command_s=parallel_s, single_sweep_s=a["wall_time_s"], torchrun_sweep_s=b["wall_time_s"],
                   curves_equal=a["curves"] == b["curves"], soft_equal=soft_equal)  # fmt: skip
    print(f"1 process {single_s:.1f} s (sweep {a['wall_time_s']:.1f} s), {args.nproc} under torchrun "
          f"{parallel_s:.1f} s (sweep {b['wall_time_s']:.1f} s); curves equal {figures['curves_equal']}, "
          f"per-example scores equal {soft_equal}")  # fmt: skip
    merge_json(args.json, "torchrun", figures)


if __name__ == "__main__":
    main()
