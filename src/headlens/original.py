"""The original's command lines, on headlens (as the original README gives them).

* ``python run.py config=… model=visual_bert dataset=vqa2 run_type=val checkpoint.resume_zoo=…
  env.data_dir=… training.trainer=mmf_head_prun|mmf_layer_prun|mmf_exp training.seed=…
  training.batch_size=… prune.num_of_examples=… prune.is_grad=… prune.positive_prune=…
  prune.COCO_path=…`` — :func:`run_mmf`: OmegaConf overrides on one structured schema (an
  unknown or mistyped key is an error naming it); ``training.batch_size`` is honoured.
* ``python lxmert/lxmert/perturbation.py --COCO_path … --method ours|lrp
  [--is-positive-pert True] --num-samples … --prune_type head|layer --seed …`` —
  :func:`run_lxmert_perturbation` (``--is-positive-pert False`` means negative);
* ``python lxmert/lxmert/generate_visualization.py --COCO_path … --num-samples … --seed …`` —
  :func:`run_lxmert_visualization`.

Both write the result files and pictures of headlens and print the per-level
accuracies as the original did. Where the original differs from correct behaviour,
the correct one is the default and the quirk an explicit option.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from omegaconf import OmegaConf

from .config import ConfigError, describe_error, merge_layers, yaml_layer
from .adapters import adapter_for
from .errors import ArgumentParser, at_least, run_command
from .files import RunFolder
from .provenance import run_provenance
from .pipeline import take

TRAINERS = {"mmf_head_prun": "head", "mmf_layer_prun": "layer", "mmf_exp": None}


# --- run.py: the MMF / VisualBERT experiments -----------------------------------------------
@dataclass
class EnvSection:
    # None: headlens' data folder, where `headlens download` puts the files (MMF's layout under it)
    data_dir: Optional[str] = None


@dataclass
class TrainingSection:
    trainer: str = "mmf_head_prun"  # mmf_head_prun | mmf_layer_prun | mmf_exp
    seed: int = 1234
    batch_size: int = 16  # examples per capture; the original forced 1
    num_workers: int = 0  # accepted for the original command; data is read in the main process


@dataclass
class CheckpointSection:
    resume_zoo: str = "visual_bert.finetuned.vqa2.from_coco_train"
    resume_file: Optional[str] = None  # a checkpoint file or folder instead of the zoo key


@dataclass
class PruneSection:
    num_of_examples: int = 10000
    is_grad: bool = True  # True: gradient × attention ("ours"); False: LRP
    positive_prune: bool = False  # True: most important first
    COCO_path: Optional[str] = None  # COCO val2014 images, for mmf_exp pictures
    divide_by_requested: bool = False  # quirk: divide by num_of_examples, not the examples processed
    unk_in_argmax: bool = False  # quirk: let the argmax pick <unk> (MMF's metric does not)


@dataclass
class PathsSection:
    """Where the data is; defaults follow MMF's layout under ``env.data_dir``."""

    imdb: str = "${env.data_dir}/datasets/vqa2/defaults/annotations/imdb_val2014.npy"
    features: str = "${env.data_dir}/datasets/coco/defaults/features/trainval2014.lmdb"
    answers: str = "${env.data_dir}/datasets/vqa2/defaults/extras/vocabs/answers_vqa.txt"
    tokenizer: str = "bert-base-uncased"


