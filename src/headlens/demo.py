"""``headlens demo``: the whole analysis on easy-VQA, on a laptop CPU.

For each model family: train a tiny model on easy-VQA unless a cached copy
exists, then run head and layer pruning with every scoring method, both orders
and both protocols on a fixed seeded sample of test questions (the global
protocol ranks by scores averaged over a sample of training questions), and
write the result files, one curve plot per model and ``summary.md``.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from .config import ConfigError, load_config
from .data.batch import sample
from .data.easy_vqa import load_split
from .pipeline import resolve_device
from .results import _atomic_write, write_results
from .subjects.easy_vqa import cached_folder, load_subject, train_subject
from .sweep import SweepResult, sweep


@dataclass
class ModelRun:
    family: str
    folder: Path
    trained_now: bool
    training: dict  # the model's training.json "report"
    result: SweepResult


def family_config(family: str, overrides: Sequence[str], quick: bool, file=None) -> DictConfig:
    """schema ← easy-vqa-<family> ← demo ← (demo-quick) ← file ← overrides."""
    presets = [f"easy-vqa-{family}", "demo"] + (["demo-quick"] if quick else [])
    return load_config(overrides, presets, file)


def run_demo(overrides: Sequence[str] = (), quick: bool = False, file=None) -> tuple[list[ModelRun], dict]:
    """Run the demo; returns the per-model runs and the paths written."""
    started = time.perf_counter()
    base = family_config("lxmert", overrides, quick, file)
    splits = {}
    runs = []
    for family in base.demo.families:
        config = family_config(family, overrides, quick, file)
        if config.data.name != "easy_vqa":
            raise ConfigError(f"key 'data.name': the demo runs on easy_vqa, not {config.data.name!r}")
        folder = cached_folder(config, config.demo.cache_dir)
        trained_now = not (folder / "training.json").is_file()
        if trained_now:
            splits = splits or {name: load_split(name) for name in ("train", "test")}
            print(f"[demo] training {family} on easy-VQA → {folder}", flush=True)
            train_subject(config, folder, splits, test_questions=config.demo.test_questions, progress=config.progress)
        subject = load_subject(folder, resolve_device(config.device), progress=config.progress)
        splits = splits or {name: load_split(name) for name in ("train", "test")}
        evaluated = sample(subject.dataset(splits[config.data.split]), config.data.num_examples, config.data.seed)
        scoring = sample(subject.dataset(splits[config.data.score_split]), config.data.score_examples, config.data.seed)
        s = config.sweep
        result = sweep(
            subject.adapter, evaluated, score_data=scoring,
            methods=list(s.methods), orders=list(s.orders), units=list(s.units), protocols=list(s.protocols),
            levels=list(s.levels), batch_size=s.batch_size, eval_batch_size=s.eval_batch_size, seed=s.seed,
            progress=config.progress, config=OmegaConf.to_container(config, resolve=True),
        )  # fmt: skip
        runs.append(ModelRun(family, folder, trained_now, subject.report["report"], result))
    out = Path(base.out_dir)
    paths = write_results([run.result for run in runs], out)
    for run in runs:
        paths[f"png_{run.family}"] = _save_figure(run.result, out / f"curves_{run.family}.png")
    wall = time.perf_counter() - started
    summary = summarise(runs, wall, quick)
    _atomic_write(out / "summary.md", summary.encode())
    paths["summary"] = out / "summary.md"
    return runs, paths


def _save_figure(result: SweepResult, path: Path) -> Path:
    from .viz.curves import plot_curves

    import matplotlib.pyplot as plt

    figure = plot_curves(result.curves, title=f"{result.model} on easy-VQA")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    _atomic_write(path, buffer.getvalue())
    return path


def summarise(runs: list[ModelRun], wall_time_s: float, quick: bool) -> str:
    """``summary.md``: the models, then the AUC of every curve."""
    lines = ["# headlens demo: easy-VQA" + (" (quick mode: not a real result)" if quick else ""), ""]
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
            f"## {run.family}: AUC of accuracy vs fraction pruned",
            "",
            f"{len(result.example_ids)} test questions; the global protocol ranks by scores averaged over "
            f"{len(result.score_ids or [])} training questions. AUC = trapz(accuracy/100, levels 0…0.9) × 100 "
            f"(90 = no loss). Unpruned accuracy on these questions: {result.curves[0].accuracy[0]:.2f} %.",
            "",
            "| method | unit | positive, per-example | negative, per-example | positive, global | negative, global |",
            "|---|---|---|---|---|---|",
        ]
        table: dict[tuple, float] = {
            (c.method, c.unit, c.order, c.protocol): c.auc for c in result.curves
        }
        for method in dict.fromkeys(c.method for c in result.curves):
            for unit in dict.fromkeys(c.unit for c in result.curves):
                cells = [
                    table.get((method, unit, order, protocol))
                    for protocol in ("per_example", "global")
                    for order in ("positive", "negative")
                ]
                lines.append(
                    f"| {method} | {unit} | " + " | ".join("–" if v is None else f"{v:.1f}" for v in cells) + " |"
                )
        lines += ["", f"![{run.family} curves](curves_{run.family}.png)", ""]
    return "\n".join(lines)
