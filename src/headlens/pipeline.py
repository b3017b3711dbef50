"""From a configuration to result files: load the model and data, sweep, write."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from . import parallel
from .adapters import Adapter, adapter_for
from .models import load_model
from .config import ConfigError
from .devices import resolve_device
from .data.batch import Examples, Subset, sample
from .data.synthetic import SyntheticVQA
from .evaluate import LabelledByModel
from .errors import notice
from .files import RunFolder
from .provenance import config_provenance
from .report import FILE_NAME as REPORT, stage_report
from .resume import Checkpoint
from .results import write_results
from .sweep import SweepOptions, SweepResult, sweep


def synthetic_for(adapter: Adapter, size: int, seed: int = 0, labels: str = "random", **sizes):
    """Random questions and boxes sized for ``adapter``'s model, as its batches. ``labels``:
    ``random``, or ``model`` — the unpruned model's own answers (see :class:`LabelledByModel`).
    ``sizes``: ``max_len`` and ``boxes`` of :class:`~headlens.data.synthetic.SyntheticVQA`."""
    if labels not in ("random", "model"):
        raise ValueError(f"labels must be 'random' or 'model', got {labels!r}")
    examples = adapter.examples(SyntheticVQA(size, vocab_size=adapter.model.config.vocab_size,
                                             feature_dim=adapter.feature_dim, n_answers=adapter.num_answers,
                                             seed=seed, **sizes))  # fmt: skip
    return LabelledByModel(examples, adapter) if labels == "model" else examples


def require_model_path(config: DictConfig) -> None:
    """easy-VQA and text data need a trained model folder: without ``model.path`` there is
    no model to use (a tiny random one would not read that data)."""
    if config.model.path is not None:
        return
    if config.data.name == "easy_vqa":
        raise ConfigError(
            "key 'model.path': easy_vqa needs a trained model folder; make one with "
            f"`headlens train --preset easy-vqa-{config.model.family}` (or run `headlens demo`)"
        )
    if config.data.name == "text":
        raise ConfigError("key 'model.path': the text data set needs a fine-tuned classifier (and data.file)")


def load_model_and_data(config: DictConfig, device: torch.device | None = None) -> tuple[Adapter, Examples, Examples]:
    """The model's adapter, the evaluated examples and the global protocol's scoring split."""
    device = device or resolve_device(config.device)
    data = config.data
    if data.name == "synthetic":
        adapter = adapter_for(load_model(config.model.family, config.model.path, config.model.seed,
                                         trust_pickle=config.trust_pickle).to(device))  # fmt: skip
        pool = synthetic_for(adapter, data.num_examples + data.score_examples, data.seed, labels="model")
        order = sample(pool, None, data.seed).indices
        return adapter, Subset(pool, order[: data.num_examples]), Subset(pool, order[data.num_examples :])
    if data.name == "text":
        return _text_data(config, device)
    # easy_vqa: a model folder written by `headlens train` / `headlens demo`
    from .data.easy_vqa import load_split
    from .subjects.easy_vqa import load_subject

    require_model_path(config)
    subject = load_subject(config.model.path, device, progress=config.progress)
    if subject.adapter.family != config.model.family:
        raise ConfigError(f"key 'model.family': {config.model.path} holds a {subject.adapter.family} model")
    evaluated = take(subject.dataset(load_split(data.split)), data.num_examples, data.seed, "data.num_examples")
    scoring = take(subject.dataset(load_split(data.score_split)), data.score_examples, data.seed, "data.score_examples")
    return subject.adapter, evaluated, scoring


def _text_data(config: DictConfig, device: torch.device) -> tuple[Adapter, Examples, Examples]:
    """A text classifier and its labelled texts: a seeded permutation, the first
    ``data.score_examples`` for the global protocol's scores, the next ``data.num_examples`` evaluated."""
    from .data.text import TextExamples, label_indices, read_table
    from .models import load_tokenizer

    data = config.data
    require_model_path(config)
    if data.file is None:
        raise ConfigError("key 'data.file': the text data set needs a CSV or JSONL file of texts and labels")
    model = load_model(config.model.family, config.model.path, progress=config.progress, trust_pickle=config.trust_pickle)
    adapter = adapter_for(model.to(device))
    if adapter.family_table.causal:  # a language model: prompts (and continuations), not labelled texts
        from .lm import language_model_examples

        return adapter, *split_examples(language_model_examples(config, adapter), config)
    texts, labels, ids = read_table(data.file, data.text_column, data.label_column)
    indices = label_indices(labels, adapter.class_names, adapter.num_answers, str(data.file))
    tokenizer = load_tokenizer(data.tokenizer or config.model.path, model=adapter.model)
    longest = adapter.max_text_tokens
    if longest is not None and data.max_length > longest:
        raise ConfigError(f"key 'data.max_length': {data.max_length} tokens, but the model's position embeddings "
                          f"cover {longest}; give data.max_length={longest} or less")  # fmt: skip
    examples = adapter.examples(TextExamples(texts, indices, ids, tokenizer, adapter.num_answers, data.max_length))
    return adapter, *split_examples(examples, config)