@dataclass
class RunConfig:
    config: Optional[str] = None  # a YAML file of this schema's keys, merged first (the original's project config)
    model: str = "visual_bert"
    dataset: str = "vqa2"
    run_type: str = "val"
    env: EnvSection = field(default_factory=EnvSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    prune: PruneSection = field(default_factory=PruneSection)
    paths: PathsSection = field(default_factory=PathsSection)
    out_dir: Optional[str] = None  # default runs/<trainer>-<grad|lrp>-<positive|negative>
    device: str = "auto"
    progress: bool = True
    # true: load a checkpoint, imdb .npy or LMDB that pickles more than plain data. This runs
    # whatever code the files hold: only for files you trust.
    trust_pickle: bool = False
    report: bool = True  # write <out_dir>/report.html (headlens.report); false: the result files and pictures only


def mmf_config(argv: Sequence[str]):
    """:class:`RunConfig` ← the ``config=`` YAML file (the run's defaults in the original's keys,
    e.g. ``projects/visual_bert/configs/vqa2/defaults.yaml``) ← ``key=value`` arguments; an
    unknown or mistyped key is an error naming the file (or the command line) and the key."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        overrides = OmegaConf.from_dotlist(list(argv))
    except OmegaConfBaseException as error:
        raise ConfigError(describe_error(error)) from None
    file = overrides.get("config") if isinstance(overrides.get("config"), str) else None
    layers = ([yaml_layer(file, "config")] if file else []) + [("command line", lambda: overrides)]
    config = merge_layers(OmegaConf.structured(RunConfig), layers)
    if config.env.data_dir is None:  # the paths.* interpolations resolve lazily, so they see this
        from .paths import data_dir

        config.env.data_dir = str(data_dir())
    checks = {"model": ("visual_bert",), "dataset": ("vqa2",), "run_type": ("val",), "training.trainer": tuple(TRAINERS)}
    for key, valid in checks.items():
        if OmegaConf.select(config, key) not in valid:
            raise ConfigError(f"key '{key}': {OmegaConf.select(config, key)!r} is not supported; valid: {', '.join(valid)}")
    for key, least in {"prune.num_of_examples": 1, "training.batch_size": 1, "training.num_workers": 0,
                       "training.seed": 0}.items():  # fmt: skip
        if OmegaConf.select(config, key) < least:
            raise ConfigError(f"key '{key}': must be at least {least}, got {OmegaConf.select(config, key)}")
    return config


def run_mmf(argv: Sequence[str]) -> int:
    """``run.py``: head or layer pruning (``mmf_head_prun``/``mmf_layer_prun``) or pictures (``mmf_exp``)."""
    from .data.regions import LmdbFeatures
    from .data.vqa import read_answers_vqa, read_mmf_imdb
    from .models import load_model, load_tokenizer
    from .devices import resolve_device

    config = mmf_config(argv)
    data_dir, prune, training = Path(config.env.data_dir).expanduser(), config.prune, config.training
    method = "grad" if prune.is_grad else "lrp"
    order = "positive" if prune.positive_prune else "negative"
    run = RunFolder(config.out_dir or f"runs/{training.trainer}-{method}-{order}")  # writable, before any work
    checkpoint = config.checkpoint.resume_file or config.checkpoint.resume_zoo
    trust = config.trust_pickle
    model = load_model("visual_bert", checkpoint, folder=data_dir, progress=config.progress, trust_pickle=trust)
    model = model.to(resolve_device(config.device))
    answers = read_answers_vqa(config.paths.answers)
    # MMF's metric leaves <unk> out of the argmax; the original's pruning loop did not (a quirk)
    exclude = () if prune.unk_in_argmax else (answers.index("<unk>"),) if "<unk>" in answers else ()
    adapter = adapter_for(model, exclude_answers=exclude)
    questions = read_mmf_imdb(config.paths.imdb, answers, trust_pickle=trust)
    data = _region_examples(
        adapter, answers, config.paths.answers, questions, LmdbFeatures(config.paths.features, trust_pickle=trust),
        load_tokenizer(config.paths.tokenizer, data_dir, model), slots=100, max_length=128, images=prune.COCO_path,
    )  # fmt: skip
    chosen = take(data, prune.num_of_examples, training.seed, "prune.num_of_examples")
    settings = OmegaConf.to_container(config, resolve=True)
    paths = config.paths
    origin = run_provenance("visual_bert", checkpoint, {"imdb": paths.imdb, "features": paths.features,
                            "answers": paths.answers, "images": prune.COCO_path}, {"sample": training.seed}, data_dir)  # fmt: skip
    if TRAINERS[training.trainer] is None:
        return _pictures(adapter, chosen, answers, data.tokenizer, run, training.batch_size, config.report, origin)
    divisor = prune.num_of_examples if prune.divide_by_requested else None
    return _sweep_and_report(
        adapter, chosen, method, order, TRAINERS[training.trainer], training.batch_size, run, settings,
        divisor, config.progress, config.report, origin,
    )  # fmt: skip


# --- lxmert/lxmert/*.py ----------------------------------------------------------------------
def _true_or_false(text: str) -> bool:
    """``True``/``False`` as words (the original's ``type=bool`` made 'False' true)."""
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def lxmert_parser(description: str) -> argparse.ArgumentParser:
    from .paths import data_dir

    lxmert = data_dir() / "lxmert"
    parser = ArgumentParser(description=description)
    parser.add_argument("--COCO_path", default=None, help="COCO val2014 images (needed for pictures)")
    parser.add_argument("--num-samples", type=at_least(1), default=10000, help="questions: the first N of a seeded permutation")
    parser.add_argument("--seed", type=at_least(0), default=1234)
    parser.add_argument("--batch-size", type=at_least(1), default=16, help="examples per capture (the original ran 1)")
    parser.add_argument("--valid", default=_first("data/vqa/valid.json", lxmert / "vqa/valid.json"))
    parser.add_argument("--label2ans", default=_first("data/vqa/trainval_label2ans.json", lxmert / "vqa/trainval_label2ans.json"))
    parser.add_argument("--features", default=_first("data/mscoco_imgfeat/val2014_obj36.tsv",
                                                      lxmert / "mscoco_imgfeat/val2014_obj36.tsv"),
                        help="LXMERT's *_obj36.tsv, or a folder of <img_id>.npz")  # fmt: skip
    parser.add_argument("--model", default="unc-nlp/lxmert-vqa-uncased",
                        help="checkpoint: HF id or folder; its weights load as safetensors or with "
                             "torch.load(weights_only=True), which runs no code from the file (no LXMERT input "
                             "is a pickle that needs more, so there is no --trust-pickle)")  # fmt: skip
    parser.add_argument("--tokenizer", default="unc-nlp/lxmert-base-uncased")
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-report", action="store_true", help="do not write <out-dir>/report.html")
    return parser


def _first(*candidates) -> str:
    """The first candidate path that exists (else the first): the original's layout, then ours."""
    for candidate in candidates:
        if Path(candidate).expanduser().exists():
            return str(candidate)
    return str(candidates[0])


def _lxmert_data(args):
    from .data.regions import NpzFolder, Obj36TSV
    from .data.vqa import read_label2ans, read_lxmert_questions
    from .models import load_model, load_tokenizer
    from .devices import resolve_device

    model = load_model("lxmert", args.model, progress=not args.no_progress)
    adapter = adapter_for(model.to(resolve_device(args.device)))
    answers = read_label2ans(args.label2ans)
    features = NpzFolder(args.features) if Path(args.features).is_dir() else Obj36TSV(args.features)
    data = _region_examples(
        adapter, answers, args.label2ans, read_lxmert_questions(args.valid, answers), features,
        load_tokenizer(args.tokenizer, model=model), max_length=20, images=args.COCO_path,
    )  # fmt: skip
    origin = run_provenance("lxmert", args.model, {"questions": args.valid, "answers": args.label2ans,
                            "features": args.features, "images": args.COCO_path}, {"sample": args.seed})  # fmt: skip
    return adapter, answers, take(data, args.num_samples, args.seed, "--num-samples"), origin


def run_lxmert_perturbation(argv: Sequence[str]) -> int:
    """``lxmert/lxmert/perturbation.py``: head or layer pruning of LXMERT, ranked by ours or LRP."""
    parser = lxmert_parser("Prune LXMERT's heads or layers in score order and measure VQA accuracy.")
    parser.add_argument("--method", choices=["ours", "lrp"], default="ours")
    parser.add_argument("--is-positive-pert", type=_true_or_false, default=False, metavar="True|False",
                        help="True: prune the most important first; False (default): the least")  # fmt: skip
    parser.add_argument("--prune_type", choices=["head", "layer"], default="head")
    args = parser.parse_args(argv)
    method = "grad" if args.method == "ours" else "lrp"
    order = "positive" if args.is_positive_pert else "negative"
    run = RunFolder(args.out_dir or f"runs/lxmert-{args.prune_type}-{args.method}-{order}")
    adapter, _, chosen, origin = _lxmert_data(args)
    return _sweep_and_report(
        adapter, chosen, method, order, args.prune_type, args.batch_size, run, vars(args), None, not args.no_progress,
        not args.no_report, origin,
    )  # fmt: skip


def run_lxmert_visualization(argv: Sequence[str]) -> int:
    """``lxmert/lxmert/generate_visualization.py``: maps after pruning 0/40/60/90 % of the heads."""
    parser = lxmert_parser("Relevance maps of LXMERT after pruning the least important heads.")
    parser.set_defaults(num_samples=2)
    args = parser.parse_args(argv)
    run = RunFolder(args.out_dir or "runs/lxmert-visualization")
    adapter, answers, chosen, origin = _lxmert_data(args)
    return _pictures(adapter, chosen, answers, chosen.base.tokenizer, run, args.batch_size, not args.no_report, origin)


# --- shared -----------------------------------------------------------------------------------
def _region_examples(adapter, answers, answers_file, questions, features, tokenizer, **options):
    """Questions over region features as batches for ``adapter``'s model, whose answer count must
    be the answer list's."""
    from .data.vqa import RegionVQA

    adapter.expect_answers(len(answers), str(answers_file))
    return adapter.examples(RegionVQA(questions, features, tokenizer, len(answers), **options))


def _sweep_and_report(adapter, chosen, method, order, unit, batch_size, run, settings, divisor, progress,
                      report: bool = True, provenance: dict | None = None):  # fmt: skip
    from .report import stage_report
    from .results import write_results
    from .sweep import sweep

    partial = run.out / "partial.npz"
    result = sweep(
        adapter, chosen, methods=[method], orders=[order], units=[unit], protocols=["per_example"],
        batch_size=batch_size, accuracy_divisor=divisor, progress=progress,
        checkpoint=partial, config={"settings": settings},
    )  # fmt: skip
    result.provenance = provenance or {}
    paths = write_results(result, run, finished=[partial], stage=stage_report if report else None)
    curve = result.curves[0]
    print(f"{adapter.family} {unit} pruning, {method}, {order}: {len(result.example_ids)} examples")
    print("levels:", [round(level, 1) for level in curve.levels])
    print("pruned:", curve.pruned)
    print("accuracy:", [round(a, 2) for a in curve.accuracy])
    print(f"AUC: {curve.auc:.2f}; wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _pictures(adapter, chosen, answers, tokenizer, run, batch_size, report: bool = True,
              provenance: dict | None = None) -> int:  # fmt: skip
    from .report import stage_report
    from .visualize import Record, draw_examples

    if chosen.base.images is None:
        raise ConfigError("pictures need the COCO images: give the COCO_path of the original command")
    written = draw_examples(adapter, chosen, answers, tokenizer, run.stage("."), batch_size=batch_size,
                            record=Record(provenance=provenance) if report else None)  # fmt: skip
    folders = [paths["figure"].parent for paths in written]
    listing = {folder: sorted(p.name for p in folder.iterdir()) for folder in folders}
    document = {"runs": [], "pictures": [run.final(paths["figure"]).relative_to(run.out).as_posix() for paths in written]}
    if report:
        stage_report(run, document)
    run.commit(document)
    for folder, names in listing.items():
        print(f"{run.final(folder)}: {', '.join(names)}")
    return 0


def main(entry, argv: Sequence[str] | None = None) -> int:
    """Run a front end: an error in what the user gave becomes one line on stderr and exit code 2
    (``HEADLENS_DEBUG=1`` shows the traceback)."""
    prog = Path(sys.argv[0]).name if argv is None else entry.__name__
    return run_command(prog, lambda: entry(sys.argv[1:] if argv is None else argv))
