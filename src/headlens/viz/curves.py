"""Accuracy against fraction pruned."""

from __future__ import annotations

from typing import Sequence

from . import pyplot

#: line style per pruning order (the report's dashes follow it).
ORDER_STYLE = {"positive": "--", "negative": "-"}


def method_colours(methods) -> dict[str, str]:
    """One colour per scoring method (``#rrggbb``), tab10 in sorted name order: the same
    method has the same colour in every curve figure and in the report."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    return {m: to_hex(colormaps["tab10"](i % 10)) for i, m in enumerate(sorted(set(methods)))}


#: y-axis labels of the metrics a curve may carry besides accuracy (perplexity is drawn on a log axis).
METRIC_LABELS = {"accuracy": "accuracy (%)", "perplexity": "perplexity (log scale)", "nll": "NLL per token (nats)",
                 "token_accuracy": "next-token accuracy (%)"}  # fmt: skip


def plot_curves(curves: Sequence, title: str | None = None, metric: str = "accuracy"):
    """One panel per (model, unit, protocol); one line per (method, order): colour by method,
    line style by order, one legend for every panel, outside them on the right.

    ``curves`` are :class:`headlens.sweep.Curve` objects (or anything with the
    same attributes); ``metric``: ``accuracy`` or one of a curve's ``metrics`` (``perplexity``
    on a log axis). Returns the matplotlib figure.
    """
    plt = pyplot()
    from matplotlib.lines import Line2D

    panels: dict[tuple, list] = {}
    for curve in curves:
        panels.setdefault((curve.model, curve.unit, curve.protocol), []).append(curve)
    colours = method_colours(c.method for c in curves)
    n = max(len(panels), 1)
    cols = min(n, 2)
    rows = -(-n // cols)
    figure, axes = plt.subplots(rows, cols, figsize=(5.6 * cols + 1.8, 3.6 * rows), squeeze=False)
    for ax, ((model, unit, protocol), members) in zip(axes.flat, sorted(panels.items())):
        for c in sorted(members, key=lambda c: (c.method, c.order)):
            ax.plot(
                [100 * level for level in c.levels], c.accuracy if metric == "accuracy" else c.metrics[metric],
                ORDER_STYLE.get(c.order, "-"), marker="o", markersize=3, color=colours[c.method],
            )  # fmt: skip
        ax.set_title(f"{model} · {unit}s · {protocol.replace('_', '-')}", fontsize=10)
        ax.set_xlabel(f"{unit}s pruned (%)")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        if metric == "perplexity":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    orders = sorted({c.order for c in curves}, key=list(ORDER_STYLE).index)
    handles = [Line2D([], [], color=colour, marker="o", markersize=3, label=m) for m, colour in colours.items()]
    handles += [Line2D([], [], color="0.3", linestyle=ORDER_STYLE[o], label=f"{o} order") for o in orders]
    if title:
        figure.suptitle(title)
    figure.tight_layout(rect=(0, 0, 1 - 1.6 / (5.6 * cols + 1.8), 1))
    figure.legend(handles=handles, loc="center right", fontsize=8, frameon=False, title="method · order",
                  title_fontsize=8)  # fmt: skip
    return figure
