"""Tiny LXMERT and VisualBERT trained on easy-VQA: train, save, load, cache.

A trained model is an ordinary HF folder (``save_pretrained``) holding also the
tokenizer, ``answers.txt`` (one answer per line, in class order), ``features.json``
(how images become region features) and ``training.json`` (what training reached).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ..adapters import Adapter, adapter_for
from ..adapters.configs import make_config, new_model
from ..devices import resolve_device
from ..models import from_folder, hf_progress_bars
from ..data.batch import sample
from ..data.easy_vqa import EasyVQA, FeatureSpec, Split, answer_list, build_tokenizer, load_split
from ..files import atomic_folder
from ..train import accuracy_on, fit

#: fields of the configuration that decide what a trained model is (its cache key).
TRAINING_KEYS = ("model.family", "model.arch", "train", "data.grid")


@dataclass
class TrainingReport:
    family: str
    test_accuracy: float  # VQA accuracy ×100 on the evaluated test questions
    zeroed_image_accuracy: float  # the same with every visual feature set to 0
    test_questions: int
    steps: int
    train_wall_time_s: float
    final_loss: float
    threads: int


@dataclass
class Subject:
    """A loaded easy-VQA model: its adapter, tokenizer, answers and feature spec."""

    adapter: Adapter
    tokenizer: object
    answers: list[str]
    spec: FeatureSpec
    folder: Path

    def dataset(self, split: Split):
        """The split's questions as batches for this model."""
        return self.adapter.examples(EasyVQA(split, self.tokenizer, self.spec, self.answers))

    @property
    def report(self) -> dict:
        return json.loads((self.folder / "training.json").read_text())


def fingerprint(config: DictConfig) -> str:
    """A short hash of everything that decides the trained model."""
    parts = {}
    for key in TRAINING_KEYS:
        value = OmegaConf.select(config, key)
        parts[key] = OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:10]


def cached_folder(config: DictConfig, cache_dir: str | os.PathLike) -> Path:
    return Path(cache_dir).expanduser() / f"easy-vqa-{config.model.family}-{fingerprint(config)}"


def train_subject(
    config: DictConfig,
    out_dir: str | os.PathLike,
    splits: dict[str, Split] | None = None,
    test_questions: int | None = None,
    progress: bool = True,
) -> TrainingReport:
    """Train the model ``config`` describes on easy-VQA train and save it to ``out_dir``.

    The folder is written under a temporary name and renamed when complete, so a
    folder that exists holds a whole model. ``test_questions`` limits the
    questions used to measure test accuracy (all of them by default).
    """
    splits = splits or {}
    train_split = splits.get("train") or load_split("train")
    test_split = splits.get("test") or load_split("test")
    family = config.model.family
    tokenizer = build_tokenizer(train_split.questions)
    answers = answer_list()
    spec = FeatureSpec.fit(train_split.region_features(config.data.grid)[0], config.data.grid)
    arch = config.model.arch
    hf_config = make_config(
        family, vocab_size=len(tokenizer), feature_dim=len(spec.mean), n_answers=len(answers),
        hidden=arch.hidden, heads=arch.heads, layers=dict(arch.layers), intermediate=arch.intermediate,
        init_range=arch.init_range,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)
        model = new_model(family, hf_config)
    adapter = adapter_for(model.to(resolve_device(config.device)))
    t = config.train
    fitted = fit(
        adapter, EasyVQA(train_split, tokenizer, spec, answers),
        steps=t.steps, batch_size=t.batch_size, lr=t.lr, warmup=t.warmup, weight_decay=t.weight_decay,
        clip=t.clip, seed=t.seed, progress=progress,
    )  # fmt: skip
    test = EasyVQA(test_split, tokenizer, spec, answers)
    if test_questions is not None and test_questions < len(test):
        test = sample(test, test_questions, seed=0)
    report = TrainingReport(
        family=family,
        test_accuracy=accuracy_on(adapter, test),
        zeroed_image_accuracy=accuracy_on(adapter, test, zero_image=True),
        test_questions=len(test),
        steps=t.steps,
        train_wall_time_s=fitted.wall_time_s,
        final_loss=fitted.losses[-1],
        threads=torch.get_num_threads(),
    )
    with atomic_folder(out_dir) as staging:
        with hf_progress_bars(progress):
            model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        spec.save(staging)
        (staging / "answers.txt").write_text("\n".join(answers) + "\n")
        record = {"report": asdict(report), "config": OmegaConf.to_container(config, resolve=True)}
        (staging / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    return report


def load_subject(folder: str | os.PathLike, device: torch.device | str = "cpu", progress: bool = True) -> Subject:
    """Load a model folder written by :func:`train_subject`."""
    from transformers import AutoTokenizer

    folder = Path(folder).expanduser()
    for name in ("config.json", "answers.txt", "features.json", "training.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not a trained easy-VQA model: {name} is missing")
    model = from_folder(folder, progress).to(device)
    answers = [a for a in (folder / "answers.txt").read_text().splitlines() if a]
    return Subject(adapter_for(model), AutoTokenizer.from_pretrained(folder), answers, FeatureSpec.load(folder), folder)
