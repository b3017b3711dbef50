"""MMF checkpoints → HF-format VisualBERT with MMF's VQA head.

The zoo's ``visual_bert.finetuned.vqa2.from_coco_train`` is a ``.tar.gz`` holding one
yaml and one ``.pth``/``.ckpt``; the state dict may sit under a ``model`` key and its
keys may start with ``module.``. Keys ``model.bert.*`` become ``visual_bert.*`` with
three renames (``token_type_embeddings_visual → visual_token_type_embeddings``,
``position_embeddings_visual → visual_position_embeddings``, ``projection →
visual_projection``); ``model.classifier.*`` keeps its place in
:class:`MMFVisualBertForQuestionAnswering`; old ``gamma``/``beta`` LayerNorm names become
``weight``/``bias``. The sizes are read off the weights' shapes; the head count, which
the shapes do not tell, from the yaml or the checkpoint's own ``config`` entry.

Loading runs no code from the file: ``torch.load(weights_only=True)`` admits tensors,
plain containers and, in a scoped :func:`torch.serialization.safe_globals`, exactly the
OmegaConf classes that MMF checkpoints pickle beside their weights (MMF saved its config
object as is until April 2020, and as a plain dict since). Anything else is refused with
:class:`~headlens.errors.UnsafeFileError`; ``trust_pickle=True`` loads it with
``weights_only=False``, which runs whatever code the file holds. Archive members that are
links are refused too (:func:`headlens.archives.check_tar_member`).
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path

import torch

from ..errors import InputError, UnsafeFileError
from ..modeling import MMFVisualBertForQuestionAnswering
from ..safe_pickle import OPT_IN
from ..archives import check_tar_member

CHECKPOINT_SUFFIXES = (".pth", ".ckpt", ".pt")
_RENAMES = [
    (r"^model\.bert\.", "visual_bert."),
    (r"^model\.classifier\.", "classifier."),
    (r"embeddings\.token_type_embeddings_visual\.", "embeddings.visual_token_type_embeddings."),
    (r"embeddings\.position_embeddings_visual\.", "embeddings.visual_position_embeddings."),
    (r"embeddings\.projection\.", "embeddings.visual_projection."),
    (r"LayerNorm\.gamma$", "LayerNorm.weight"),
    (r"LayerNorm\.beta$", "LayerNorm.bias"),
]
#: heads per layer of the BERT an MMF config names in ``bert_model_name`` (BERT's own configs).
BERT_HEADS = {"bert-base": 12, "bert-large": 16}
HEADS_KEY = "model_config.visual_bert.num_attention_heads"


def mmf_globals() -> list:
    """The classes an MMF checkpoint pickles beside its tensors: an OmegaConf config built
    from yaml (containers, their metadata, ``AnyNode`` values, the ``typing.Any``/``dict``/
    ``list``/``int`` types the metadata records, the ``defaultdict`` of its resolver cache)."""
    import collections
    import typing

    from omegaconf import DictConfig, ListConfig
    from omegaconf.base import ContainerMetadata, Metadata
    from omegaconf.nodes import AnyNode

    return [DictConfig, ListConfig, ContainerMetadata, Metadata, AnyNode, typing.Any, dict, list, int,
            collections.defaultdict]  # fmt: skip


def _torch_load(data: bytes, source: str, trust: bool = False):
    """A checkpoint's content, without running code from it unless ``trust`` (see the module docstring)."""
    if trust:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    try:
        with torch.serialization.safe_globals(mmf_globals()):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ValueError… on bad files
        refused = refused_global(error, data)
        if refused:
            raise UnsafeFileError(
                f"{source}: refusing to load: the checkpoint's pickle names {refused}, which is neither a tensor "
                f"nor what MMF checkpoints hold, and could run code; {OPT_IN}"
            ) from None
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise InputError(f"{source}: damaged or truncated checkpoint ({reason}); fetch it again") from None


def refused_global(error: BaseException, data: bytes | None = None) -> str | None:
    """The global a ``weights_only`` load refused, as ``module.name`` where the checkpoint's
    bytes tell it (torch's message may give the name alone), or None for other failures."""
    shown = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
    if shown is None:
        return None
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data)) if data else []
    except Exception:  # the legacy (non-zip) format is not listed: torch's wording stays
        names = []
    tail = shown.group(1).rsplit(".", 1)[-1]
    return next((name for name in names if name.rsplit(".", 1)[-1] == tail), shown.group(1))


