"""One structured configuration schema, merged once: schema ← preset ← file ← overrides.

Unknown keys and wrong types are errors that name the key (OmegaConf struct
mode), never warnings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Optional, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import InputError, check_choices, one_line
from .adapters import FAMILIES
from .adapters.configs import DEFAULT_LAYERS
from .masks import LEVELS, ORDERS, UNITS, check_levels
from .relevance import MAP_METHODS
from .scoring import ALIASES, METHODS
from .sweep import PROTOCOLS


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
    position: int = -1  # language-model data: which given token (index, negative from the end) is the score target


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
    faithfulness_examples: int = 100  # evaluated examples in the perturbation test of the maps (0: none)
    faithfulness_minilm_examples: int = 24  # the same for MiniLM (a real model: 90 forwards per article)
    smollm2_levels: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.25, 0.5])  # SmolLM2's query heads / KV groups


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
    random_seeds: int = 1  # random rankings with seeds seed … seed+random_seeds-1, shown as a band
    bootstrap: int = 1000  # resamples of the 95 % bootstrap intervals over examples (0: none)
    iterative: bool = False  # re-score before each level with the pruned heads gated off (Michel et al. 2019)
    correlation: int = 0  # examples for the Spearman table of each first-order method against exact (0: none)
    target: Optional[str] = None  # predicted | label: the logit scores differentiate (None: label for language-model data, else predicted)
    resume: bool = True  # keep partial results in <out_dir>/partial*.npz and resume from them
    checkpoint_every: int = 256  # examples between two saves of the partial results


@dataclass
class ExportConfig:
    method: str = "taylor"  # ranks heads by this method's scores averaged over the scoring split
    fraction: float = 0.5  # of the heads (or layers) removed
    order: str = "negative"  # negative: remove the least important first
    unit: str = "head"  # head | layer | kv_group
    compress: Optional[str] = None  # kwon: Fisher search, rearrangement and tuning; ranked: `method`'s ranking, tuned
    calibration: int = 256  # kwon: unlabelled examples from the scoring split for the gradients and the tuning
    tune: bool = True  # kwon: least-squares scales of the kept heads, folded into the output projections
    offsets: bool = True  # kwon: tune a bias offset per site with the scales (headlens' extension; false: as Kwon et al.)
    fisher: str = "predicted"  # kwon: predicted (cross-entropy against the own answer) | expected (over every answer)


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
    # true: load an MMF checkpoint that pickles more than weights and MMF's config. This runs
    # whatever code the file holds: only for files you trust.
    trust_pickle: bool = False
    report: bool = True  # write <out_dir>/report.html (and the explained examples it shows)


#: datasets ``data.name`` can name.
DATASETS = ("synthetic", "easy_vqa", "text")
EASY_VQA_SPLITS = ("train", "test")


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
        layers.append(yaml_layer(file))
    if overrides:
        layers.append(("command line", lambda: OmegaConf.from_dotlist(list(overrides))))
    return validate(merge_layers(config, layers))


def yaml_layer(file: str | Path, key: str | None = None) -> tuple[str, Callable]:
    """A YAML file of config keys as a layer for :func:`merge_layers` (``key``: the option that named it)."""
    path = Path(file).expanduser()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" + (f" (key '{key}')" if key else ""))

    def load():
        loaded = OmegaConf.load(path)
        if not isinstance(loaded, DictConfig):
            raise ConfigError(f"{path}: expected a YAML mapping of config keys (e.g. `sweep: {{methods: [grad]}}`), "
                              f"got a {type(loaded).__name__}")  # fmt: skip
        return loaded

    return str(path), load


def merge_layers(config: DictConfig, layers: Sequence[tuple[str, Callable]]) -> DictConfig:
    """``config`` with each ``(source, make)`` layer merged over it in order; a key the schema lacks
    or a wrong type is a :class:`ConfigError` naming the source and the key."""
    for source, make in layers:
        try:
            config = OmegaConf.merge(config, make())
        except OmegaConfBaseException as error:
            raise ConfigError(f"{source}: {describe_error(error)}") from None
        except (yaml.YAMLError, UnicodeDecodeError) as error:  # a config file that is not YAML text
            raise ConfigError(f"{source}: not a YAML mapping of config keys ({one_line(error)})") from None
    return config


def validate(config: DictConfig) -> DictConfig:
    """Check values that the schema's types cannot: names from fixed lists, level ranges, counts."""
    methods = list(METHODS) + list(ALIASES)
    choices = {
        "model.family": ([config.model.family], list(FAMILIES) + ["auto"]),
        "data.name": ([config.data.name], DATASETS),
        "sweep.methods": (config.sweep.methods, methods),
        "sweep.orders": (config.sweep.orders, ORDERS),
        "sweep.units": (config.sweep.units, UNITS),
        "sweep.protocols": (config.sweep.protocols, PROTOCOLS),
        "sweep.eval_dtype": ([config.sweep.eval_dtype], [None, "bfloat16", "float16"]),
        "sweep.lrp_dtype": ([config.sweep.lrp_dtype], ["float32", "float64"]),
        "sweep.target": ([config.sweep.target], [None, "predicted", "label"]),
        "export.method": ([config.export.method], methods),
        "export.order": ([config.export.order], ORDERS),
        "export.unit": ([config.export.unit], UNITS),
        "export.compress": ([config.export.compress], [None, "kwon", "ranked"]),
        "export.fisher": ([config.export.fisher], ["predicted", "expected"]),
        "demo.families": (config.demo.families, list(DEFAULT_LAYERS)),  # the families the demo trains
        "viz.method": ([config.viz.method], list(MAP_METHODS)),
    }
    if config.data.name == "easy_vqa":
        choices |= {"data.split": ([config.data.split], EASY_VQA_SPLITS),
                    "data.score_split": ([config.data.score_split], EASY_VQA_SPLITS)}  # fmt: skip
    for key, (values, valid) in choices.items():
        check_choices(values, valid, f"key '{key}'", ConfigError)
    if not 0 <= config.export.fraction < 1:
        raise ConfigError(f"key 'export.fraction': must be in [0, 1), got {config.export.fraction}")
    for key in ("sweep.levels", "viz.levels", "demo.minilm_levels", "demo.smollm2_levels"):
        check_levels(OmegaConf.select(config, key), f"key '{key}'", ConfigError)
    _check_ranges(config)
    return config


