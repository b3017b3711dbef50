"""Wall time of the demo's parts: ``headlens demo`` with timers around its sweeps, their global
scoring and correlation tables, the map tests, the pictures and the result files.

    python benchmarks/demo_parts.py demo.cache_dir=DIR out_dir=/tmp/demo-parts progress=false

Takes the demo's ``key=value`` overrides; prints the total, then seconds per (subject, part).
A sweep's total includes its global scoring and its correlation table.
"""

from __future__ import annotations

import collections
import sys
import time

import headlens.demo as demo

sweep_module = sys.modules["headlens.sweep"]  # the package exports the function ``sweep`` under that name
seconds: dict = collections.defaultdict(float)
subject = ["?"]


def timed(module, name: str) -> None:
    """Replace ``module.name`` with a copy that adds its wall time to the current subject's ``name``."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[(subject[0], name)] += time.perf_counter() - started

    setattr(module, name, wrapper)


def main() -> None:
    plain = demo.sweep

    def named_sweep(model, data, score=None, options=None, **keywords):
        subject[0] = getattr(options, "name", None) or getattr(getattr(model, "adapter", model), "family", "?")
        started = time.perf_counter()
        result = plain(model, data, score, options, **keywords)
        seconds[(subject[0], "sweep total")] += time.perf_counter() - started
        return result

    demo.sweep = named_sweep
    for name in ("global_scores", "correlation_table", "add_intervals", "random_band"):
        timed(sweep_module, name)
    for name in ("faithfulness_of", "pointing_table", "draw_examples", "write_results", "save_figure"):
        timed(demo, name)
    started = time.perf_counter()
    demo.run_demo(sys.argv[1:])
    print(f"total {time.perf_counter() - started:.1f} s")
    for (name, part), value in sorted(seconds.items()):
        print(f"{name:<14}{part:<20}{value:8.1f} s")


if __name__ == "__main__":
    main()
