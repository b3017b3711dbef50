"""Tiny random-init LXMERT and VisualBERT models and batches, and the quick demo's runs, shared by the tests."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from headlens.adapters import adapter_for
from headlens.data.batch import Batch
from headlens.models import load_model
from headlens.pipeline import synthetic_for

import real_formats as rf

ROOT = Path(__file__).resolve().parents[1]

FAMILIES = ("lxmert", "visual_bert")


def tiny_adapter(family: str, dtype=torch.float32, seed: int = 0):
    model = load_model(family, None, seed=seed).to(dtype).eval()
    return adapter_for(model)


#: random questions with random boxes for an adapter's model (``labels="model"``: its own answers).
synthetic = synthetic_for


def tiny_batch(adapter, size: int = 6, seed: int = 0, dtype=None, labels: str = "random") -> Batch:
    """A batch whose questions have different lengths (so text is padded) and, for
    VisualBERT, some padded box slots; in the model's precision (``dtype`` is the model's)."""
    return synthetic(adapter, size, seed, labels).collate(range(size))


def hooks_left(model: torch.nn.Module) -> list[str]:
    """Names of submodules that still carry any forward or backward hook."""
    left = []
    for name, module in model.named_modules():
        for attr in ("_forward_pre_hooks", "_forward_hooks", "_backward_hooks", "_backward_pre_hooks"):
            if getattr(module, attr, None):
                left.append(f"{name or '<root>'}.{attr}")
    return left


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


@dataclass
class DemoRun:
    """One run of ``headlens demo --quick``: its arguments, exit code, output folder, cache and printout."""

    args: list
    code: int
    out: Path
    cache: Path
    printed: str


def _quick_demo(root: Path, *extra: str) -> DemoRun:
    from headlens.cli import main

    out, cache = root / "out", root / "cache"
    args = ["demo", "--quick", f"demo.cache_dir={cache}", f"out_dir={out}", "progress=false", *extra]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(args)
    return DemoRun(args, code, out, cache, printed.getvalue())


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory) -> DemoRun:
    """The quick demo of LXMERT and VisualBERT (no encoders), trained and run once per session:
    the demo's test and the report's browser test read the same run."""
    return _quick_demo(tmp_path_factory.mktemp("quick-demo"), "demo.encoders=false")


@pytest.fixture(scope="session")
def quick_demo_encoders(tmp_path_factory, request) -> DemoRun:
    """The quick demo of LXMERT with the encoder subjects (MiniLM/BBC News, ViT/digits; SmolLM2 on
    BBC News when its extra is installed, reading the session's converted model), once per session."""
    from headlens.subjects import smollm2
    from headlens.subjects.encoders import available

    if not all(available().values()):
        pytest.skip("needs headlens[encoders] (MiniLM, BBC News, scikit-learn)")
    root = tmp_path_factory.mktemp("quick-demo-encoders")
    if smollm2.available():  # the demo's cache holds the session's conversion: no second one
        converted = smollm2.default_folder(request.getfixturevalue("smollm2_cache"))
        (root / "cache").mkdir()
        (root / "cache" / converted.name).symlink_to(converted, target_is_directory=True)
    return _quick_demo(root, "demo.families=[lxmert]")


@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory) -> Path:
    """A headlens cache holding SmolLM2-135M-Instruct converted from its GGUF file, converted once
    per session (about a minute) and shared by every test that needs the real model."""
    from headlens.subjects import smollm2

    if not smollm2.available():
        pytest.skip(f"needs SmolLM2: {smollm2.EXTRA}")
    cache = tmp_path_factory.mktemp("smollm2-cache")
    smollm2.convert(smollm2.default_folder(cache), progress=False)
    return cache


@pytest.fixture
def mmf_data_dir(tmp_path):
    data_dir = rf.mmf_data(tmp_path / "data")
    (data_dir / "models").mkdir()
    rf.mmf_archive(data_dir / "models/visual_bert.finetuned.vqa2.from_coco_train.tar.gz", rf.mmf_model())
    rf.tokenizer_folder(data_dir / "models/bert-base-uncased")
    rf.coco_images(data_dir / "datasets/coco/subset_val/images/val2014")
    return data_dir


def mmf_args(data_dir: Path, out: Path, trainer: str, *extra: str) -> list[str]:
    return [
        f"config={ROOT / 'projects/visual_bert/configs/vqa2/defaults.yaml'}", "model=visual_bert", "dataset=vqa2",
        "run_type=val", "checkpoint.resume_zoo=visual_bert.finetuned.vqa2.from_coco_train",
        f"env.data_dir={data_dir}", "training.num_workers=0", "training.batch_size=3", f"training.trainer={trainer}",
        "training.seed=1234", f"prune.COCO_path={data_dir}/datasets/coco/subset_val/images/val2014",
        f"out_dir={out}", "progress=false", *extra,
    ]  # fmt: skip
