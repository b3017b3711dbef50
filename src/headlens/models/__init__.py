"""Loading models: tiny random ones, HF checkpoints (ids or folders), MMF checkpoints.

Nothing here reaches the network: a checkpoint named by id is looked for where
``headlens download`` puts it, then in the HuggingFace cache; when it is in neither,
the error names the places and the command that fetches it.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from ..adapters import adapter_class, adapter_for
from ..paths import data_dir
from .mmf_visual_bert import MMFVisualBertForQuestionAnswering
from .probe import BertMeanPoolClassifier

#: model classes defined by headlens, by the architecture name saved in config.json.
OWN_CLASSES = {cls.__name__: cls for cls in (MMFVisualBertForQuestionAnswering, BertMeanPoolClassifier)}

#: public checkpoints: name → (``headlens download`` resource, places under the data folder).
KNOWN = {
    "unc-nlp/lxmert-vqa-uncased": ("lxmert-vqa", ["models/unc-nlp/lxmert-vqa-uncased"]),
    "unc-nlp/lxmert-base-uncased": ("lxmert-tokenizer", ["models/unc-nlp/lxmert-base-uncased"]),
    "uclanlp/visualbert-vqa": ("visualbert-vqa", ["models/uclanlp/visualbert-vqa"]),
    "bert-base-uncased": ("bert-tokenizer", ["models/bert-base-uncased"]),
    "visual_bert.finetuned.vqa2.from_coco_train": ("mmf-visual-bert-vqa2", [
        "models/visual_bert.finetuned.vqa2.from_coco_train.tar.gz",  # as headlens download leaves it
        "models/visual_bert.finetuned.vqa2.from_coco_train",  # as MMF's zoo unpacks it
    ]),
}  # fmt: skip


def resolve(name: str, folder: str | Path | None = None) -> Path:
    """The local path of a checkpoint given as a path, a known name, or an HF id in the HF cache."""
    path = Path(name).expanduser()
    if path.exists():
        return path
    resource, relatives = KNOWN.get(name, (None, []))
    candidates = [Path(folder or data_dir()).expanduser() / relative for relative in relatives]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    cached = _hf_cache(name)
    if cached is not None:
        return cached
    looked = ", ".join([f"no file or folder {path}"] + [f"nor {c}" for c in candidates] + ["nor in the HuggingFace cache"])
    if resource:
        from ..download import hint

        fetch = f"; fetch it with `{hint(resource, candidates[0])}`"
    else:
        fetch = ""
    raise FileNotFoundError(f"checkpoint {name!r} not found: {looked}{fetch}")


def _hf_cache(repo: str) -> Path | None:
    if repo.count("/") > 1 or repo.startswith((".", "/", "~")):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("config.json", "tokenizer_config.json", "vocab.txt"):
            found = try_to_load_from_cache(repo, filename)
            if isinstance(found, str):
                return Path(found).parent
    except Exception:  # an id the hub library refuses is simply not cached
        return None
    return None


@contextmanager
def hf_progress_bars(enabled: bool) -> Iterator[None]:
    """Show or hide transformers' own progress bars and load reports for the block."""
    from transformers.utils import logging as hf_logging

    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
    if not enabled:
        hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if bars else hf_logging.disable_progress_bar)()
        hf_logging.set_verbosity(verbosity)


def from_folder(location: str | Path, progress: bool = True) -> nn.Module:
    """An HF-format model folder (``config.json`` + weights), our own classes and models
    exported by ``headlens export`` (heads removed) included."""
    import transformers

    from ..export import CONFIG_KEY, WEIGHTS_FILE, prune_heads

    location = Path(location)
    settings = json.loads((location / "config.json").read_text())
    architectures = settings.get("architectures") or [None]
    model_class = OWN_CLASSES.get(architectures[0]) or getattr(transformers, architectures[0] or "", None)
    if model_class is None:
        raise ValueError(f"{location}/config.json: unknown architecture {architectures[0]!r}")
    if not settings.get(CONFIG_KEY):
        with hf_progress_bars(progress):
            return model_class.from_pretrained(location).eval()
    # Heads removed: build the full model, cut it to the saved shapes, then load the weights
    # (written by headlens export under the model's own parameter names).
    from safetensors.torch import load_model as load_weights

    config = model_class.config_class.from_pretrained(location)
    model = prune_heads(model_class(config), getattr(config, CONFIG_KEY))
    weights = location / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: missing (a folder written by headlens export holds it)")
    missing, unexpected = load_weights(model, weights, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights}: weights do not fit: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    return model.eval()


def load_model(
    family: str, path: str | None = None, seed: int = 0, folder: str | Path | None = None, progress: bool = True
) -> nn.Module:
    """A model of ``family`` (``"auto"``: whatever the checkpoint holds) in eval mode.

    ``path`` None: a tiny random-init model (initialised from ``seed``) for smoke runs.
    Otherwise a folder with ``config.json`` (HF format, also our own classes), an MMF
    checkpoint (``.tar.gz``/``.pth``/``.ckpt`` or a folder holding one), a known name
    (``unc-nlp/lxmert-vqa-uncased``, ``uclanlp/visualbert-vqa``,
    ``visual_bert.finetuned.vqa2.from_coco_train``) or an HF id present in the cache.
    """
    import transformers

    if path is None:
        adapter = adapter_class(family)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return getattr(transformers, adapter.model_classes[0])(adapter.tiny_config()).eval()
    if family != "auto":
        adapter_class(family)  # an unknown family fails before anything is read
    location = resolve(path, folder)
    if location.is_dir() and (location / "config.json").is_file():
        model = from_folder(location, progress)
    else:
        from .mmf import convert

        model = convert(location)
    found = adapter_for(model).family
    if family != "auto" and found != family:
        raise ValueError(f"{path} holds a {found} model, not {family}")
    return model.eval()


def load_tokenizer(name: str, folder: str | Path | None = None):
    """A tokenizer from a folder, a known name or an HF id in the cache (never the network)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve(name, folder))


__all__ = [
    "KNOWN", "BertMeanPoolClassifier", "MMFVisualBertForQuestionAnswering", "from_folder", "hf_progress_bars", "load_model", "load_tokenizer",
    "resolve",
]  # fmt: skip
