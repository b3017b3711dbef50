"""Writing the pictures of one explained example (docs/method.md#pictures-after-pruning, and our own variants).

Per example, in its own folder:

* the original's files: the image × per-pixel box mask as JPEG and the tokens as
  LaTeX colour boxes, one pair per level — VisualBERT ``<image>_<p>.jpg/.tex``,
  LXMERT ``<image>_prune_<p>.jpg/.tex`` plus ``<image>_orig.jpg`` (``p`` = percent pruned);
* ``<stem>_overlay.png`` per level: a sequential colour map over the image, opacity rising
  with relevance, on one scale for every level of the example; boxes outlined;
* ``tokens.html`` (every level) and ``tokens_<p>.png`` token strips;
* ``figure.png``: original + one panel per level with the pruned model's answer, and the
  overlays' colour bar;
* ``heads.png``: the head scores, sites × heads.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

import numpy as np

from .files import atomic_write
from .viz.figures import head_grid, pruning_row, save_figure
from .viz.images import box_mask, masked_image, overlay, save_image, shared_scale
from .viz.tokens import latex_document, token_html, token_strip

def write_pictures(
    folder: str | Path,
    original_pictures: tuple[str, bool],
    image_name: str,
    image: np.ndarray,
    boxes: np.ndarray,
    tokens: Sequence[str],
    levels: Sequence[float],
    token_scores: np.ndarray,
    box_scores: np.ndarray,
    answers: Sequence[str],
    question: str,
    head_scores: np.ndarray,
    site_names: Sequence[str],
    score_method: str = "grad",
) -> dict[str, Path]:
    """Write every picture of one example; ``token_scores`` ``[levels, T]``, ``box_scores``
    ``[levels, V]``, ``boxes`` in pixels of ``image``. ``original_pictures``: the stem of the
    original's files (``{image}``, ``{p}`` = percent pruned) and whether it also wrote the image
    itself (the model family's table says). ``head_scores`` were ranked by ``score_method``. Returns the paths by name."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem, with_original = original_pictures
    height, width = image.shape[:2]
    written: dict[str, Path] = {}
    if with_original:
        written["orig"] = folder / f"{image_name}_orig.jpg"
        save_image(image, written["orig"])
    pages, vmax = [], shared_scale(box_scores)  # one colour scale for every level's overlay
    for level, words, regions, answer in zip(levels, token_scores, box_scores, answers):
        name = stem.format(image=image_name, p=round(100 * level))
        save_image(masked_image(image, box_mask(boxes, regions, height, width)), folder / f"{name}.jpg")
        atomic_write(folder / f"{name}.tex", latex_document(tokens, words))
        save_image(overlay(image, boxes, regions, vmax), folder / f"{name}_overlay.png")
        save_figure(token_strip(tokens, words, f"{round(100 * level)}% pruned: {answer}"), folder / f"tokens_{round(100 * level)}.png")
        pages.append(token_html(tokens, words, f"{round(100 * level)}% of heads pruned — answer: {answer}"))
        written[f"jpg_{round(100 * level)}"] = folder / f"{name}.jpg"
    atomic_write(folder / "tokens.html", f"<!doctype html>\n<title>{html.escape(question)}</title>\n" + "".join(pages))
    written["figure"] = folder / "figure.png"
    save_figure(pruning_row(image, boxes, tokens, levels, box_scores, token_scores, answers, question), written["figure"])
    written["heads"] = folder / "heads.png"
    save_figure(head_grid(head_scores, site_names, f"head scores ({score_method})"), written["heads"])
    return written
