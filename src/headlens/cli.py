"""The ``headlens`` console command: thin subcommands over the library."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from .config import ConfigError, load_config, presets
from .errors import ArgumentParser, run_command


def _config_args(parser: argparse.ArgumentParser, preset: bool = True) -> None:
    if preset:
        parser.add_argument("--preset", help=f"a shipped preset: {', '.join(presets())}")
    parser.add_argument("--config", dest="file", help="a YAML file with config keys")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. sweep.batch_size=8")


def _cmd_sites(args) -> int:
    from .adapters import adapter_for
    from .models import load_model
    from .pipeline import require_model_path

    config = load_config(args.overrides, args.preset, args.file)
    require_model_path(config)
    adapter = adapter_for(load_model(config.model.family, config.model.path, config.model.seed, progress=config.progress,
                                     trust_pickle=config.trust_pickle))  # fmt: skip
    print(f"{adapter.family}: {adapter.num_sites} sites × {adapter.num_heads} heads = "
          f"{adapter.num_sites * adapter.num_heads} heads")  # fmt: skip
    for index, site in enumerate(adapter.sites):
        print(f"{index:3d}  {site.name:<16} {site.query:>5}×{site.key:<5}  {site.module} (call {site.call})")
    return 0


def _cmd_methods(args) -> int:
    from .scoring import ALIASES, METHODS

    for method in METHODS.values():
        print(f"{method.name:<8} {method.summary}")
    for alias, name in ALIASES.items():
        print(f"{alias:<8} alias of {name}")
    return 0


def _cmd_sweep(args) -> int:
    from .pipeline import format_curves, run_sweep

    config = load_config(args.overrides, args.preset, args.file)
    result, paths = run_sweep(config)
    if not paths:  # not rank 0 of a torchrun group
        return 0
    print(format_curves(result))
    print(f"{len(result.example_ids)} examples, {result.wall_time_s:.1f} s; wrote " + ", ".join(map(str, paths.values())))
    return 0


def _cmd_train(args) -> int:
    from .files import writable_folder
    from .subjects.easy_vqa import train_subject

    config = load_config(args.overrides, args.preset, args.file)
    if config.data.name != "easy_vqa":
        raise ConfigError(f"key 'data.name': headlens train trains on easy_vqa, not {config.data.name!r}")
    folder = writable_folder(config.out_dir) / "model"  # checked before the minutes of training
    report = train_subject(config, folder, test_questions=config.demo.test_questions, progress=config.progress)
    print(
        f"{report.family}: test accuracy {report.test_accuracy:.2f} % on {report.test_questions} questions "
        f"({report.zeroed_image_accuracy:.2f} % with image features zeroed); {report.steps} steps in "
        f"{report.train_wall_time_s:.0f} s; saved to {folder}"
    )
    return 0


def _cmd_prune(args) -> int:
    overrides = [f"model.path={args.model}", "model.family=auto", "data.name=text", f"data.file={args.data}",
                 "out_dir=runs/prune", *args.overrides]  # fmt: skip
    args.overrides, args.preset = overrides, None
    return _cmd_sweep(args)


def _cmd_export(args) -> int:
    import json
    from pathlib import Path

    from .export import export
    from .files import writable_folder
    from .pipeline import load_model_and_data
    from .masks import head_masks
    from .sweep import global_scores

    config = load_config(args.overrides + _compress_overrides(args), args.preset, args.file)
    e = config.export
    writable_folder(config.out_dir)  # before any work
    if e.compress in ("kwon", "ranked"):
        from .compress.command import export_compression

        return export_compression(config)
    adapter, _, scoring = load_model_and_data(config)
    scores, _, _ = global_scores(adapter, scoring, [e.method], config.sweep.batch_size, config.sweep.seed,
                                 config.sweep.lrp_dtype, config.progress)  # fmt: skip
    keep = head_masks(scores[e.method], [e.fraction], e.order, e.unit, adapter.count_rule, adapter.kv_heads)[0]
    folder = Path(config.out_dir) / "model_pruned"
    report = export(adapter.model, keep, folder)
    print(json.dumps(report, indent=1))
    print(f"wrote {folder} (load it with headlens.models.load_model({adapter.family!r}, {str(folder)!r}))")
    return 0


def _compress_overrides(args) -> list[str]:
    """``--compress``, ``--budget``, ``--calibration``, ``--tune/--no-tune`` as ``export.*`` overrides."""
    flags = {"compress": args.compress, "fraction": args.budget, "calibration": args.calibration, "tune": args.tune,
             "offsets": args.offsets}  # fmt: skip
    return [f"export.{key}={str(value).lower() if isinstance(value, bool) else value}"
            for key, value in flags.items() if value is not None]  # fmt: skip


def _compress_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compress", choices=["kwon", "ranked"], help="retraining-free compression (Kwon et al. "
                        "2022): kwon: Fisher mask search, rearrangement, least-squares tuning; ranked: export.method's "
                        "global ranking, then the same tuning (export.compress)")
    parser.add_argument("--budget", type=float, help="fraction of the heads removed (export.fraction)")
    parser.add_argument("--calibration", type=int, metavar="N",
                        help="unlabelled examples of the scoring split for --compress (export.calibration)")
    parser.add_argument("--tune", action=argparse.BooleanOptionalAction, default=None,
                        help="least-squares scales of the kept heads, folded into the export (export.tune)")
    parser.add_argument("--offsets", action=argparse.BooleanOptionalAction, default=None,
                        help="tune a bias offset per site with the scales (export.offsets; default on)")


def _cmd_demo(args) -> int:
    from .demo import run_demo

    runs, paths = run_demo(args.overrides, quick=args.quick, file=args.file)
    print(paths["summary"].read_text())
    print("wrote " + ", ".join(map(str, paths.values())))
    return 0


def _cmd_visualize(args) -> int:
    from .demo import run_visualize

    written = run_visualize(args.overrides, quick=args.quick, file=args.file)
    for family, examples in written.items():
        for paths in examples:
            print(f"{family}: {paths['figure'].parent}")
    return 0


def _cmd_report(args) -> int:
    from .report import write_report

    path = write_report(args.run_dir)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): open it in a browser, no network needed")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="headlens",
        description="Score the attention heads of a Transformer by explanation methods and prune them.",
        epilog="An error in what you give (a file, a key, a value) is one line on stderr and exit code 2; "
        "--debug (or HEADLENS_DEBUG=1) shows its traceback.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of input errors")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, run, help: str, presets: bool = True, quick: str | None = None):
        sub = commands.add_parser(name, help=help)
        if quick:
            sub.add_argument("--quick", action="store_true", help=quick)
        if presets:
            _config_args(sub, preset=not quick)
        sub.set_defaults(run=run)
        return sub

    command("demo", _cmd_demo, "train tiny LXMERT and VisualBERT on easy-VQA (once, cached) and run every sweep; "
            "with headlens[encoders], MiniLM on BBC News and a ViT on digits too",
            quick="a few training steps and questions: a pipeline check")
    command("visualize", _cmd_visualize,
            "relevance maps after pruning 0/40/60/90 %% of heads, drawn for a few easy-VQA questions",
            quick="use (and train if needed) the quick demo models")
    command("sweep", _cmd_sweep, "pruning sweeps; writes results.json, curves.csv, curves.png")
    command("train", _cmd_train, "train a model on easy-VQA; saves it to <out_dir>/model")
    prune = commands.add_parser(
        "prune", help="pruning sweeps of your own text classifier on your own labelled texts (CSV or JSONL)"
    )
    prune.add_argument("--model", required=True, help="an HF folder of a BERT-family sequence classifier or a causal LM")
    prune.add_argument("--data", required=True, help="CSV or JSONL with `text` and `label` columns; for a causal LM, "
                       "a text file (one prompt per line) or JSONL with `prompt` (and `continuation`)")  # fmt: skip
    _config_args(prune, preset=False)
    prune.set_defaults(run=_cmd_prune)
    _compress_args(command("export", _cmd_export, "remove the heads a global ranking (or --compress kwon) prunes; "
                           "writes <out_dir>/model_pruned"))  # fmt: skip
    report = commands.add_parser("report", help="write RUN_DIR/report.html, one self-contained interactive page, "
                                 "from the run's files")  # fmt: skip
    report.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by headlens sweep, prune, demo or visualize")
    report.set_defaults(run=_cmd_report)
    command("sites", _cmd_sites, "list a model's attention sites in ranking order")
    command("methods", _cmd_methods, "list the scoring methods", presets=False)
    from . import download

    fetch = commands.add_parser("download", help="fetch the public checkpoints and data of the VQA v2 experiments")
    download.configure_parser(fetch)
    fetch.set_defaults(run=download.run)
    # ``key=value`` overrides may sit anywhere among the options (argparse alone takes only the
    # first run of them as the positional list and calls the rest unrecognised).
    args, extra = parser.parse_known_args(argv)
    strays = [a for a in extra if a.startswith("-") or "=" not in a or not hasattr(args, "overrides")]
    if strays:
        parser.error(f"unrecognized arguments: {' '.join(strays)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    if args.debug:
        os.environ["HEADLENS_DEBUG"] = "1"
    return run_command(f"headlens {args.command}", lambda: args.run(args))


if __name__ == "__main__":
    sys.exit(main())
