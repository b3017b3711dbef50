"""MMF checkpoints → HF-format VisualBERT with MMF's VQA head (SPEC §9).

The zoo's ``visual_bert.finetuned.vqa2.from_coco_train`` is a ``.tar.gz`` holding one
yaml and one ``.pth``/``.ckpt``; the state dict may sit under a ``model`` key and its
keys may start with ``module.``. Keys ``model.bert.*`` become ``visual_bert.*`` with
three renames (``token_type_embeddings_visual → visual_token_type_embeddings``,
``position_embeddings_visual → visual_position_embeddings``, ``projection →
visual_projection``); ``model.classifier.*`` keeps its place in
:class:`MMFVisualBertForQuestionAnswering`; old ``gamma``/``beta`` LayerNorm names become
``weight``/``bias``. The config is read off the weights' shapes.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path

import torch

from ..modeling import MMFVisualBertForQuestionAnswering

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


def _torch_load(data: bytes, source: str) -> dict:
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # MMF checkpoints may pickle their config (OmegaConf) beside the weights
        print(f"[headlens] {source}: not a weights-only checkpoint; loading it with pickle", flush=True)
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, str | None]:
    """The raw state dict and the yaml text (if any) of an MMF archive, folder or weights file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"MMF checkpoint not found: {path}")
    if path.is_dir():
        weights = sorted(p for p in path.rglob("*") if p.suffix in CHECKPOINT_SUFFIXES)
        yamls = sorted(path.rglob("*.yaml"))
        if len(weights) != 1:
            raise ValueError(f"{path}: expected one {'/'.join(CHECKPOINT_SUFFIXES)} file, found {len(weights)}")
        return _unwrap(_torch_load(weights[0].read_bytes(), str(weights[0])), weights[0]), (
            yamls[0].read_text() if yamls else None
        )
    if path.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(path) as archive:
            members = [m for m in archive.getmembers() if m.isfile()]
            weights = [m for m in members if m.name.endswith(CHECKPOINT_SUFFIXES)]
            yamls = [m for m in members if m.name.endswith(".yaml")]
            if len(weights) != 1:
                raise ValueError(f"{path}: expected one {'/'.join(CHECKPOINT_SUFFIXES)} member, found {len(weights)}")
            state = _torch_load(archive.extractfile(weights[0]).read(), f"{path}:{weights[0].name}")
            text = archive.extractfile(yamls[0]).read().decode() if yamls else None
        return _unwrap(state, path), text
    if path.suffix in CHECKPOINT_SUFFIXES:
        return _unwrap(_torch_load(path.read_bytes(), str(path)), path), None
    raise ValueError(f"{path}: not an MMF checkpoint (.tar.gz archive, folder or {'/'.join(CHECKPOINT_SUFFIXES)})")


def _unwrap(checkpoint, source) -> dict:
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{source}: no state dict found (expected tensors, possibly under a 'model' key)")
    return {key[len("module.") :] if key.startswith("module.") else key: value for key, value in state.items()}


def rename(key: str) -> str:
    for pattern, replacement in _RENAMES:
        key = re.sub(pattern, replacement, key)
    return key


def _heads_from_yaml(text: str | None) -> int | None:
    match = re.search(r"num_attention_heads:\s*(\d+)", text or "")
    return int(match.group(1)) if match else None


def convert(path: str | os.PathLike, heads: int | None = None) -> MMFVisualBertForQuestionAnswering:
    """An :class:`MMFVisualBertForQuestionAnswering` holding an MMF checkpoint's weights.

    ``heads``: attention heads per layer; from the yaml if it says, else 12 for width 768
    (BERT-base), else width / 64.
    """
    from transformers import VisualBertConfig

    raw, yaml_text = read_checkpoint(path)
    state = {rename(key): value for key, value in raw.items() if not key.endswith("position_ids")}
    try:
        words = state["visual_bert.embeddings.word_embeddings.weight"]
        projection = state["visual_bert.embeddings.visual_projection.weight"]
        answers = state["classifier.1.weight"]
        intermediate = state["visual_bert.encoder.layer.0.intermediate.dense.weight"]
    except KeyError as error:
        raise ValueError(f"{path}: not a VisualBERT VQA checkpoint: no weight {error} after renaming") from None
    hidden = words.shape[1]
    layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"visual_bert\.encoder\.layer\.(\d+)\.", k)))
    heads = heads or _heads_from_yaml(yaml_text) or (12 if hidden == 768 else max(hidden // 64, 1))
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
        raise ValueError(f"{path}: weights do not fit: missing {sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}")
    return model.eval()
