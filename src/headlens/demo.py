"""``headlens demo`` and ``headlens visualize``: the whole analysis on easy-VQA, on a laptop CPU.

For each model family: train a tiny model on easy-VQA unless a cached copy
exists; run head and layer pruning with every scoring method, both orders and
both protocols on a fixed seeded sample of test questions (the global protocol
ranks by scores averaged over a sample of training questions); check where the
relevance maps point after pruning; draw one example; write the result files,
one curve plot per model, ``summary.md`` and ``report.html`` (:mod:`headlens.report`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from omegaconf import DictConfig

from .config import ConfigError, load_config
from .correlation import markdown as correlation_lines
from .data.batch import Subset, sample
from .data.easy_vqa import Split, load_split
from .devices import resolve_device
from .pipeline import sweep_options
from .errors import notice
from .faithfulness import FaithfulnessResult, faithfulness_table, perturbation_test
from .files import MANIFEST, RunFolder, atomic_write, writable_folder
from .intervals import best_method, with_interval
from .provenance import run_provenance
from .report import FILE_NAME as REPORT, stage_report, write_report
from .results import write_results
from .subjects.easy_vqa import Subject, cached_folder, load_subject, train_subject
from .sweep import SweepResult, sweep
from .visualize import Record, draw_examples, format_pointing, pointing_table, visualize_examples
from .viz.curves import plot_curves
from .viz.figures import save_figure


@dataclass
class ModelRun:
    family: str
    folder: Path
    trained_now: bool
    training: dict  # the model's training.json "report"
    result: SweepResult
    pointing: dict
    figure: Path
    faithfulness: FaithfulnessResult | None = None


def family_config(family: str, overrides: Sequence[str], quick: bool, file=None) -> DictConfig:
    """schema ← easy-vqa-<family> ← demo ← (demo-quick) ← file ← overrides."""
    presets = [f"easy-vqa-{family}", "demo"] + (["demo-quick"] if quick else [])
    config = load_config(overrides, presets, file)
    if config.data.name != "easy_vqa":
        raise ConfigError(f"key 'data.name': the demo runs on easy_vqa, not {config.data.name!r}")
    return config


class Splits(dict):
    """easy-VQA splits, read on first use."""

    def __missing__(self, name: str) -> Split:
        self[name] = load_split(name)
        return self[name]


def ensure_subject(config: DictConfig, splits: Splits) -> tuple[Subject, bool]:
    """The cached model ``config`` describes, trained first if there is none. Returns it and
    whether it was trained now."""
    folder = cached_folder(config, config.demo.cache_dir)
    trained_now = not (folder / "training.json").is_file()
    if trained_now:
        writable_folder(folder.parent, "demo.cache_dir")  # before the minutes of training
        print(f"[headlens] training {config.model.family} on easy-VQA → {folder}", flush=True)
        needed = {name: splits[name] for name in ("train", "test")}  # read once, shared with the sweeps
        train_subject(config, folder, needed, config.demo.test_questions, progress=config.progress)
    return load_subject(folder, resolve_device(config.device), progress=config.progress), trained_now


def run_visualize(overrides: Sequence[str] = (), quick: bool = False, file=None) -> dict[str, list]:
    """``headlens visualize``: pictures of ``viz.examples`` test questions per model family."""
    base = family_config("lxmert", overrides, quick, file)
    splits, written = Splits(), {}
    for family in base.demo.families:
        config = family_config(family, overrides, quick, file)
        subject, _ = ensure_subject(config, splits)
        v = config.viz
        record = Record(family, provenance=subject_provenance(config, subject)) if config.report else None
        written[family] = visualize_examples(
            subject, splits[config.data.split], Path(config.out_dir) / "viz" / family,
            n=v.examples, seed=config.data.seed, levels=list(v.levels), method=v.method, scale=v.scale, record=record,
        )  # fmt: skip
    if base.report and (Path(base.out_dir) / MANIFEST).is_file():
        notice(f"{base.out_dir} holds a run's set (results.json); its report.html is left as it was: "
               "these pictures are not part of that set")  # fmt: skip
    elif base.report:
        write_report(base.out_dir)
    return written


@dataclass
class EncoderRun:
    name: str
    training: dict  # the subject's training.json
    result: SweepResult
    figures: list[Path]
    faithfulness: FaithfulnessResult | None = None


@dataclass(frozen=True)
class Study:
    """One optional real subject of the demo, declared: what it needs and how it is made.

    Attributes:
        name: the subject's name (its cache folder's stem, its curves' and figures' name).
        available: whether its packages are installed (no import of them).
        train: ``train(folder, progress=, device=, **settings)`` makes its cached folder.
        load: ``load(folder, device, progress=) -> (adapter, scoring data, held-out data, report)``.
        levels: the fractions pruned, from the demo's configuration.
        settings: what decides the cached folder (its name carries them), from ``quick``.
        pictures: ``pictures(adapter, held_out, folder, seed, record) -> [paths]`` of one example or
            two, drawn into ``folder`` (None: none).
        options: :class:`~headlens.sweep.SweepOptions` fields of its sweep (default: head units).
        examples: how many examples it evaluates and scores (None: the demo's count).
        faithfulness: how many evaluated examples the perturbation test of the maps takes (0: none).
        correlation: how many scoring examples the correlation table with ``exact`` takes (0: none).
    """

    name: str
    available: Callable[[], bool]
    train: Callable
    load: Callable
    levels: Callable[[DictConfig], list[float]]
    settings: Callable[[bool], dict]
    pictures: Callable | None = None
    options: Callable[[], dict] = lambda: {"units": ["head"]}
    examples: Callable[[bool], int | None] = lambda quick: None  # evaluated and scored (None: the demo's count)
    faithfulness: Callable[[DictConfig], int] = lambda base: base.demo.faithfulness_examples  # perturbation test (0: none)
    correlation: Callable[[DictConfig], int] = lambda base: base.sweep.correlation  # examples of the ρ-with-exact table

    def folder(self, cache: str | Path, quick: bool) -> Path:
        """Its folder in ``cache``, named by the settings that decide it."""
        key = "-".join(f"{k}{v}" for k, v in sorted(self.settings(quick).items()))
        return Path(cache).expanduser() / f"{self.name}-{key}"

    def ensure(self, cache: str | Path, quick: bool, device, progress: bool) -> Path:
        """Its folder in ``cache``, trained (or prepared) there first if it is not yet."""
        folder = self.folder(cache, quick)
        if not (folder / "training.json").is_file():
            print(f"[headlens] training {self.name} → {folder}", flush=True)
            self.train(folder, progress=progress, device=device, **self.settings(quick))
        return folder


def encoder_studies() -> list[Study]:
    """MiniLM on BBC News and a tiny ViT on digits (:mod:`headlens.subjects.encoders`)."""
    from .subjects import encoders

    def digit_pictures(adapter, held_out, folder, seed, record):
        from .visualize import draw_patches

        return draw_patches(adapter, sample(held_out, 2, seed), folder, record=record)

    return [
        Study("minilm-bbc", lambda: encoders.available()["minilm"], encoders.train_minilm_probe, encoders.load_minilm,
              lambda base: list(base.demo.minilm_levels), lambda quick: dict(max_length=64, seed=0),
              # every masked forward is one of a real 22M-parameter model: the global protocol only, the one
              # compression uses (the per-example protocol is studied on easy-VQA, whose models are tiny)
              options=lambda: {"units": ["head"], "protocols": ["global"]},
              faithfulness=lambda base: base.demo.faithfulness_minilm_examples),
        Study("vit-digits", lambda: encoders.available()["vit"], encoders.train_vit_digits, encoders.load_vit_digits,
              lambda base: list(base.sweep.levels), lambda quick: dict(steps=40 if quick else 1500, seed=0),
              pictures=digit_pictures),
    ]  # fmt: skip


def smollm2_studies() -> list[Study]:
    """SmolLM2-135M-Instruct on BBC News text (:mod:`headlens.subjects.smollm2`), when its extra
    and the BBC News articles are installed: next-token accuracy and perplexity of held-out
    articles after removing query heads (and key/value groups, where headlens has that unit) by
    every method's ranking, against random."""
    from .lm import LanguageModelMetric
    from .masks import UNITS
    from .subjects import encoders, smollm2

    units = ["head"] + [unit for unit in ("kv_group",) if unit in UNITS]
    # Accuracy over every given token of an article, not over its last one alone: 31 right-or-wrong
    # tokens an article instead of one, so that a few dozen articles separate the rankings. Every
    # masked forward is one of a 135M-parameter model: the global protocol and the negative order
    # only (the ones compression uses; removing the most important heads first ruins it at 10 %).
    options = {"units": units, "metric": LanguageModelMetric(accuracy="tokens"), "checkpoint": None, "target": "label",
               "protocols": ["global"], "orders": ["negative"]}  # fmt: skip
    return [
        Study("smollm2-bbc", lambda: smollm2.available() and encoders.available()["minilm"], smollm2.prepare_text_study,
              smollm2.load_text_study, lambda base: list(base.demo.smollm2_levels),
              lambda quick: dict(tokens=32, seed=0), pictures=smollm2.text_strip, options=lambda: dict(options),
              # exact ablation (the correlation table) is one forward of the 135M-parameter model per head
              # and example, 270 an article: 4 articles keep it to minutes on a CPU
              correlation=lambda base: min(4, base.sweep.correlation),
              examples=lambda quick: 4 if quick else 24, faithfulness=lambda base: 0),  # tokens: not yet
    ]  # fmt: skip


def run_encoders(base: DictConfig, run_folder: RunFolder, quick: bool, studies: Sequence[Study] | None = None) -> list[EncoderRun]:
    """The optional real subjects (default: :func:`encoder_studies`), each when its packages are installed."""
    runs = []
    studies = (encoder_studies() + smollm2_studies() if studies is None else list(studies)) if base.demo.encoders else []
    device = resolve_device(base.device)
    for study in studies:
        if not study.available():
            continue
        examples = study.examples(quick) or (8 if quick else base.demo.encoder_examples)
        settings = study.settings(quick)
        folder = study.ensure(base.demo.cache_dir, quick, device, base.progress)
        adapter, training, held_out, report = study.load(folder, device, progress=base.progress)
        evaluated = sample(held_out, examples, base.data.seed)
        options = replace(sweep_options(base, run_folder.out / f"partial_{study.name}.npz"), levels=study.levels(base),
                          config={"subject": study.name, "settings": settings}, name=study.name,
                          correlation=study.correlation(base), **study.options())  # fmt: skip
        result = sweep(adapter, evaluated, sample(training, examples, base.data.seed), options)
        data = {"name": study.name, "held_out": len(held_out), "training": len(training)}
        result.provenance = run_provenance(adapter.family, folder, data, {"data": base.data.seed, "training": settings["seed"]})
        figures = []
        if study.pictures is not None:
            record = Record(study.name, result.levels, result.provenance) if base.report else None
            figures = study.pictures(adapter, held_out, run_folder.stage(f"viz/{study.name}"), base.data.seed, record)
        faithful = faithfulness_of(adapter, evaluated, study.faithfulness(base), base, study.name)
        runs.append(EncoderRun(study.name, report, result, figures, faithful))
    return runs


def run_demo(overrides: Sequence[str] = (), quick: bool = False, file=None) -> tuple[list[ModelRun], dict]:
    """Run the demo; returns the per-model runs and the paths written."""
    started = time.perf_counter()
    base = family_config("lxmert", overrides, quick, file)
    run_folder = RunFolder(base.out_dir)  # an unwritable out_dir fails before any training
    out = run_folder.staging  # every file is staged, then the whole set is put in place at the end
    splits, runs = Splits(), []
    for family in base.demo.families:
        config = family_config(family, overrides, quick, file)
        subject, trained_now = ensure_subject(config, splits)
        evaluated = sample(subject.dataset(splits[config.data.split]), config.data.num_examples, config.data.seed)
        scoring = sample(subject.dataset(splits[config.data.score_split]), config.data.score_examples, config.data.seed)
        result = sweep(subject.adapter, evaluated, scoring, sweep_options(config, run_folder.out / f"partial_{family}.npz"))
        result.provenance = subject_provenance(config, subject)
        pointing = pointing_table(subject, evaluated, list(config.viz.levels))
        first = Subset(evaluated.base, evaluated.indices[:1])  # what visualize_examples(n=1) draws
        record = Record(family, result.levels, result.provenance) if config.report else None
        pictures = draw_examples(
            subject.adapter, first, subject.answers, subject.tokenizer, out / "viz" / family,
            list(config.viz.levels), config.viz.method, config.viz.scale, record=record,
        )  # fmt: skip
        faithful = faithfulness_of(subject.adapter, evaluated, config.demo.faithfulness_examples, config, family)
        runs.append(ModelRun(family, subject.folder, trained_now, subject.report["report"], result, pointing,
                             pictures[0]["figure"], faithful))  # fmt: skip
    extra = run_encoders(base, run_folder, quick)
    staged = {}
    for name, result, title in [(r.family, r.result, f"{r.family} on easy-VQA") for r in runs] + [
        (r.name, r.result, r.name) for r in extra
    ]:
        staged[f"png_{name}"] = out / f"curves_{name}.png"
        save_figure(plot_curves(result.curves, title=title), staged[f"png_{name}"])
    staged["pointing"] = out / "pointing.json"
    atomic_write(staged["pointing"], json.dumps({r.family: r.pointing for r in runs}, indent=1).encode())
    tests = {r.faithfulness.model: r.faithfulness.to_dict() for r in [*runs, *extra] if r.faithfulness}
    if tests:  # staged before write_results stages the report, which reads it from the staging folder
        staged["faithfulness"] = out / "faithfulness.json"
        atomic_write(staged["faithfulness"], json.dumps(tests, indent=1).encode())
    summary = summarise(runs, time.perf_counter() - started, quick, out, base.report) + summarise_encoders(extra, out)
    staged["summary"] = out / "summary.md"
    atomic_write(staged["summary"], summary.encode())
    if base.report:
        staged["report"] = out / REPORT  # staged with the set, just before it is committed
    partials = [run_folder.out / f"partial_{name}.npz" for name in [r.family for r in runs] + [r.name for r in extra]]
    paths = write_results([run.result for run in runs] + [run.result for run in extra], run_folder, finished=partials,
                          stage=stage_report if base.report else None)  # fmt: skip
    paths.update({kind: run_folder.final(path) for kind, path in staged.items()})
    for run in runs:
        run.figure = run_folder.final(run.figure)
    return runs, paths


def faithfulness_of(adapter, evaluated, count: int, config: DictConfig, name: str) -> FaithfulnessResult | None:
    """The perturbation test of the maps on the first ``count`` evaluated examples (None for 0)."""
    if count <= 0:
        return None
    started = time.perf_counter()
    data = Subset(evaluated.base, evaluated.indices[:count])
    result = perturbation_test(adapter, data, batch_size=config.sweep.batch_size, eval_batch_size=config.sweep.eval_batch_size,
                               seed=config.sweep.seed, bootstrap=config.sweep.bootstrap, name=name)  # fmt: skip
    result.extra["wall_time_s"] = time.perf_counter() - started
    return result


def _faithfulness_lines(test: FaithfulnessResult | None) -> list[str]:
    """The summary's section on the perturbation test of one subject."""
    if test is None:
        return []
    return [
        "### Are the relevance maps faithful? (perturbation test)", "",
        f"{len(test.example_ids)} of the evaluated examples; {test.unit} removed in the order of each map's relevance "
        "for the unpruned model's answer, at fractions 0…0.9 of them (docs/method.md, ‘Faithfulness of relevance "
        "maps’); AUC of accuracy as above, with its 95 % bootstrap interval; random: a seeded random order. "
        f"Test time: {test.extra.get('wall_time_s', 0):.0f} s.", "",
        *faithfulness_table(test), "",
    ]  # fmt: skip


def subject_provenance(config: DictConfig, subject: Subject) -> dict:
    """Provenance of one easy-VQA model's sweep: its cached folder, the splits, the seeds."""
    data = {"name": "easy_vqa", "split": config.data.split, "score_split": config.data.score_split}
    seeds = {"data": config.data.seed, "random_method": config.sweep.seed, "training": config.train.seed}
    return run_provenance(subject.adapter.family, subject.folder, data, seeds)


def _auc_table(result: SweepResult, units: Sequence[str]) -> list[str]:
    lines = [
        "| method | unit | positive, per-example | negative, per-example | positive, global | negative, global |",
        "|---|---|---|---|---|---|",
    ]
    table = {(c.method, c.unit, c.order, c.protocol): with_interval(c.auc, c.auc_low, c.auc_high) for c in result.curves}
    for method in dict.fromkeys(c.method for c in result.curves):
        for unit in units:
            cells = [table.get((method, unit, o, p)) for p in ("per_example", "global") for o in ("positive", "negative")]
            lines.append(f"| {method} | {unit} | " + " | ".join("–" if v is None else v for v in cells) + " |")
    return lines + _uncertainty_lines(result)


def _uncertainty_lines(result: SweepResult) -> list[str]:
    """What the brackets are, the random band, and the best global ranking against random."""
    with_intervals = any(c.auc_low is not None for c in result.curves)
    lines = ["", "In brackets: 95 % bootstrap interval over the evaluated examples." if with_intervals else ""]
    bands = [c for c in result.curves if c.seed_auc]
    if bands:
        spans = "; ".join(f"{c.order}, {c.protocol}: {min(c.seed_auc):.1f}–{max(c.seed_auc):.1f}"
                          for c in bands if c.unit == "head")  # fmt: skip
        lines[-1] += f" The random rows are the first of {len(bands[0].seed_auc)} seeds; "
        lines[-1] += f"AUC over the seeds (head unit): {spans}."
    verdict = best_method(result)
    if verdict is not None:
        lines += ["", verdict.sentence("global protocol, negative order, head unit")]
    return lines


def _correlation_section(result: SweepResult, heading: str = "") -> list[str]:
    """The correlation table of a sweep run with ``sweep.correlation`` (nothing without one)."""
    if not result.correlations:
        return []
    return ([f"{heading}Which scores predict single-head ablation?", ""] if heading else []) + [
        *correlation_lines(result.correlations), ""]  # fmt: skip


def _removed_table(result: SweepResult, cells: Callable) -> list[str]:
    """A table of the global, negative-order curves by fraction removed: ``cells(curve)`` gives a
    row's cells beyond level 0 (None: no row for that curve)."""
    lines = ["| method | unit | " + " | ".join(f"{round(100 * level)}% removed" for level in result.levels[1:]) + " |",
             "|---|---|" + "---|" * (len(result.levels) - 1)]  # fmt: skip
    for c in result.curves:
        row = cells(c) if c.protocol == "global" and c.order == "negative" else None
        if row is not None:
            lines.append(f"| {c.method} | {c.unit} | " + " | ".join(row) + " |")
    return lines


def _perplexity_lines(result: SweepResult) -> list[str]:
    """A language-model sweep's perplexity under each global ranking, negative order (none without)."""
    measured = [c for c in result.curves if "perplexity" in c.metrics]
    if not measured:
        return []
    return ["", "Perplexity of the evaluated text under each global ranking (negative order), every given token "
            f"weighing the same (unpruned: {measured[0].metrics['perplexity'][0]:.2f}):", "",
            *_removed_table(result, lambda c: [f"{v:.2f}" for v in c.metrics["perplexity"][1:]] if c in measured else None)]


def summarise_encoders(runs: list[EncoderRun], out: Path) -> str:
    """The encoder subjects' part of ``summary.md``."""
    lines = []
    for run in runs:
        result, t = run.result, run.training
        unpruned = result.curves[0].accuracy[0]
        units = list(dict.fromkeys(c.unit for c in result.curves))  # SmolLM2: query heads and KV groups
        lines += [
            f"## {run.name}", "",
            f"{t['detail']}: test accuracy {t['test_accuracy']:.2f} % on {t['test_examples']} held-out examples "
            f"({t['train_examples']} for training, {t['train_wall_time_s']:.0f} s). Sweeps: {len(result.example_ids)} "
            f"held-out examples (unpruned accuracy {unpruned:.2f} %), global scores from {len(result.score_ids or [])} "
            f"training examples; levels {', '.join(f'{level:g}' for level in result.levels)}.", "",
            *_auc_table(result, units), "",
            "Share of the unpruned accuracy kept by each global ranking (negative order: least important first):", "",
            *_removed_table(result, lambda c: [f"{100 * a / unpruned:.1f} %" if unpruned else "–" for a in c.accuracy[1:]]),
        ]  # fmt: skip
        lines += _perplexity_lines(result)
        lines += ["", *_correlation_section(result)]
        lines += [f"![{run.name} curves](curves_{run.name}.png)", "", *_faithfulness_lines(run.faithfulness)]
        lines += [f"![{run.name} example]({path.relative_to(out).as_posix()})" for path in run.figures] + [""]
    return "\n".join(lines)


def summarise(runs: list[ModelRun], wall_time_s: float, quick: bool, out: Path, report: bool = False) -> str:
    """``summary.md``: the models, the AUC of every curve, the pointing game, an example
    (and, with ``report``, a link to ``report.html``)."""
    lines = ["# headlens demo: easy-VQA" + (" (quick mode: not a real result)" if quick else ""), ""]
    if report:
        lines += ["Explore the curves, head scores and explained examples in the interactive report: "
                  "[report.html](report.html) (one self-contained file; no network needed).", ""]  # fmt: skip
    lines += [
        "| model | test accuracy | image features zeroed | test questions | training steps | training time | |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        t = run.training
        lines.append(
            f"| {run.family} | {t['test_accuracy']:.2f} % | {t['zeroed_image_accuracy']:.2f} % | {t['test_questions']} "
            f"| {t['steps']} | {t['train_wall_time_s']:.0f} s ({t['threads']} threads) "
            f"| {'trained now' if run.trained_now else 'cached'} |"
        )
    lines += ["", f"Demo wall time: {wall_time_s:.0f} s.", ""]
    for run in runs:
        result = run.result
        lines += [
            f"## {run.family}",
            "",
            "### AUC of accuracy vs fraction pruned",
            "",
            f"{len(result.example_ids)} test questions; the global protocol ranks by scores averaged over "
            f"{len(result.score_ids or [])} training questions. AUC = trapz(accuracy/100, levels 0…0.9) × 100 "
            f"(90 = no loss). Unpruned accuracy on these questions: {result.curves[0].accuracy[0]:.2f} %.",
            "",
        ]
        lines += _auc_table(result, list(dict.fromkeys(c.unit for c in result.curves)))
        lines += ["", *_correlation_section(result, "### ")]
        lines += [
            f"![{run.family} curves](curves_{run.family}.png)",
            "",
            "### Does the relevance point at the shape?",
            "",
            "Heads ranked by `grad`, the least important pruned first; maps from the unpruned pass with the "
            "pruned heads zeroed in the head averages (the protocol of docs/method.md, ‘Pictures after pruning’). Each cell: pointing game (the top box covers "
            "part of the shape, %) / share of the positive box relevance on boxes covering the shape (%). "
            f"Boxes covering the shape: {run.pointing['chance']:.1f} % of all (a random box's hit rate).",
            "",
            *format_pointing(run.pointing),
            "",
            *_faithfulness_lines(run.faithfulness),
            f"![{run.family} example]({run.figure.relative_to(out).as_posix()})",
            "",
        ]
    return "\n".join(lines)