#: keys whose value must be at least the number given (counts, sizes, steps).
MINIMUM = {
    "sweep.batch_size": 1, "sweep.eval_batch_size": 1, "sweep.checkpoint_every": 1, "sweep.correlation": 0, "data.num_examples": 1,
    "data.score_examples": 0, "data.max_length": 2, "data.grid": 1, "train.steps": 1, "train.batch_size": 1,
    "demo.encoder_examples": 1, "demo.test_questions": 1, "viz.examples": 1, "viz.scale": 1, "model.arch.hidden": 1,
    "model.arch.heads": 1, "model.arch.intermediate": 1, "export.calibration": 1,
}  # fmt: skip
#: keys whose value must lie in [low, high] (None: unbounded), with the reason when it is not obvious.
BETWEEN = {
    "train.lr": (0.0, None), "train.warmup": (0.0, 1.0), "train.weight_decay": (0.0, None), "train.clip": (0.0, None),
    "model.arch.init_range": (0.0, None),
}  # fmt: skip


def _check_ranges(config: DictConfig) -> None:
    for key, least in MINIMUM.items():
        value = OmegaConf.select(config, key)
        if value is not None and value < least:
            raise ConfigError(f"key '{key}': must be at least {least}, got {value}")
    for key, (low, high) in BETWEEN.items():
        value = OmegaConf.select(config, key)
        if (low is not None and not value >= low) or (high is not None and not value <= high):
            bounds = f"at least {low}" if high is None else f"in [{low}, {high}]"
            raise ConfigError(f"key '{key}': must be {bounds}, got {value}")
    arch = config.model.arch
    if arch.hidden % arch.heads:
        raise ConfigError(f"key 'model.arch.heads': {arch.heads} heads do not divide model.arch.hidden = {arch.hidden}")
    bad = {name: count for name, count in arch.layers.items() if count < 1}
    if bad:
        raise ConfigError(f"key 'model.arch.layers': every layer count must be at least 1, got {bad}")
    if "global" in config.sweep.protocols and config.data.score_examples < 1 and config.data.name != "synthetic":
        raise ConfigError("key 'data.score_examples': the global protocol needs at least 1 scoring example "
                          "(or leave 'global' out of sweep.protocols)")  # fmt: skip


def describe_error(error: OmegaConfBaseException) -> str:
    """An OmegaConf error in one line, naming the key when it has one."""
    key = getattr(error, "full_key", None)
    message = str(error).splitlines()[0]
    return f"key '{key}': {message}" if key else message