def read_checkpoint(path: str | os.PathLike, trust_pickle: bool = False) -> tuple[dict, list[dict]]:
    """The raw state dict of an MMF archive, folder or weights file, and its settings, in the
    order they are asked: the yaml beside the weights (parsed), then the checkpoint's own
    ``config`` entry (as plain containers); either may be absent."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"MMF checkpoint not found: {path}")
    if path.is_dir():
        weights = sorted(p for p in path.rglob("*") if p.suffix in CHECKPOINT_SUFFIXES)
        yamls = sorted(path.rglob("*.yaml"))
        if len(weights) != 1:
            raise InputError(f"{path}: expected one {'/'.join(CHECKPOINT_SUFFIXES)} file, found {len(weights)}")
        yaml = (yamls[0].read_text(), yamls[0]) if yamls else None
        return _contents(weights[0].read_bytes(), str(weights[0]), yaml, trust_pickle)
    if path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return _read_archive(path, trust_pickle)
    if path.suffix in CHECKPOINT_SUFFIXES:
        return _contents(path.read_bytes(), str(path), None, trust_pickle)
    raise InputError(f"{path}: not an MMF checkpoint (.tar.gz archive, folder or {'/'.join(CHECKPOINT_SUFFIXES)})")


def _read_archive(path: Path, trust_pickle: bool) -> tuple[dict, list[dict]]:
    try:
        with tarfile.open(path) as archive:
            members = archive.getmembers()
            for member in members:
                check_tar_member(path, member)  # links and special files are refused, never skipped
            members = [m for m in members if m.isfile()]
            weights = [m for m in members if m.name.endswith(CHECKPOINT_SUFFIXES)]
            yamls = [m for m in members if m.name.endswith(".yaml")]
            if len(weights) != 1:
                raise InputError(f"{path}: expected one {'/'.join(CHECKPOINT_SUFFIXES)} member, found {len(weights)}")
            data = archive.extractfile(weights[0]).read()
            yaml = (archive.extractfile(yamls[0]).read().decode(), f"{path}:{yamls[0].name}") if yamls else None
    except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: damaged or truncated archive ({error}); fetch it again") from None
    return _contents(data, f"{path}:{weights[0].name}", yaml, trust_pickle)


def _contents(data: bytes, source: str, yaml: tuple[str, object] | None, trust_pickle: bool) -> tuple[dict, list[dict]]:
    """The state dict and the settings of one checkpoint file and the yaml (text, where) beside it."""
    checkpoint = _torch_load(data, source, trust_pickle)
    settings = []
    if yaml is not None:
        import yaml as pyyaml

        try:
            parsed = pyyaml.safe_load(yaml[0])
        except pyyaml.YAMLError as error:
            raise InputError(f"{yaml[1]}: not readable yaml ({str(error).splitlines()[0]})") from None
        settings.append(parsed)
    config = checkpoint.get("config") if isinstance(checkpoint, dict) else None
    if config is not None:
        from omegaconf import DictConfig, OmegaConf

        settings.append(OmegaConf.to_container(config) if isinstance(config, DictConfig) else config)
    return _unwrap(checkpoint, source), [entry for entry in settings if isinstance(entry, dict)]


def _unwrap(checkpoint, source) -> dict:
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{source}: no state dict found (expected tensors, possibly under a 'model' key)")
    return {key[len("module.") :] if key.startswith("module.") else key: value for key, value in state.items()}


def rename(key: str) -> str:
    for pattern, replacement in _RENAMES:
        key = re.sub(pattern, replacement, key)
    return key


def heads_from_settings(settings: list[dict], source) -> int | None:
    """Heads per layer from MMF settings (the first that says): ``model_config.<model>.num_attention_heads``,
    else the count of the BERT named by ``bert_model_name`` (MMF builds VisualBERT from that BERT's
    config, ``model_config`` keys overriding it); None when none says."""
    for entry in settings:
        model_config = entry.get("model_config")
        if not isinstance(model_config, dict):
            continue
        section = model_config.get(entry.get("model") if isinstance(entry.get("model"), str) else "visual_bert")
        if section is None and len(model_config) == 1:
            section = next(iter(model_config.values()))
        if not isinstance(section, dict):
            continue
        heads = section.get("num_attention_heads")
        if heads is not None:
            if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1:
                raise InputError(f"{source}: {HEADS_KEY} is {heads!r}, not a positive whole number")
            return heads
        bert = str(section.get("bert_model_name") or "")
        for prefix, count in BERT_HEADS.items():
            if bert.startswith(prefix):
                return count
    return None


def convert(path: str | os.PathLike, heads: int | None = None, trust_pickle: bool = False) -> MMFVisualBertForQuestionAnswering:
    """An :class:`MMFVisualBertForQuestionAnswering` holding an MMF checkpoint's weights.

    ``heads``: attention heads per layer; by default from the yaml beside the weights, else
    from the checkpoint's ``config`` entry (:func:`heads_from_settings`); when neither says,
    an :class:`~headlens.errors.InputError` names the key to give. ``trust_pickle``: load a
    checkpoint that pickles more than weights and MMF's config (runs the file's code).
    """
    from transformers import VisualBertConfig

    raw, settings = read_checkpoint(path, trust_pickle)
    state = {rename(key): value for key, value in raw.items() if not key.endswith("position_ids")}
    try:
        words = state["visual_bert.embeddings.word_embeddings.weight"]
        projection = state["visual_bert.embeddings.visual_projection.weight"]
        answers = state["classifier.1.weight"]
        intermediate = state["visual_bert.encoder.layer.0.intermediate.dense.weight"]
    except KeyError as error:
        raise InputError(f"{path}: not a VisualBERT VQA checkpoint: no weight {error} after renaming") from None
    hidden = words.shape[1]
    layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"visual_bert\.encoder\.layer\.(\d+)\.", k)))
    heads = heads or heads_from_settings(settings, path)
    if heads is None:
        raise InputError(
            f"{path}: the head count of this {hidden}-wide model is in neither a yaml beside the weights nor the "
            f"checkpoint's config; give {HEADS_KEY} in a yaml beside the weights, as MMF's zoo ships it "
            f"(model_config: {{visual_bert: {{num_attention_heads: N}}}}), or call convert(..., heads=N)"
        )
    if hidden % heads:
        raise InputError(f"{path}: {heads} attention heads do not divide the model's width {hidden}; check {HEADS_KEY}")
    config = VisualBertConfig(
        vocab_size=words.shape[0], hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=intermediate.shape[0], visual_embedding_dim=projection.shape[1], num_labels=answers.shape[0],
        max_position_embeddings=state["visual_bert.embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=state["visual_bert.embeddings.token_type_embeddings.weight"].shape[0],
        architectures=[MMFVisualBertForQuestionAnswering.__name__],
    )  # fmt: skip
    model = MMFVisualBertForQuestionAnswering(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(f"{path}: weights do not fit: missing {sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}")
    return model.eval()
