"""Global head rankings of MiniLM on BBC News, measured on every held-out article.

    python benchmarks/minilm_global.py [--cache DIR] [--score-examples 300] [--seeds 3] [--device cpu] [--compress]

The demo sweeps 120 held-out articles, where one article is 0.8 points; this evaluates all
668 of them. Rankings are the head scores of ``grad``, ``lrp`` and ``taylor`` averaged over
``--score-examples`` training articles, plus ``--seeds`` random rankings; heads are removed
least important first (negative order) at 50 % and 75 %. Prints accuracy and the share of
the unpruned accuracy kept; ``--compress`` adds the retraining-free compression rows of
``compression.py``. The probe is the demo's (trained into ``--cache`` if missing);
needs ``headlens[encoders]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import headlens
from headlens.data.batch import sample
from headlens.devices import resolve_device
from headlens.subjects import encoders

LEVELS = [0.0, 0.5, 0.75]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default="~/.cache/headlens", help="the demo's cache folder (demo.cache_dir)")
    parser.add_argument("--score-examples", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compress", action="store_true", help="also the rows of compression.py (Kwon et al. 2022)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    folder = Path(args.cache).expanduser() / "minilm-bbc-max_length64-seed0"  # the demo's settings
    if not (folder / "training.json").is_file():
        encoders.train_minilm_probe(folder, max_length=64, seed=0, progress=False, device=device)
    adapter, training, held_out, _ = encoders.load_minilm(folder, device, progress=False)
    scoring = sample(training, args.score_examples, 0)
    options = dict(orders=["negative"], units=["head"], protocols=["global"], score_data=scoring, levels=LEVELS,
                   batch_size=32, progress=False)  # fmt: skip
    started = time.perf_counter()
    rows = {c.method: c.accuracy for c in headlens.sweep(adapter, held_out, methods=["grad", "lrp", "taylor"], **options).curves}
    randoms = [headlens.sweep(adapter, held_out, methods=["random"], seed=s, **options).curves[0].accuracy for s in range(args.seeds)]
    rows.update({f"random seed {s}": accuracy for s, accuracy in enumerate(randoms)})
    rows[f"random, mean of {args.seeds}"] = list(np.mean(randoms, axis=0))
    if args.compress:
        from compression import compression_rows

        rows.update(compression_rows(adapter, training, held_out, LEVELS, rankings=(), log=lambda line: None))
    unpruned = rows["grad"][0]
    print(f"MiniLM/BBC News: {len(held_out)} held-out articles, unpruned {unpruned:.2f} %; scores from "
          f"{len(scoring)} training articles; {time.perf_counter() - started:.0f} s on {device}")  # fmt: skip
    print(f"{'ranking (negative order)':<26}" + "".join(f"{f'{100 * level:.0f} % removed':>22}" for level in LEVELS[1:]))
    for name, accuracy in rows.items():
        cells = "".join(f"{f'{a:.2f} ({100 * a / unpruned:.1f} %)':>22}" for a in accuracy[1:])
        print(f"{name:<26}{cells}")


if __name__ == "__main__":
    main()
