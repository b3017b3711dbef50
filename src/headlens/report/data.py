"""The data a report embeds, gathered from a run's files alone.

:func:`page_data` reads ``results.json`` (curves, AUCs, sites, the global protocol's head
scores, provenance) and every ``explained.npz`` (:mod:`headlens.report.explained`) under the
run folder, and returns one JSON-able dict, one entry per model:

* ``curves``: every curve of ``results.json`` as it is (levels, pruned counts, accuracy, AUC, and
  where the file has them the 95 % intervals and the random band, None otherwise);
* ``scores``: per method the global mean head scores ``[sites, heads]``, and ``pruned``: per
  method, order and unit the flat head indices (``site · heads + head``) pruned at each level,
  from :func:`headlens.masks.head_masks` — the ranking code of the sweep, so the page never
  ranks anything itself;
* ``examples``: per explained example its image (a PNG or JPEG data URL), boxes, tokens,
  relevance and the pruned model's answer per level (``at`` maps each of the model's levels
  to the example level shown there), its own head scores and pruned heads per level, and
  per site every head's ``A`` and ``∂z/∂A ⊙ A`` quantised to int8 (see :func:`quantise`);
* ``faithfulness``: where the run folder holds ``faithfulness.json`` (the demo's perturbation
  test of the relevance maps, :mod:`headlens.faithfulness`) and it has a test of this model, its
  unit, example count and every curve as the file has it (method, order, fractions, accuracy,
  AUC and, with bootstrap, their 95 % intervals); None otherwise.

Numbers are rounded to 4 significant digits; nothing here draws.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import InputError
from ..faithfulness import FaithfulnessCurve
from ..masks import head_masks
from ..viz.curves import method_colours
from .explained import FILE_NAME, read_explained

#: at most this many explained examples per model go into a page (their maps dominate its size).
MAX_EXAMPLES = 8
#: a curve's bootstrap intervals and random band (:mod:`headlens.intervals`); None in older files.
UNCERTAINTY = ("accuracy_low", "accuracy_high", "auc_low", "auc_high", "seed_auc", "band_low", "band_high")
#: the demo's perturbation tests of the maps, one per model (:meth:`FaithfulnessResult.to_dict`).
FAITHFULNESS_FILE = "faithfulness.json"
#: what the page keeps of a perturbation test's curve: all of it (the intervals are None without bootstrap).
FAITHFULNESS_CURVE = tuple(f.name for f in fields(FaithfulnessCurve))


def explained_files(run_dir: Path) -> list[Path]:
    """The ``explained.npz`` files of a run: in the run folder itself (the original's picture
    commands) and in ``viz/<model>/`` (the demo and ``headlens visualize``)."""
    return [p for p in [run_dir / FILE_NAME, *sorted((run_dir / "viz").glob(f"*/{FILE_NAME}"))] if p.is_file()]


def page_data(
    run_dir: str | Path, max_examples: int = MAX_EXAMPLES, document: dict | None = None, shown_as: str | Path | None = None
) -> dict:
    """Everything the page of ``run_dir`` shows (see the module docstring). ``document`` is the
    run's ``results.json`` when it is not on disk yet (a set being staged; read from
    ``run_dir`` and checked against its files otherwise); ``shown_as`` is the folder the page
    names (default ``run_dir``)."""
    run_dir = Path(run_dir)
    results_file, found = run_dir / "results.json", explained_files(Path(run_dir))
    if document is None and not results_file.is_file() and not found:
        raise FileNotFoundError(
            f"{results_file}: no such file, and no {FILE_NAME} in {run_dir} or {run_dir / 'viz'}/*/: nothing to report; "
            "write a run there first (headlens sweep, demo or visualize with out_dir=" + str(run_dir) + ")"
        )
    if document is None:
        document = _read_results(run_dir) if results_file.is_file() else {"runs": []}
    models: dict[str, dict] = {}
    for index, run in enumerate(document["runs"]):
        models[run["model"]] = model_from_run(run, f"{results_file}: runs[{index}]")
    for path in found:
        meta, records = read_explained(path)
        model = models.get(meta["model"]) or models.setdefault(meta["model"], model_from_meta(meta))
        if not model["sites"]:  # a results.json written before sites were recorded
            model.update(sites=meta["sites"], heads=meta["num_heads"])
        model["examples_total"] += len(records)
        room = max(max_examples - len(model["examples"]), 0)
        model["examples"] += [example_view(record, meta, model["levels"]) for record in records[:room]]
        model["explain"] = {key: meta[key] for key in ("map_method", "score_method", "order", "levels")}
        model["provenance"] = model["provenance"] or meta.get("provenance", {})
    tests = faithfulness_tests(run_dir)
    for name, test in tests.items():
        if name in models:  # a test of a model the page does not show has nothing to sit beside
            models[name]["faithfulness"] = test
    methods = {c["method"] for model in models.values() for c in model["curves"]}
    methods |= {m for model in models.values() for m in model["scores"]}
    shown = Path(shown_as or run_dir).resolve()
    return {
        "title": f"headlens report: {shown.name}",
        "run_dir": str(shown),
        "provenance": document.get("provenance", {}),
        # the maps' colours are their own: "lrp" names both a head score and a map method
        "colours": {**colour_scales(), "methods": method_colours(methods),
                    "maps": method_colours(c["method"] for test in tests.values() for c in test["curves"])},
        "models": list(models.values()),
    }


def _read_results(run_dir: Path) -> dict:
    """``results.json``, checked against the files it lists (:func:`headlens.results.read_results`)."""
    from ..results import read_results

    document = read_results(run_dir, rewriting=["report.html"])
    if not isinstance(document, dict) or not isinstance(document.get("runs"), list):
        raise InputError(f"{run_dir / 'results.json'}: no 'runs' list; not a results.json written by headlens")
    return document


def faithfulness_tests(run_dir: Path) -> dict[str, dict]:
    """The perturbation tests of ``run_dir/faithfulness.json`` by model name ({} without the file:
    a sweep or prune run), each as the page reads it (see the module docstring)."""
    path = run_dir / FAITHFULNESS_FILE
    if not path.is_file():
        return {}
    try:
        tests = json.loads(path.read_text())
    except ValueError as error:
        raise InputError(f"{path}: not JSON ({error})") from None
    if not isinstance(tests, dict):
        raise InputError(f"{path}: not a dict of model name → perturbation test; not a file written by headlens")
    views = {}
    for name, test in tests.items():
        if not isinstance(test, dict) or not {"unit", "curves"} <= test.keys():
            raise InputError(f"{path}: {name!r} has no 'unit' and 'curves'; not a perturbation test written by headlens")
        curves = [{key: c.get(key) for key in FAITHFULNESS_CURVE} for c in test["curves"]]
        views[name] = {"unit": test["unit"], "n_examples": test.get("n_examples"), "curves": curves}
    return views


def model_from_run(run: dict, where: str) -> dict:
    """One model's entry from its ``results.json`` run (``where`` names it in errors)."""
    for key in ("model", "levels", "curves"):
        if key not in run:
            raise InputError(f"{where}: no key {key!r}; not a run written by headlens")
    levels = [float(level) for level in run["levels"]]
    scores = {m: np.asarray(s, dtype=np.float64) for m, s in run.get("mean_scores", {}).items()}
    global_arms = {(c["method"], c["order"], c["unit"]) for c in run["curves"] if c["protocol"] == "global"}
    pruned: dict = {}
    for method, order, unit in sorted(global_arms):
        if method in scores and run.get("count_rule"):
            keep = head_masks(torch.from_numpy(scores[method]), levels, order, unit, run["count_rule"], run.get("kv_heads"))
            pruned.setdefault(method, {}).setdefault(order, {})[unit] = _pruned_lists(keep)
    return {
        "name": run["model"],
        "levels": levels,
        "sites": run.get("sites", []),
        "heads": run.get("num_heads", 0),
        "n_examples": run.get("n_examples"),
        "n_score": len(run.get("score_ids") or []),
        "curves": [{**{key: c[key] for key in ("method", "order", "protocol", "unit", "levels", "pruned", "accuracy", "auc")},
                    **{key: c.get(key) for key in UNCERTAINTY}, "metrics": c.get("metrics") or {}}
                   for c in run["curves"]],  # fmt: skip
        "scores": {m: rounded(s) for m, s in scores.items()},
        "pruned": pruned,
        "provenance": run.get("provenance", {}),
        "config": run.get("config", {}),
        "examples": [],
        "examples_total": 0,
        "explain": None,
        "faithfulness": None,
    }


