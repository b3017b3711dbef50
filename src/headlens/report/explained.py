"""Explained examples as one compact file beside their pictures: ``explained.npz``.

A report must be rebuilt from a run's files alone (``headlens report RUN_DIR``), and its
example views need more than the pictures: per example and pruning level the relevance of
every token and box and the pruned model's answer, the head scores and keep masks that
decided the pruning, and per site the attention ``A`` and ``∂z_c/∂A ⊙ A`` of every head
(``z_c``: the logit of the unpruned model's answer). :func:`explain_examples` computes them
(one :func:`headlens.explain.explain` and one :func:`headlens.edits.capture` per batch);
:func:`write_explained` and :func:`read_explained` store and load them.

The file is an ``.npz`` read with ``allow_pickle=False``: ``meta`` is a JSON string (model,
levels, sites, and per example its id, question, label, answers per level, tokens, image
positions and boxes); arrays are named ``e<i>.<what>`` — ``image`` ``uint8[H, W, 3]``,
``text`` ``[levels, T]`` and ``boxes`` ``[levels, V]`` relevance (real positions only),
``scores`` ``[sites, heads]``, ``keep`` ``bool[levels, sites, heads]``, and per site ``s``
``attn.<s>`` and ``gradattn.<s>`` ``float16[heads, queries, keys]`` over the real positions
of the site's query and key streams (``joint`` = text then image).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..files import atomic_write
from ..provenance import command_provenance

#: version of the file layout (a reader refuses another).
FORMAT = 1
FILE_NAME = "explained.npz"


@dataclass
class Shown:
    """How one example is shown: its question (or text), image, and what its image positions are.

    ``image_labels`` names every real position of the image stream (boxes, or [CLS] and patches)
    and ``boxes`` gives each its pixel box ``[x1, y1, x2, y2]`` in ``image`` (None for a position
    with no box, e.g. ViT's [CLS]); both empty for a text-only model, whose ``image`` is None.
    """

    question: str
    image: np.ndarray | None = None
    image_labels: Sequence[str] = ()
    boxes: Sequence[Sequence[float] | None] = ()


def explain_examples(
    adapter,
    batch,
    shown: Sequence[Shown],
    levels: Sequence[float],
    answers: Sequence[str] | None = None,
    tokenizer=None,
    map_method: str = "ours",
    explained=None,
) -> list[dict]:
    """One record per example of ``batch`` (see the module docstring): relevance by
    ``map_method`` after pruning ``levels`` of the heads, least important by ``grad`` first
    (:func:`headlens.explain.explain`), and every head's maps from the unpruned model.
    ``answers`` names the classes (None: their indices). ``explained``: that
    :func:`~headlens.explain.explain` result for this batch at ``levels``, when the caller
    has it already (it is not computed twice)."""
    from ..explain import explain
    from ..edits import capture, eval_mode

    reusable = explained is not None and (explained.score_method, explained.order) == ("grad", "negative")
    if not reusable or list(explained.levels) != list(levels) or map_method not in explained.text:
        explained = explain(adapter, batch, levels, map_methods=(map_method,))
    with eval_mode(adapter.model):
        cap = capture(adapter, batch.inputs, ids=batch.ids)
    streams = {name: stream.mask.cpu() for name, stream in adapter.streams(batch.inputs).items()}
    names = (lambda i: str(int(i))) if answers is None else (lambda i: str(answers[int(i)]))
    records = []
    for row, example in enumerate(shown):
        real = {name: mask[row] for name, mask in streams.items()}
        tokens = []
        if "text" in real:
            ids = adapter.token_ids(batch.inputs)[row].cpu()[real["text"]].tolist()
            tokens = tokenizer.convert_ids_to_tokens(ids) if tokenizer is not None else [str(i) for i in ids]
        if "image" in real and len(example.image_labels) != int(real["image"].sum()):
            raise ValueError(f"example {batch.ids[row]}: {len(example.image_labels)} image labels for "
                             f"{int(real['image'].sum())} image positions")  # fmt: skip
        label = batch.labels[row]
        record = {
            "id": str(batch.ids[row]),
            "question": example.question,
            "label": names(label.argmax()) if float(label.max()) > 0 else None,
            "answers": [names(p) for p in explained.predictions[row].cpu()],
            "tokens": list(tokens),
            "image_labels": list(example.image_labels),
            "boxes": [None if b is None else [float(v) for v in b] for b in example.boxes],
            "image": example.image,
            "text": _real(explained.text[map_method], row, real.get("text")),
            "image_relevance": _real(explained.image[map_method], row, real.get("image")),
            "scores": explained.head_scores[row].float().cpu().numpy(),
            "keep": explained.keep[row].cpu().numpy() > 0.5,
            "attn": [],
            "gradattn": [],
        }
        for index, site in enumerate(adapter.sites):
            rows, cols = real[site.query], real[site.key]
            attn = cap.attn[index][row].float().cpu()[:, rows][:, :, cols]
            grad = cap.grad[index][row].float().cpu()[:, rows][:, :, cols]
            record["attn"].append(attn.numpy().astype(np.float16))
            record["gradattn"].append((grad * attn).numpy().astype(np.float16))
        records.append(record)
    return records


def _real(values, row: int, mask) -> np.ndarray | None:
    """``[levels, positions]`` relevance of one example at its real positions (None: no such stream)."""
    if values is None or mask is None:
        return None
    return values[row].float().cpu()[:, mask].numpy()


def write_explained(
    path: str | Path, model: str, family: str, levels: Sequence[float], sites, num_heads: int, records: Sequence[dict],
    map_method: str = "ours", provenance: dict | None = None,
) -> Path:  # fmt: skip
    """Write ``records`` (from :func:`explain_examples`) of one model to ``path``, whole or not
    at all. ``sites`` are the adapter's :class:`~headlens.sites.Site` records (or dicts with
    name, query, key); ``provenance`` (the checkpoint's) gets the command, version and date."""
    arrays, examples = {}, []
    for i, record in enumerate(records):
        examples.append({key: record[key] for key in ("id", "question", "label", "answers", "tokens", "image_labels", "boxes")})
        for key in ("image", "text", "image_relevance", "scores", "keep"):
            if record[key] is not None:
                arrays[f"e{i}.{key}"] = np.asarray(record[key])
        for s, (attn, gradattn) in enumerate(zip(record["attn"], record["gradattn"])):
            arrays[f"e{i}.attn.{s}"], arrays[f"e{i}.gradattn.{s}"] = attn, gradattn
    meta = {
        "format": FORMAT, "model": model, "family": family, "levels": [float(level) for level in levels],
        "map_method": map_method, "score_method": "grad", "order": "negative", "num_heads": int(num_heads),
        "sites": [_site_dict(site) for site in sites], "examples": examples,
        "provenance": {**(provenance or {}), **command_provenance()},
    }  # fmt: skip
    buffer = io.BytesIO()
    np.savez_compressed(buffer, meta=np.asarray(json.dumps(meta)), **arrays)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, buffer.getvalue())


