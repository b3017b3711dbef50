"""Figures: the one-row pruning figure (with its colour bar) and the head-score grid."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import pyplot
from .images import RELEVANCE_ALPHA, RELEVANCE_CMAP, overlay, shared_scale
from .tokens import draw_tokens


def pruning_row(
    image: np.ndarray,
    boxes: np.ndarray,
    tokens: Sequence[str],
    levels: Sequence[float],
    box_scores: Sequence[np.ndarray],
    token_scores: Sequence[np.ndarray],
    answers: Sequence[str],
    question: str = "",
):
    """One row: the original image, then one panel per pruning level — the colour overlay of
    that level's box relevance on one scale shared by every level (a colour bar at the end),
    its token relevance underneath (no token row for an image-only model, whose ``tokens`` is
    empty), and the pruned model's answer in the title. Returns the figure."""
    plt = pyplot()
    panels = 1 + len(levels)
    with_tokens = len(tokens) > 0
    vmax = shared_scale(np.asarray([np.asarray(b, dtype=np.float64) for b in box_scores]))
    figure = plt.figure(figsize=(2.6 * panels + 0.6, 3.3 if with_tokens else 2.9))
    ratios = dict(width_ratios=[1] * panels + [0.07])
    if with_tokens:
        grid = figure.add_gridspec(2, panels + 1, height_ratios=[6, 1], hspace=0.05, wspace=0.05, **ratios)
    else:
        grid = figure.add_gridspec(1, panels + 1, wspace=0.05, **ratios)
    ax = figure.add_subplot(grid[0, 0])
    ax.imshow(image)
    ax.set_title("original", fontsize=10)
    ax.set_axis_off()
    for column, (level, boxes_scores, words, answer) in enumerate(zip(levels, box_scores, token_scores, answers), 1):
        ax = figure.add_subplot(grid[0, column])
        ax.imshow(overlay(image, boxes, np.asarray(boxes_scores), vmax))
        ax.set_title(f"{100 * level:.0f}% pruned: {answer}", fontsize=10)
        ax.set_axis_off()
        if with_tokens:
            draw_tokens(figure.add_subplot(grid[1, column]), tokens, words, fontsize=7)
    relevance_colour_bar(figure, figure.add_subplot(grid[0, panels]), vmax)
    if question:
        figure.suptitle(question, fontsize=11)
    return figure


def relevance_colour_bar(figure, ax, vmax: float) -> None:
    """The overlays' colour scale from 0 to ``vmax`` as it looks over white (colour and opacity)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    values = np.linspace(0, 1, 256)[:, None]
    blended = (1 - RELEVANCE_ALPHA * values) + RELEVANCE_ALPHA * values * colormaps[RELEVANCE_CMAP](values[:, 0])[:, :3]
    bar = figure.colorbar(ScalarMappable(Normalize(0, vmax), ListedColormap(blended)), cax=ax)
    bar.set_label("box relevance", fontsize=8)
    bar.ax.tick_params(labelsize=7)


def head_grid(scores: np.ndarray, site_names: Sequence[str], title: str = "", signed: bool = True):
    """Heat map of head scores ``[sites, heads]``, sites as rows labelled by name. Returns the figure."""
    plt = pyplot()
    scores = np.asarray(scores, dtype=np.float64)
    sites, heads = scores.shape
    figure, ax = plt.subplots(figsize=(1.2 + 0.45 * heads, 0.8 + 0.28 * sites))
    if signed:
        bound = float(np.abs(scores).max()) if scores.size else 0.0
        bound = bound or 1.0
        image = ax.imshow(scores, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    else:
        image = ax.imshow(scores, cmap="viridis", aspect="auto")
    ax.set_yticks(range(sites), labels=list(site_names), fontsize=8)
    ax.set_xticks(range(heads), labels=[str(h) for h in range(heads)], fontsize=8)
    ax.set_xlabel("head")
    figure.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    if title:
        ax.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure


def save_figure(figure, path, dpi: int = 110) -> None:
    """Save a figure as PNG (written whole or not at all), then close it."""
    import io

    from ..files import atomic_write

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(figure)
    atomic_write(path, buffer.getvalue())