def model_from_meta(meta: dict) -> dict:
    """A model with explained examples and no sweep: its levels are the examples'."""
    return {
        "name": meta["model"], "levels": meta["levels"], "sites": meta["sites"], "heads": meta["num_heads"],
        "n_examples": None, "n_score": 0, "curves": [], "scores": {}, "pruned": {}, "provenance": {}, "config": {},
        "examples": [], "examples_total": 0, "explain": None, "faithfulness": None,
    }  # fmt: skip


def _pruned_lists(keep: torch.Tensor) -> list[list[int]]:
    """Flat indices of the pruned heads at each level, from masks ``[levels, sites, heads]``."""
    return [torch.nonzero(level.flatten() < 0.5)[:, 0].tolist() for level in keep]


def example_view(record: dict, meta: dict, model_levels: Sequence[float]) -> dict:
    """One explained example as the page reads it."""
    levels = [float(level) for level in meta["levels"]]
    image = record["image"]
    view = {
        "id": record["id"], "question": record["question"], "label": record["label"], "answers": record["answers"],
        "levels": levels, "at": level_positions(model_levels, levels),
        "tokens": record["tokens"], "image_labels": record["image_labels"], "boxes": record["boxes"],
        "image": None if image is None else image_url(image),
        "width": None if image is None else int(image.shape[1]), "height": None if image is None else int(image.shape[0]),
        "text": None if record["text"] is None else rounded(record["text"]),
        "image_relevance": None if record["image_relevance"] is None else rounded(record["image_relevance"]),
        "text_scale": _scale(record["text"]), "image_scale": _scale(record["image_relevance"]),
        "scores": rounded(record["scores"]),
        "pruned": _pruned_lists(torch.from_numpy(np.asarray(record["keep"], dtype=np.float32))),
        "maps": {key: [quantise(m) for m in record[key]] for key in ("attn", "gradattn")},
    }  # fmt: skip
    return view


