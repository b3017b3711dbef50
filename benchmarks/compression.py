"""Retraining-free compression (Kwon et al. 2022) of MiniLM on BBC News, on every held-out article.

    python benchmarks/compression.py [--cache DIR] [--calibration 256] [--fisher predicted|expected]
                                     [--score-examples 300] [--rankings lrp] [--device cpu]

Rows, at 50 % and 75 % of the heads removed: the Fisher mask search gated, the same mask
rearranged within layers, and rearranged then least-squares tuned; for each of ``--rankings``
(headlens scoring methods, averaged over ``--score-examples`` training articles as in
``minilm_global.py``), its global mask gated and tuned. Gradients and tuning use
``--calibration`` training articles, their labels unread. Accuracy and the share of the
unpruned accuracy kept, as ``minilm_global.py`` prints them (``minilm_global.py --compress``
prints these rows under its own). Needs ``headlens[encoders]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from headlens.compress import accuracy_under, compress, folded_copy
from headlens.compress.fisher import block_fisher, mask_gradients
from headlens.compress.tuning import tune_scales
from headlens.data.batch import sample
from headlens.devices import resolve_device
from headlens.masks import head_masks
from headlens.subjects import encoders
from headlens.sweep import global_scores

LEVELS = [0.0, 0.5, 0.75]
SUBJECT = "minilm-bbc-max_length64-seed0"  # the demo's settings


def minilm(cache: str, device):
    """``(adapter, training, held-out)`` of the demo's MiniLM probe, trained into ``cache`` if missing."""
    folder = Path(cache).expanduser() / SUBJECT
    if not (folder / "training.json").is_file():
        encoders.train_minilm_probe(folder, max_length=64, seed=0, progress=False, device=device)
    adapter, training, held_out, _ = encoders.load_minilm(folder, device, progress=False)
    return adapter, training, held_out


def compression_rows(adapter, training, held_out, levels=LEVELS, calibration: int = 256, fisher: str = "predicted",
                     rankings=("lrp",), score_examples: int = 300, offsets: bool = True,
                     log=print) -> dict[str, list[float]]:  # fmt: skip
    """Row name → accuracy at each of ``levels`` (level 0: the unpruned model, as in the sweeps)."""
    examples = sample(training, calibration, 0)
    started = time.perf_counter()
    block = block_fisher(mask_gradients(adapter, examples, 32, fisher))
    log(f"Fisher ({fisher}) on {len(examples)} calibration articles: {time.perf_counter() - started:.0f} s")
    unpruned = accuracy_under(adapter, held_out, None)
    tuned = "kwon + rearranged + tuned" + (" (+ offsets)" if offsets else "")
    rows = {f"kwon search ({fisher} Fisher)": [unpruned], "kwon + rearranged": [unpruned], tuned: [unpruned]}
    scores = {}
    if rankings:
        scores, _, _ = global_scores(adapter, sample(training, score_examples, 0), list(rankings), 16, 0, "float32", False)
    for name in rankings:
        rows[f"{name}"], rows[f"{name} + tuned"] = [unpruned], [unpruned]
    for level in levels[1:]:
        started = time.perf_counter()
        found = compress(adapter, examples, level, block=block, offsets=offsets)
        for row, mask in zip(list(rows)[:2], (found.searched, found.rearranged)):
            rows[row].append(accuracy_under(adapter, held_out, mask))
        rows[tuned].append(accuracy_under(folded_copy(adapter, found.gates, found.offsets), held_out, found.rearranged))
        for name in rankings:
            keep = head_masks(scores[name], [level], "negative", "head", adapter.count_rule)[0].double()
            rows[name].append(accuracy_under(adapter, held_out, keep))
            tuning = tune_scales(adapter, examples, keep, offsets=offsets)
            rows[f"{name} + tuned"].append(accuracy_under(folded_copy(adapter, tuning.scales, tuning.offsets), held_out, keep))
        log(f"{100 * level:.0f} % removed: {time.perf_counter() - started:.0f} s; " +
            ", ".join(f"{name} {accuracy[-1]:.2f}" for name, accuracy in rows.items()))  # fmt: skip
    return rows


def print_rows(rows: dict[str, list[float]], levels, unpruned: float) -> None:
    width = max(30, *(len(name) + 2 for name in rows))
    print(f"{'ranking (negative order)':<{width}}" + "".join(f"{f'{100 * level:.0f} % removed':>22}" for level in levels[1:]))
    for name, accuracy in rows.items():
        print(f"{name:<{width}}" + "".join(f"{f'{a:.2f} ({100 * a / unpruned:.1f} %)':>22}" for a in accuracy[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default="~/.cache/headlens", help="the demo's cache folder (demo.cache_dir)")
    parser.add_argument("--calibration", type=int, default=256)
    parser.add_argument("--fisher", default="predicted", choices=["predicted", "expected"])
    parser.add_argument("--score-examples", type=int, default=300)
    parser.add_argument("--rankings", nargs="*", default=["lrp"])
    parser.add_argument("--offsets", action=argparse.BooleanOptionalAction, default=True,
                        help="tune the output biases' offsets with the scales")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = resolve_device(args.device)
    adapter, training, held_out = minilm(args.cache, device)
    started = time.perf_counter()
    rows = compression_rows(adapter, training, held_out, LEVELS, args.calibration, args.fisher, args.rankings,
                            args.score_examples, args.offsets, log=lambda line: print(line, flush=True))  # fmt: skip
    unpruned = rows[next(iter(rows))][0]
    print(f"MiniLM/BBC News: {len(held_out)} held-out articles, unpruned {unpruned:.2f} %; {args.calibration} "
          f"calibration articles; {time.perf_counter() - started:.0f} s on {device}")  # fmt: skip
    print_rows(rows, LEVELS, unpruned)


if __name__ == "__main__":
    main()
