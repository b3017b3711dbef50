"""Accuracy against fraction pruned."""

from __future__ import annotations

from typing import Sequence

from . import pyplot

_ORDER_STYLE = {"positive": "--", "negative": "-"}


def plot_curves(curves: Sequence, title: str | None = None):
    """One panel per (model, unit, protocol); one line per (method, order).

    ``curves`` are :class:`headlens.sweep.Curve` objects (or anything with the
    same attributes). Returns the matplotlib figure.
    """
    plt = pyplot()

    panels: dict[tuple, list] = {}
    for curve in curves:
        panels.setdefault((curve.model, curve.unit, curve.protocol), []).append(curve)
    methods = sorted({c.method for c in curves})
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    n = max(len(panels), 1)
    cols = min(n, 4)
    rows = -(-n // cols)
    figure, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, ((model, unit, protocol), members) in zip(axes.flat, sorted(panels.items())):
        for c in sorted(members, key=lambda c: (c.method, c.order)):
            ax.plot(
                [100 * level for level in c.levels], c.accuracy,
                _ORDER_STYLE.get(c.order, "-"), marker="o", markersize=3, color=colours[c.method],
                label=f"{c.method} {c.order} (AUC {c.auc:.1f})",
            )  # fmt: skip
        ax.set_title(f"{model} · {unit}s · {protocol.replace('_', '-')}", fontsize=10)
        ax.set_xlabel(f"{unit}s pruned (%)")
        ax.set_ylabel("VQA accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure
