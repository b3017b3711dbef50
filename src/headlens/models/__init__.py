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
import transformers
from torch import nn

from ..adapters import family_of, family_table
from ..adapters.configs import new_model, tiny_config
from ..errors import InputError, UnsafeFileError, library_errors, one_line
from ..export import CONFIG_KEY, WEIGHTS_FILE, prune_heads
from ..paths import data_dir
from ..modeling import OWN_CLASSES, BertMeanPoolClassifier, MMFVisualBertForQuestionAnswering
from ..resources import hint

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
    exported by ``headlens export`` (heads removed) included.

    ``pytorch_model.bin`` weights load with ``torch.load(weights_only=True)``, always:
    transformers 5 passes no other value there (``from_pretrained(weights_only=False)`` does
    not reach it), so no code from the file runs, and a file that pickles more than tensors is
    refused with :class:`~headlens.errors.UnsafeFileError`, with no opt-in."""
    location = Path(location)
    try:
        settings = json.loads((location / "config.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise InputError(f"{location / 'config.json'}: not a JSON model config ({error})") from None
    architectures = (settings.get("architectures") if isinstance(settings, dict) else None) or [None]
    model_class = OWN_CLASSES.get(architectures[0]) or getattr(transformers, architectures[0] or "", None)
    if model_class is None:
        raise InputError(f"{location}/config.json: unknown architecture {architectures[0]!r}")
    if not settings.get(CONFIG_KEY):
        try:
            with hf_progress_bars(progress):
                return model_class.from_pretrained(location).eval()
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) + library_errors() as error:
            from .mmf import refused_global

            refused = refused_global(error)
            if refused is not None:
                raise UnsafeFileError(
                    f"{location}: refusing to load the weights: their pickle names {refused}, which is not a "
                    "tensor and could run code; HF folders load weights only, with no opt-in: if you trust the "
                    "file, save its tensors as model.safetensors"
                ) from None
            raise InputError(f"{location}: cannot load the model ({one_line(error)})") from None
    # Heads removed: build the full model, cut it to the saved shapes, then load the weights
    # (written by headlens export under the model's own parameter names).
    from safetensors.torch import load_model as load_weights

    config = model_class.config_class.from_pretrained(location)
    model = prune_heads(model_class(config), getattr(config, CONFIG_KEY))
    weights = location / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: missing (a folder written by headlens export holds it)")
    try:
        model = model.to(_saved_dtype(weights))  # (a model built from a config is float32)
        missing, unexpected = load_weights(model, weights, strict=False)
    except (OSError, RuntimeError) + library_errors() as error:
        raise InputError(f"{weights}: cannot read the weights ({one_line(error)})") from None
    if missing or unexpected:
        raise InputError(f"{weights}: weights do not fit: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    return model.eval()


def _saved_dtype(weights: Path) -> torch.dtype:
    """The precision of the first floating-point tensor of a safetensors file (float32 if none)."""
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as file:
        for name in file.keys():
            tensor = file.get_slice(name)
            dtype = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}.get(
                tensor.get_dtype())
            if dtype is not None:
                return dtype
    return torch.float32


def load_model(
    family: str, path: str | None = None, seed: int = 0, folder: str | Path | None = None, progress: bool = True,
    trust_pickle: bool = False,
) -> nn.Module:
    """A model of ``family`` (``"auto"``: whatever the checkpoint holds) in eval mode.

    ``path`` None: a tiny random-init model (initialised from ``seed``) for smoke runs.
    Otherwise a folder with ``config.json`` (HF format, also our own classes), an MMF
    checkpoint (``.tar.gz``/``.pth``/``.ckpt`` or a folder holding one), a known name
    (``unc-nlp/lxmert-vqa-uncased``, ``uclanlp/visualbert-vqa``,
    ``visual_bert.finetuned.vqa2.from_coco_train``) or an HF id present in the cache.

    Nothing loaded runs code from the file: HF weights load as safetensors or with
    ``torch.load(weights_only=True)`` (:func:`from_folder`), MMF checkpoints as weights plus
    MMF's config (:mod:`headlens.models.mmf`). ``trust_pickle=True`` loads an MMF checkpoint
    that pickles anything else, which runs whatever code it holds.
    """
    if path is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return new_model(family, tiny_config(family)).eval()
    if family != "auto":
        family_table(family)  # an unknown family fails before anything is read
    location = resolve(path, folder)
    if location.is_dir() and (location / "config.json").is_file():
        model = from_folder(location, progress)
    else:
        from .mmf import convert

        model = convert(location, trust_pickle=trust_pickle)
    found = family_of(model).name
    if family != "auto" and found != family:
        raise ValueError(f"{path} holds a {found} model, not {family}")
    return model.eval()


#: files one of which a tokenizer folder holds (fast tokenizers; WordPiece, BPE, SentencePiece vocabularies).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "tokenizer.model",
                   "sentencepiece.bpe.model")  # fmt: skip


def load_tokenizer(name: str, folder: str | Path | None = None, model: nn.Module | None = None):
    """A tokenizer from a folder, a known name or an HF id in the cache (never the network).

    The folder must hold a tokenizer's vocabulary: without one, transformers would build a
    five-token vocabulary in which every word is ``[UNK]`` and the run would go on, wrong.
    With ``model``, the vocabulary must fit the model's embeddings (see :func:`check_tokenizer`)."""
    from transformers import AutoTokenizer

    location = resolve(name, folder)
    if location.is_dir() and not any((location / f).is_file() for f in TOKENIZER_FILES):
        raise InputError(f"{location}: no tokenizer files (one of {', '.join(TOKENIZER_FILES)}); "
                         "give the folder of the model's tokenizer (data.tokenizer=… / --tokenizer …)")  # fmt: skip
    try:
        with hf_progress_bars(False):
            tokenizer = AutoTokenizer.from_pretrained(location)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{location}: cannot load the tokenizer ({one_line(error)})") from None
    if model is not None:
        check_tokenizer(tokenizer, model, str(location))
    return tokenizer


def check_tokenizer(tokenizer, model: nn.Module, where: str) -> None:
    """The tokenizer's ids must index the model's word embeddings: a vocabulary larger than the
    embeddings would fail mid-run, one far smaller is another model's tokenizer (or a stub)."""
    embeddings = model.get_input_embeddings()
    rows = getattr(embeddings, "num_embeddings", None)
    if rows is None:  # an image model
        return
    size = len(tokenizer)
    if size > rows or size < rows // 2:
        raise InputError(f"{where}: the tokenizer has {size} tokens but the model's embeddings have {rows} rows: "
                         "not this model's tokenizer; give the right one (data.tokenizer=… / --tokenizer …)")  # fmt: skip


__all__ = [
    "KNOWN", "BertMeanPoolClassifier", "MMFVisualBertForQuestionAnswering", "from_folder", "hf_progress_bars", "load_model", "load_tokenizer",
    "resolve",
]  # fmt: skip
