"""Pictures of trained models' examples, and explanation checks.

* :func:`draw_examples` — the pictures of docs/method.md#pictures-after-pruning for any examples
  that can ``describe`` themselves (an image, boxes and a question), for any family;
* :func:`visualize_examples` — those pictures for a few seeded easy-VQA test questions;
* :func:`draw_patches` — a ViT's patch relevance on its input images;
* :func:`pointing_table` — is the relevance on the shape? easy-VQA draws one shape per
  image, so the boxes it covers are known: how often the top box is one of them
  (pointing game) and what share of the relevance they get, per map method and level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .data.batch import Subset, iterate, sample
from .data.easy_vqa import Split, grid_boxes
from .explain import PICTURE_LEVELS, answers_text, explain, pointing_game
from .pictures import write_pictures
from .report.explained import FILE_NAME, Shown, explain_examples, write_explained
from .subjects.easy_vqa import Subject
from .viz.figures import head_grid, save_figure
from .viz.images import upscale


def draw_examples(
    adapter,
    examples: Subset,
    answers: Sequence[str],
    tokenizer,
    out_dir: str | Path,
    levels: Sequence[float] = PICTURE_LEVELS,
    method: str = "ours",
    scale: int = 1,
    batch_size: int = 16,
    record: Record | None = None,
) -> list[dict[str, Path]]:
    """Write the pictures of every example of ``examples`` (a :class:`Subset` of a dataset with
    ``describe``) into ``out_dir/<question id>/``, and ``heads_mean.png`` (head scores averaged
    over them). With ``record``, also ``out_dir/explained.npz``, what a report shows of them
    (:mod:`headlens.report.explained`). Returns each example's paths."""
    out_dir = Path(out_dir)
    written, head_scores, records = [], [], []
    for positions, batch in iterate(examples, batch_size):
        batch = batch.to(adapter.device)
        explained = explain(adapter, batch, levels, map_methods=(method,))
        said = answers_text(explained.predictions, answers)
        head_scores.append(explained.head_scores.cpu())
        shown = []
        for row, question_id in enumerate(batch.ids):
            question, image_name, image, boxes = examples.describe(positions[row], scale)
            shown.append(Shown(question, image, [f"box {i}" for i in range(len(boxes))], boxes.tolist()))
            length = int(explained.text_mask[row].sum())
            tokens = tokenizer.convert_ids_to_tokens(adapter.token_ids(batch.inputs)[row, :length].tolist())
            written.append(
                write_pictures(
                    out_dir / str(question_id), adapter.family_table.original_pictures, image_name, image, boxes, tokens,
                    explained.levels,
                    explained.text[method][row, :, :length].cpu().numpy(), explained.image[method][row].cpu().numpy(),
                    list(said[row]), question, explained.head_scores[row].cpu().numpy(), adapter.site_names,
                    score_method=explained.score_method,
                )  # fmt: skip
            )
        if record is not None:
            records += explain_examples(adapter, batch, shown, record.levels or levels, answers, tokenizer, method,
                                        explained=explained)  # fmt: skip
    mean = torch.cat(head_scores).mean(0).numpy()
    save_figure(head_grid(mean, adapter.site_names, f"{explained.score_method} head scores, mean of {len(examples)} questions"),
                out_dir / "heads_mean.png")  # fmt: skip
    if record is not None:
        record.write(out_dir, adapter, levels, records, method)
    return written


@dataclass
class Record:
    """What to keep for a report beside the pictures (``explained.npz``, see
    :mod:`headlens.report.explained`): the model's name in the run (default: its family), the
    levels (default: the pictures'; a report's slider runs over a sweep's levels) and the
    provenance of the checkpoint (:func:`headlens.provenance.run_provenance`)."""

    name: str | None = None
    levels: Sequence[float] | None = None
    provenance: dict | None = None

    def write(self, out_dir: Path, adapter, levels: Sequence[float], records: list[dict], method: str) -> Path:
        return write_explained(
            out_dir / FILE_NAME, self.name or adapter.family, adapter.family, self.levels or levels, adapter.sites,
            adapter.num_heads, records, method, self.provenance,
        )  # fmt: skip


def visualize_examples(
    subject: Subject,
    split: Split,
    out_dir: str | Path,
    n: int = 2,
    seed: int = 1234,
    levels: Sequence[float] = PICTURE_LEVELS,
    method: str = "ours",
    scale: int = 4,
    record: Record | None = None,
) -> list[dict[str, Path]]:
    """The pictures of ``n`` seeded easy-VQA questions of ``split`` (see :func:`draw_examples`)."""
    examples = sample(subject.dataset(split), n, seed)
    return draw_examples(subject.adapter, examples, subject.answers, subject.tokenizer, out_dir, levels, method, scale,
                         record=record)  # fmt: skip