def _scale(values) -> float | None:
    """The top of an example's relevance colour scale, shared by its levels (as in its pictures)."""
    from ..viz.images import shared_scale

    return None if values is None else float(shared_scale(np.asarray(values)))


def level_positions(model_levels: Sequence[float], example_levels: Sequence[float]) -> list[int]:
    """For each of the model's levels, the index of the highest example level not above it."""
    positions = []
    for level in model_levels:
        below = [i for i, e in enumerate(example_levels) if e <= level + 1e-9]
        positions.append(below[-1] if below else 0)
    return positions


def rounded(values, digits: int = 4):
    """Nested lists of ``values`` rounded to ``digits`` significant digits (JSON-able)."""
    a = np.asarray(values, dtype=np.float64)
    magnitude = np.floor(np.log10(np.abs(a), out=np.zeros_like(a), where=a != 0))
    factor = 10.0 ** (digits - 1 - magnitude)
    return (np.round(a * factor) / factor).tolist()


def quantise(values: np.ndarray) -> dict:
    """A map ``[heads, queries, keys]`` as int8 per head: ``value ≈ q · scale[head] / 127``,
    ``scale`` the head's largest absolute value; ``data`` is the int8 bytes in base64."""
    a = np.asarray(values, dtype=np.float64)
    scale = np.abs(a).reshape(a.shape[0], -1).max(1) if a.size else np.zeros(a.shape[0])
    safe = np.where(scale > 0, scale, 1.0)
    q = np.round(a / safe[:, None, None] * 127).astype(np.int8)
    return {"shape": list(a.shape), "scale": rounded(scale), "data": base64.b64encode(q.tobytes()).decode()}


def image_url(image: np.ndarray) -> str:
    """A ``data:`` URL of ``uint8[H, W, 3]``: PNG or JPEG (quality 85), whichever is smaller."""
    from PIL import Image

    picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
    encoded = {}
    for kind, options in (("png", dict(optimize=True)), ("jpeg", dict(quality=85))):
        buffer = io.BytesIO()
        picture.save(buffer, format=kind.upper(), **options)
        encoded[kind] = buffer.getvalue()
    kind = min(encoded, key=lambda k: len(encoded[k]))
    return f"data:image/{kind};base64," + base64.b64encode(encoded[kind]).decode()


def colour_scales(steps: int = 64) -> dict:
    """The page's colour scales, from matplotlib so they equal the static pictures': the overlay's
    sequential map and its opacity rule, a signed map for scores, tab10 per method, dashes per order."""
    from matplotlib import colormaps

    from ..viz.curves import ORDER_STYLE
    from ..viz.images import RELEVANCE_ALPHA, RELEVANCE_CMAP

    def table(name: str) -> list[list[int]]:
        return (np.asarray(colormaps[name](np.linspace(0, 1, steps)))[:, :3] * 255).round().astype(int).tolist()

    return {
        "relevance": table(RELEVANCE_CMAP), "relevance_alpha": RELEVANCE_ALPHA, "signed": table("RdBu_r"),
        "dash": {order: ("" if style == "-" else "5 3") for order, style in ORDER_STYLE.items()},
    }  # fmt: skip