def split_examples(examples: Examples, config: DictConfig) -> tuple[Subset, Subset]:
    """``(evaluated, scoring)`` of a file's examples: a seeded permutation, the first
    ``data.score_examples`` for the global protocol's scores, the next ``data.num_examples`` evaluated."""
    data = config.data
    order = sample(examples, None, data.seed).indices
    scoring, evaluated = order[: data.score_examples], order[data.score_examples : data.score_examples + data.num_examples]
    if not evaluated:
        raise ConfigError(f"key 'data.num_examples': {data.file} has {len(order)} rows, all taken by data.score_examples")
    if len(evaluated) < data.num_examples:
        notice(f"data.num_examples={data.num_examples}, but {data.file} has {len(evaluated)} rows beyond the "
               f"{len(scoring)} of data.score_examples: evaluating {len(evaluated)}")  # fmt: skip
    return Subset(examples, evaluated), Subset(examples, scoring)


def sweep_options(config: DictConfig, checkpoint: Path | None) -> SweepOptions:
    """The :class:`~headlens.sweep.SweepOptions` a configuration's ``sweep`` section (and ``progress``) sets."""
    s = config.sweep
    return SweepOptions(
        methods=list(s.methods), orders=list(s.orders), units=list(s.units), protocols=list(s.protocols),
        levels=list(s.levels), batch_size=s.batch_size, eval_batch_size=s.eval_batch_size,
        eval_dtype=s.eval_dtype, lrp_dtype=s.lrp_dtype, seed=s.seed, random_seeds=s.random_seeds,
        bootstrap=s.bootstrap, iterative=s.iterative, correlation=s.correlation, target=s.target or "predicted",
        progress=config.progress,
        checkpoint=checkpoint if s.resume else None, checkpoint_every=s.checkpoint_every,
        config=OmegaConf.to_container(config, resolve=True),
    )  # fmt: skip


def language_model_options(options: SweepOptions, config: DictConfig) -> SweepOptions:
    """A sweep of language-model data: its perplexity and next-token metrics at every level
    (:mod:`headlens.lm`), the score target ``sweep.target`` (default ``label``: the given token,
    teacher forcing), no partial results."""
    from .lm import LanguageModelMetric

    return replace(options, metric=LanguageModelMetric(), checkpoint=None, target=config.sweep.target or "label")


def run_sweep(config: DictConfig) -> tuple[SweepResult, dict[str, Path]]:
    """Run the sweep a configuration describes and write its files to ``config.out_dir``
    (with ``report.html`` unless ``config.report`` is false).

    Under ``torchrun`` every process computes its share and rank 0 writes the files.
    """
    with parallel.process_group_from_env(config.device) as device:
        rank, world = parallel.world()
        out = Path(config.out_dir)
        run = RunFolder(out) if rank == 0 else None  # an unwritable out_dir fails before any work
        adapter, data, score_data = load_model_and_data(config, device)
        partial = out / "partial.npz"
        options = sweep_options(config, partial)
        if adapter.family_table.causal:
            options = language_model_options(options, config)
        result = sweep(adapter, data, score_data, options)
        paths = {}
        if run:  # rank 0 writes the set
            result.provenance = config_provenance(config, adapter.family)
            stage = stage_report if config.report else None
            paths = write_results(result, run, finished=Checkpoint.all_paths(partial, world), stage=stage)
            if config.report:
                paths["report"] = run.out / REPORT
    return result, paths


def take(examples: Examples, n: int | None, seed: int, key: str) -> Subset:
    """The first ``n`` of a seeded permutation (:func:`headlens.data.batch.sample`), saying so
    when the data holds fewer than the ``key`` asks for."""
    chosen = sample(examples, n, seed)
    if n is not None and len(chosen) < n:
        notice(f"{key}={n}, but the data has {len(chosen)} examples: using all {len(chosen)}")
    return chosen


def format_curves(result: SweepResult) -> str:
    """A plain-text table: accuracy per level and AUC for each curve."""
    header = "  ".join(f"{100 * level:5.0f}%" for level in result.levels)
    lines = [f"{'method/unit/order/protocol':<38}{header}    AUC"]
    for c in result.curves:
        values = "  ".join(f"{a:6.2f}" for a in c.accuracy)
        lines.append(f"{c.method + '/' + c.unit + '/' + c.order + '/' + c.protocol:<38}{values}  {c.auc:6.2f}")
    return "\n".join(lines)
