"""From a configuration to result files: load the model and data, sweep, write."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from . import parallel
from .adapters import Adapter, adapter_for
from .models import load_model
from .config import ConfigError
from .data.batch import Examples, Subset, sample
from .data.synthetic import SyntheticVQA
from .results import write_results
from .sweep import SweepResult, sweep


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; anything else as torch spells it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"key 'device': {error}") from None


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
        adapter = adapter_for(load_model(config.model.family, config.model.path, config.model.seed).to(device))
        pool = SyntheticVQA(adapter, data.num_examples + data.score_examples, seed=data.seed, labels="model")
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
    evaluated = sample(subject.dataset(load_split(data.split)), data.num_examples, data.seed)
    scoring = sample(subject.dataset(load_split(data.score_split)), data.score_examples, data.seed)
    return subject.adapter, evaluated, scoring


def _text_data(config: DictConfig, device: torch.device) -> tuple[Adapter, Examples, Examples]:
    """A text classifier and its labelled texts: a seeded permutation, the first
    ``data.score_examples`` for the global protocol's scores, the next ``data.num_examples`` evaluated."""
    from .data.text import TextExamples, label_indices, model_label_names, read_table
    from .models import load_tokenizer

    data = config.data
    require_model_path(config)
    if data.file is None:
        raise ConfigError("key 'data.file': the text data set needs a CSV or JSONL file of texts and labels")
    adapter = adapter_for(load_model(config.model.family, config.model.path, progress=config.progress).to(device))
    texts, labels, ids = read_table(data.file, data.text_column, data.label_column)
    indices = label_indices(labels, model_label_names(adapter), adapter.num_answers, str(data.file))
    tokenizer = load_tokenizer(data.tokenizer or config.model.path)
    examples = TextExamples(texts, indices, ids, tokenizer, adapter, data.max_length)
    order = sample(examples, None, data.seed).indices
    scoring, evaluated = order[: data.score_examples], order[data.score_examples : data.score_examples + data.num_examples]
    if not evaluated:
        raise ConfigError(f"key 'data.num_examples': {data.file} has {len(order)} rows, all taken by data.score_examples")
    return adapter, Subset(examples, evaluated), Subset(examples, scoring)


def sweep_options(config: DictConfig, checkpoint: Path | None) -> dict:
    """The keyword arguments of :func:`headlens.sweep` that a configuration's ``sweep`` section sets."""
    s = config.sweep
    return dict(
        methods=list(s.methods), orders=list(s.orders), units=list(s.units), protocols=list(s.protocols),
        levels=list(s.levels), batch_size=s.batch_size, eval_batch_size=s.eval_batch_size,
        eval_dtype=s.eval_dtype, lrp_dtype=s.lrp_dtype, seed=s.seed, progress=config.progress,
        checkpoint=checkpoint if s.resume else None, checkpoint_every=s.checkpoint_every,
        config=OmegaConf.to_container(config, resolve=True),
    )  # fmt: skip


def run_sweep(config: DictConfig) -> tuple[SweepResult, dict[str, Path]]:
    """Run the sweep a configuration describes and write its files to ``config.out_dir``.

    Under ``torchrun`` every process computes its share and rank 0 writes the files.
    """
    with parallel.process_group_from_env(config.device) as device:
        adapter, data, score_data = load_model_and_data(config, device)
        out = Path(config.out_dir)
        result = sweep(adapter, data, score_data=score_data, **sweep_options(config, out / "partial.npz"))
        paths = write_results(result, out) if parallel.world()[0] == 0 else {}
    return result, paths


def format_curves(result: SweepResult) -> str:
    """A plain-text table: accuracy per level and AUC for each curve."""
    header = "  ".join(f"{100 * level:5.0f}%" for level in result.levels)
    lines = [f"{'method/unit/order/protocol':<38}{header}    AUC"]
    for c in result.curves:
        values = "  ".join(f"{a:6.2f}" for a in c.accuracy)
        lines.append(f"{c.method + '/' + c.unit + '/' + c.order + '/' + c.protocol:<38}{values}  {c.auc:6.2f}")
    return "\n".join(lines)
