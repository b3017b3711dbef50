"""One structured configuration schema, merged once: schema ← preset ← file ← overrides.

Unknown keys and wrong types are errors that name the key (OmegaConf struct
mode), never warnings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import InputError
from .prune import LEVELS


@dataclass
class ArchConfig:
    """Size of a model trained from scratch (the easy-VQA subjects)."""

    hidden: int = 64
    heads: int = 4
    intermediate: int = 128
    init_range: float = 0.1  # HF's 0.02 suits width 768; ~1/sqrt(width) trains tiny models far faster
    layers: dict[str, int] = field(default_factory=dict)  # lxmert: language/cross/vision; visual_bert: layers


@dataclass
class ModelConfig:
    family: str = "lxmert"  # lxmert | visual_bert | bert | vit | auto (whatever model.path holds)
    path: Optional[str] = None  # HF id or local folder; None = a tiny random-init model (smoke runs)
    seed: int = 0  # initialisation seed of a tiny random model
    arch: ArchConfig = field(default_factory=ArchConfig)


@dataclass
class DataConfig:
    name: str = "synthetic"  # synthetic (random questions labelled by the unpruned model) | easy_vqa | text
    num_examples: int = 64  # evaluated examples: the first N of a seeded permutation of the split
    score_examples: int = 64  # scoring split of the global protocol (disjoint from the evaluated one)
    seed: int = 1234
    split: str = "test"  # easy_vqa: the evaluated split
    score_split: str = "train"  # easy_vqa: the global protocol's scoring split
    grid: int = 4  # easy_vqa: regions per image side
    file: Optional[str] = None  # text: a CSV or JSONL file of labelled texts
    text_column: str = "text"  # text: the column holding the texts
    label_column: str = "label"  # text: the column holding the labels (indices or class names)
    max_length: int = 128  # text: tokens per text (longer texts are truncated)
    tokenizer: Optional[str] = None  # text: tokenizer folder (default: the model's)


@dataclass
class TrainConfig:
    steps: int = 2500
    batch_size: int = 64
    lr: float = 3e-4
    warmup: float = 0.05  # fraction of the steps
    weight_decay: float = 0.01
    clip: float = 1.0
    seed: int = 0


@dataclass
class DemoConfig:
    families: list[str] = field(default_factory=lambda: ["lxmert", "visual_bert"])
    cache_dir: str = "~/.cache/headlens"  # trained models, keyed by a hash of their training settings
    test_questions: Optional[int] = None  # test questions used to report each model's accuracy (None: all)
    encoders: bool = True  # add MiniLM/BBC News and ViT/digits when headlens[encoders] is installed
    encoder_examples: int = 120  # held-out articles / digits evaluated (and training ones scored) per encoder
    minilm_levels: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 0.9])


@dataclass
class VizConfig:
    examples: int = 2  # test questions drawn (seeded by data.seed)
    levels: list[float] = field(default_factory=lambda: [0.0, 0.4, 0.6, 0.9])  # fractions of heads pruned
    method: str = "ours"  # relevance-map method: ours | lrp | rollout | raw
    scale: int = 4  # easy-VQA images are 64×64: enlarge the pictures this many times


@dataclass
class SweepConfig:
    methods: list[str] = field(default_factory=lambda: ["grad", "lrp", "taylor", "entropy", "random"])
    orders: list[str] = field(default_factory=lambda: ["positive", "negative"])
    units: list[str] = field(default_factory=lambda: ["head", "layer"])
    protocols: list[str] = field(default_factory=lambda: ["per_example", "global"])
    levels: list[float] = field(default_factory=lambda: list(LEVELS))
    batch_size: int = 16  # examples per capture (forward + backward)
    eval_batch_size: int = 256  # rows per masked forward pass
    eval_dtype: Optional[str] = None  # bfloat16 | float16: masked evaluation under autocast (scores stay fp32)
    lrp_dtype: str = "float32"  # float32 | float64: precision of the LRP passes (lrp, attnlrp), op by op
    seed: int = 0  # seed of the random method
    resume: bool = True  # keep partial results in <out_dir>/partial*.npz and resume from them
    checkpoint_every: int = 256  # examples between two saves of the partial results


@dataclass
class ExportConfig:
    method: str = "taylor"  # ranks heads by this method's scores averaged over the scoring split
    fraction: float = 0.5  # of the heads (or layers) removed
    order: str = "negative"  # negative: remove the least important first
    unit: str = "head"  # head | layer


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    viz: VizConfig = field(default_factory=VizConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    out_dir: str = "runs/sweep"
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N
    progress: bool = True


#: datasets ``data.name`` can name.
DATASETS = ("synthetic", "easy_vqa", "text")


class ConfigError(InputError):
    """A configuration that does not fit the schema; the message names the key."""


def presets() -> list[str]:
    """Names of the presets shipped with headlens."""
    folder = resources.files("headlens") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_config(
    overrides: Sequence[str] = (), preset: str | Sequence[str] | None = None, file: str | Path | None = None
) -> DictConfig:
    """The merged configuration: schema ← preset(s), in order ← YAML file ← ``key=value`` overrides."""
    config = OmegaConf.structured(Config)
    layers = []
    for name in [preset] if isinstance(preset, str) else list(preset or []):
        if name not in presets():
            raise ConfigError(f"unknown preset {name!r}; valid: {', '.join(presets())}")
        text = (resources.files("headlens") / "presets" / f"{name}.yaml").read_text()
        layers.append((f"preset {name}", lambda text=text: OmegaConf.create(text)))
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        layers.append((str(path), lambda: OmegaConf.load(path)))
    if overrides:
        layers.append(("command line", lambda: OmegaConf.from_dotlist(list(overrides))))
    for source, make in layers:
        try:
            config = OmegaConf.merge(config, make())
        except OmegaConfBaseException as error:
            raise ConfigError(f"{source}: {describe_error(error)}") from None
    return validate(config)


def validate(config: DictConfig) -> DictConfig:
    """Check values that the schema's types cannot: names from fixed lists, level ranges."""
    from .adapters import ADAPTERS
    from .prune import ORDERS, UNITS
    from .scoring import ALIASES, METHODS
    from .sweep import PROTOCOLS

    choices = {
        "model.family": ([config.model.family], list(ADAPTERS) + ["auto"]),
        "sweep.methods": (config.sweep.methods, list(METHODS) + list(ALIASES)),
        "sweep.orders": (config.sweep.orders, ORDERS),
        "sweep.units": (config.sweep.units, UNITS),
        "sweep.protocols": (config.sweep.protocols, PROTOCOLS),
        "export.method": ([config.export.method], list(METHODS) + list(ALIASES)),
        "export.order": ([config.export.order], ORDERS),
        "export.unit": ([config.export.unit], UNITS),
    }
    for key, (values, valid) in choices.items():
        wrong = [v for v in values if v not in valid]
        if wrong or not values:
            raise ConfigError(f"key '{key}': {list(values)} is not a non-empty choice of {', '.join(valid)}")
    if not 0 <= config.export.fraction < 1:
        raise ConfigError(f"key 'export.fraction': must be in [0, 1), got {config.export.fraction}")
    if not all(0 <= level < 1 for level in config.sweep.levels):
        raise ConfigError(f"key 'sweep.levels': every level must be in [0, 1), got {list(config.sweep.levels)}")
    wrong = [f for f in config.demo.families if f not in ADAPTERS]
    if wrong:
        raise ConfigError(f"key 'demo.families': {wrong} are not model families; valid: {', '.join(ADAPTERS)}")
    from .relevance import MAP_METHODS

    if config.viz.method not in MAP_METHODS:
        raise ConfigError(f"key 'viz.method': {config.viz.method!r} is not one of {', '.join(MAP_METHODS)}")
    if config.data.name not in DATASETS:
        raise ConfigError(f"key 'data.name': unknown dataset {config.data.name!r}; valid: {', '.join(DATASETS)}")
    if config.sweep.eval_dtype not in (None, "bfloat16", "float16"):
        raise ConfigError(f"key 'sweep.eval_dtype': {config.sweep.eval_dtype!r} is not one of null, bfloat16, float16")
    if config.sweep.lrp_dtype not in ("float32", "float64"):
        raise ConfigError(f"key 'sweep.lrp_dtype': {config.sweep.lrp_dtype!r} is not one of float32, float64")
    for key in ("sweep.batch_size", "sweep.eval_batch_size", "data.num_examples", "train.steps", "train.batch_size"):
        if OmegaConf.select(config, key) < 1:
            raise ConfigError(f"key '{key}': must be at least 1")
    return config


def describe_error(error: OmegaConfBaseException) -> str:
    """An OmegaConf error in one line, naming the key when it has one."""
    key = getattr(error, "full_key", None)
    message = str(error).splitlines()[0]
    return f"key '{key}': {message}" if key else message


def error_line(error: BaseException) -> str:
    """The message of an error a command reports in one line (a KeyError's without its quotes)."""
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