def draw_patches(adapter, examples: Subset, out_dir: str | Path, levels: Sequence[float] = PICTURE_LEVELS,
                 method: str = "ours", scale: int = 8, record: Record | None = None) -> list[Path]:  # fmt: skip
    """One-row figures of a ViT's patch relevance after pruning, drawn over each image
    (grey, enlarged ``scale`` times); the titles carry the pruned model's class. With ``record``,
    also ``out_dir/explained.npz`` (see :func:`draw_examples`). Returns the paths."""
    from .viz.figures import pruning_row

    batch = adapter.examples(examples).collate(range(len(examples))).to(adapter.device)
    explained = explain(adapter, batch, levels, map_methods=(method,))
    pixels = batch.fields["pixels"]
    size = pixels.shape[-1] * scale
    side = math.isqrt(explained.image[method].shape[-1] - 1)  # [CLS] and side² patches
    boxes = (grid_boxes(side) * size).round().astype(int)  # patches in pixels
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, shown = [], []
    for row, example_id in enumerate(batch.ids):
        grey = pixels[row].mean(0).float().cpu().numpy()
        image = upscale(np.repeat((255 * grey / max(float(grey.max()), 1e-6)).astype(np.uint8)[..., None], 3, -1), scale)
        patches = explained.image[method][row, :, 1:].cpu().numpy()  # [CLS] first
        label = int(batch.labels[row].argmax())
        labels = ["[CLS]"] + [f"patch {i}" for i in range(len(boxes))]
        shown.append(Shown(f"{example_id} (label {label})", image, labels, [None, *boxes.tolist()]))
        figure = pruning_row(image, boxes, [], explained.levels, patches, np.zeros((len(levels), 0)),
                             [str(int(p)) for p in explained.predictions[row]], f"{example_id} (label {label})")  # fmt: skip
        written.append(out_dir / f"{example_id}.png")
        save_figure(figure, written[-1])
    if record is not None:
        records = explain_examples(adapter, batch, shown, record.levels or levels, map_method=method)
        record.write(out_dir, adapter, levels, records, method)
    return written


#: map methods compared by the pointing game.
POINTING_METHODS = ("ours", "lrp", "raw", "rollout")


def pointing_table(
    subject: Subject,
    data,
    levels: Sequence[float] = PICTURE_LEVELS,
    methods: Sequence[str] = POINTING_METHODS,
    batch_size: int = 32,
) -> dict:
    """Pointing game and relevance share on the shape, per method and level, over ``data``
    (a sample of an :class:`~headlens.data.easy_vqa.EasyVQA`). A box is on the shape when
    more than 2 % of its cell is foreground. Returns ``{"levels", "chance", "rows": [...]}``."""
    adapter = subject.adapter
    scores = {m: [[] for _ in levels] for m in methods}
    targets = []
    for _, batch in iterate(data, batch_size):
        batch = batch.to(adapter.device)
        explained = explain(adapter, batch, levels, map_methods=methods, predict=False)
        targets.append(data.base.shape_boxes(batch.extras["image_rows"]))
        for m in methods:
            for i in range(len(levels)):
                scores[m][i].append(explained.image[m][:, i].cpu())
    on_target = torch.cat(targets)
    rows = []
    for m in methods:
        for i, level in enumerate(levels):
            hit, share = pointing_game(torch.cat(scores[m][i]), on_target)
            rows.append({"method": m, "level": level, "pointing": hit, "share": share})
    return {"levels": list(levels), "chance": 100.0 * on_target.double().mean().item(), "rows": rows}


def format_pointing(table: dict) -> list[str]:
    """Markdown table: rows = methods, columns = levels, cells = pointing % / share %."""
    levels = table["levels"]
    lines = [
        "| map | " + " | ".join(f"{round(100 * l)}% pruned" for l in levels) + " |",
        "|---|" + "---|" * len(levels),
    ]
    by_method: dict[str, list] = {}
    for row in table["rows"]:
        by_method.setdefault(row["method"], []).append(row)
    for method, rows in by_method.items():
        lines.append(f"| {method} | " + " | ".join(f"{r['pointing']:.1f} / {r['share']:.1f}" for r in rows) + " |")
    return lines
