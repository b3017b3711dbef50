"""From a configuration to result files: load the model and data, sweep, write."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from .adapters import Adapter, adapter_for, load_model
from .config import ConfigError
from .data.batch import Examples, Subset, sample
from .data.synthetic import SyntheticVQA
from .results import write_results
from .sweep import SweepResult, sweep

DATASETS = ("synthetic",)


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; anything else as torch spells it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"key 'device': {error}") from None


def build_data(config: DictConfig, adapter: Adapter) -> tuple[Examples, Examples]:
    """The evaluated examples and the global protocol's scoring split (disjoint)."""
    if config.data.name == "synthetic":
        pool = SyntheticVQA(
            adapter, config.data.num_examples + config.data.score_examples, seed=config.data.seed, labels="model"
        )
        order = sample(pool, None, config.data.seed).indices
        n = config.data.num_examples
        return Subset(pool, order[:n]), Subset(pool, order[n:])
    raise ConfigError(f"key 'data.name': unknown dataset {config.data.name!r}; valid: {', '.join(DATASETS)}")


def run_sweep(config: DictConfig) -> tuple[SweepResult, dict[str, Path]]:
    """Run the sweep a configuration describes and write its files to ``config.out_dir``."""
    device = resolve_device(config.device)
    model = load_model(config.model.family, config.model.path, config.model.seed).to(device)
    adapter = adapter_for(model)
    data, score_data = build_data(config, adapter)
    s = config.sweep
    result = sweep(
        adapter, data,
        methods=list(s.methods), orders=list(s.orders), units=list(s.units), protocols=list(s.protocols),
        score_data=score_data, levels=list(s.levels), batch_size=s.batch_size,
        eval_batch_size=s.eval_batch_size, seed=s.seed, progress=config.progress,
        config=OmegaConf.to_container(config, resolve=True),
    )  # fmt: skip
    return result, write_results(result, config.out_dir)


def format_curves(result: SweepResult) -> str:
    """A plain-text table: accuracy per level and AUC for each curve."""
    header = "  ".join(f"{100 * level:5.0f}%" for level in result.levels)
    lines = [f"{'method/unit/order/protocol':<38}{header}    AUC"]
    for c in result.curves:
        values = "  ".join(f"{a:6.2f}" for a in c.accuracy)
        lines.append(f"{c.method + '/' + c.unit + '/' + c.order + '/' + c.protocol:<38}{values}  {c.auc:6.2f}")
    return "\n".join(lines)
