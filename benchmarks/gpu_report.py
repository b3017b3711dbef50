"""The figures file of ``benchmarks/gpu.sh``: one JSON object, rewritten whole after every step.

    python benchmarks/gpu_report.py init    --out FILE [--dry-run] [--plan KEY=VALUE …]
    python benchmarks/gpu_report.py machine --raw RAW
    python benchmarks/gpu_report.py step    --out FILE --raw RAW --name NAME --status STATUS
                                            [--seconds S] [--limit S] [--command TEXT] [--reason TEXT] [--junit XML]
    python benchmarks/gpu_report.py finish  --out FILE --status complete|interrupted

The benchmark scripts merge their figures into RAW under their own names (``--json``);
``step`` moves a step's figures into FILE with its status (``ok``, ``failed``, ``timeout``,
``skipped``, ``not_run``, or ``running`` while it runs), its wall time, and its targets: each
a measured value against a limit, and ``targets_met`` — true when all are met, false when
one is not, null when the step has none or the run is a dry run (the targets are for
BERT-base size on a GPU; a dry run computes them only to show they can be). The schema::

    {"schema": 1, "dry_run": bool, "started": ISO, "finished": ISO | null, "status": ...,
     "machine": {...}, "plan": {...},
     "steps": {NAME: {"status", "seconds", "limit_s", "command", "reason", "figures",
                      "targets": [{"what", "value", "limit", "met"}], "targets_met"}}}

Imports neither torch nor headlens (except ``machine``, which imports torch), so it still
records a step when the install did not work.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

SCHEMA = 1


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def write(path: Path, content: dict) -> None:
    """Replace ``path`` whole (a temporary file, then a rename): a run killed mid-write leaves
    the previous complete file. (headlens.files has the same; this script must not need headlens.)"""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(handle, "w") as file:
        json.dump(content, file, indent=1)
        file.write("\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- machine


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def machine() -> dict:
    """The machine a run measured: GPUs, versions, CPU cores, date."""
    import torch

    cuda = torch.cuda.is_available()
    gpus = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())] if cuda else []
    return {
        "date": now(),
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "transformers": version("transformers"),
        "numpy": version("numpy"),
        "cuda_available": cuda,
        "cuda_devices": len(gpus),
        "gpus": [{"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                  "multiprocessors": p.multi_processor_count} for p in gpus],  # fmt: skip
        "driver": driver() if cuda else None,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------------------- targets


def target(what: str, value: float | None, limit: str) -> dict:
    """``limit`` is ``"<= X"`` or ``">= X"``; a missing value does not meet it."""
    sign, bound = limit.split()
    met = value is not None and (value <= float(bound) if sign == "<=" else value >= float(bound))
    return {"what": what, "value": value, "limit": limit, "met": met}


def scoring_targets(figures: dict) -> list[dict]:
    rows = figures.get("models", {}).items()
    return [target(f"grad scoring / (forward + backward), {name}", row["grad_vs_floor"], "<= 1.3") for name, row in rows] + [
        target(f"lrp scoring / (forward + backward), {name}", row["lrp_vs_floor"], "<= 2") for name, row in rows
    ]  # fmt: skip


def sweep_targets(figures: dict) -> list[dict]:
    found = []
    for name, row in figures.get("models", {}).items():
        found.append(target(f"per-example sweep speed-up over the batch-1 loop, {name}", row["speedup_vs_original"], ">= 50"))
        found.append(target(f"per-example sweep / its floor, {name}", row["vs_floor"], "<= 1.3"))
        if "peak_4N_vs_N" in row:  # does not grow with N: 4× the examples, at most a quarter more memory
            found.append(target(f"peak memory at 4N / at N examples, {name}", row["peak_4N_vs_N"], "<= 1.25"))
    return found


def precision_targets(figures: dict) -> list[dict]:
    found = []
    for name, row in figures.get("random", {}).items():
        if "bfloat16" in row:
            found.append(target(f"bfloat16 / float32 sweep time, random {name}", row["bfloat16"]["time_ratio"], "<= 0.6"))
    for name, row in figures.get("trained", {}).items():
        if "bfloat16" in row:
            worst = row["bfloat16"]["max_abs_delta_accuracy"]
            found.append(target(f"bfloat16 max |Δ accuracy| (points), trained easy-VQA {name}", worst, "<= 1"))
    return found


def pytest_targets(figures: dict) -> list[dict]:
    bad = figures.get("failed", 0) + figures.get("errors", 0)
    return [target("GPU tests failed or in error", bad, "<= 0"), target("GPU tests passed", figures.get("passed", 0), ">= 1")]


def torchrun_targets(figures: dict) -> list[dict]:
    return [target("torchrun curves equal the single process's (1 = yes)", float(figures.get("curves_equal", False)), ">= 1")]


TARGETS = {"scoring_cost": scoring_targets, "sweep_cost": sweep_targets, "precision": precision_targets,
           "pytest_gpu": pytest_targets, "torchrun": torchrun_targets}  # fmt: skip


def junit(path: Path) -> dict:
    """Counts and per-test outcomes of a pytest ``--junitxml`` file."""
    counts = dict(passed=0, failed=0, errors=0, skipped=0)
    tests = {}
    outcomes = {"failure": "failed", "error": "errors", "skipped": "skipped"}
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        marks = [child for child in case if child.tag in outcomes]
        outcome = outcomes[marks[0].tag] if marks else "passed"
        counts[outcome] += 1
        message = marks[0].get("message", "") if marks else ""
        tests[f"{case.get('classname')}::{case.get('name')}"] = {"outcome": outcome, "message": message[:500]}
    return dict(counts, tests=tests)


# ---------------------------------------------------------------------------- commands


def cmd_init(args) -> None:
    plan = dict(item.split("=", 1) for item in args.plan)
    write(args.out, {"schema": SCHEMA, "dry_run": args.dry_run, "started": now(), "finished": None,
                     "status": "running", "machine": {}, "plan": plan, "steps": {}})  # fmt: skip


def cmd_machine(args) -> None:
    content = read(args.raw)
    content["machine"] = machine()
    write(args.raw, content)
    print(json.dumps(content["machine"], indent=1))


def cmd_step(args) -> None:
    content = read(args.out)
    figures = read(args.raw).get(args.name, {}) if args.raw else {}
    if args.junit and args.junit.is_file():
        figures = junit(args.junit)
    if args.name == "machine" and figures:
        content["machine"] = figures
    targets = TARGETS[args.name](figures) if args.name in TARGETS and figures else []
    met = None if content.get("dry_run") or not targets else all(t["met"] for t in targets)
    content.setdefault("steps", {})[args.name] = {
        "status": args.status, "seconds": args.seconds, "limit_s": args.limit, "command": args.command,
        "reason": args.reason, "figures": figures, "targets": targets, "targets_met": met,
    }  # fmt: skip
    write(args.out, content)


def cmd_finish(args) -> None:
    content = read(args.out)
    steps = content.get("steps", {})
    for step in steps.values():
        if step["status"] == "running":  # the run ended (killed) inside this step
            step["status"], step["reason"] = "timeout", "the whole run was stopped during this step"
    content.update(finished=now(), status=args.status)
    met = [s["targets_met"] for s in steps.values() if s["targets_met"] is not None]
    content["targets_met"] = None if not met else all(met)
    write(args.out, content)
    for name, step in steps.items():
        print(f"{name:<14}{step['status']:<9}{step['seconds'] or 0:>7.1f} s  targets met: {step['targets_met']}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="action", required=True)
    init = commands.add_parser("init")
    init.add_argument("--out", type=Path, required=True)
    init.add_argument("--dry-run", action="store_true")
    init.add_argument("--plan", action="append", default=[], metavar="KEY=VALUE", help="what the run runs")
    init.set_defaults(fn=cmd_init)
    info = commands.add_parser("machine")
    info.add_argument("--raw", type=Path, required=True)
    info.set_defaults(fn=cmd_machine)
    step = commands.add_parser("step")
    step.add_argument("--out", type=Path, required=True)
    step.add_argument("--raw", type=Path)
    step.add_argument("--name", required=True)
    step.add_argument("--status", required=True, choices=["ok", "failed", "timeout", "skipped", "not_run", "running"])
    step.add_argument("--seconds", type=float)
    step.add_argument("--limit", type=float)
    step.add_argument("--command")
    step.add_argument("--reason")
    step.add_argument("--junit", type=Path)
    step.set_defaults(fn=cmd_step)
    finish = commands.add_parser("finish")
    finish.add_argument("--out", type=Path, required=True)
    finish.add_argument("--status", required=True, choices=["complete", "interrupted"])
    finish.set_defaults(fn=cmd_finish)
    args = parser.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