def _site_dict(site) -> dict:
    if isinstance(site, dict):
        return {key: site[key] for key in ("name", "query", "key")}
    return {"name": site.name, "query": site.query, "key": site.key}


def read_explained(path: str | Path) -> tuple[dict, list[dict]]:
    """``(meta, records)`` of a file written by :func:`write_explained`; every record has the
    keys :func:`explain_examples` gives (None where the model has no such stream)."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as saved:
        if "meta" not in saved.files:
            raise InputError(f"{path}: no 'meta' entry; not a file written by headlens (explained examples)")
        meta = json.loads(str(saved["meta"]))
        if meta.get("format") != FORMAT:
            raise InputError(f"{path}: format {meta.get('format')!r}, this headlens reads {FORMAT}; "
                             "rewrite it with the headlens that reads it (headlens visualize or demo)")  # fmt: skip
        arrays = {name: saved[name] for name in saved.files}
    records = []
    for i, example in enumerate(meta["examples"]):
        record = dict(example)
        for key in ("image", "text", "image_relevance", "scores", "keep"):
            record[key] = arrays.get(f"e{i}.{key}")
        for key in ("attn", "gradattn"):
            try:
                record[key] = [arrays[f"e{i}.{key}.{s}"] for s in range(len(meta["sites"]))]
            except KeyError as missing:
                raise InputError(f"{path}: missing entry {missing.args[0]!r} (example {example['id']})") from None
        records.append(record)
    return meta, records
