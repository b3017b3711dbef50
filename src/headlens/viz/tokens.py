"""Token relevance as text: the original's LaTeX colour boxes, HTML, and a matplotlib strip."""

from __future__ import annotations

import html
from typing import Sequence

import numpy as np

from . import pyplot
from .images import min_max

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}  # fmt: skip


def percent_scores(scores: Sequence[float]) -> list[int]:
    """Relevance scaled min–max to 0…100; values under 1 become 0 (as the original wrote them)."""
    values = 100 * min_max(np.asarray(scores, dtype=np.float64))
    return [0 if v < 1 else int(round(v)) for v in values]


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def latex_document(tokens: Sequence[str], scores: Sequence[float], colour: str = "red") -> str:
    """A standalone LaTeX document: ``\\colorbox{red!v}{token}`` per token, ``v`` in 0…100;
    ``##`` word pieces are glued to the previous token without a space."""
    parts = []
    for token, value in zip(tokens, percent_scores(scores)):
        glued = token.startswith("##")
        box = f"\\colorbox{{{colour}!{value}}}{{\\strut {_latex_escape(token[2:] if glued else token)}}}"
        parts.append(box if glued or not parts else " " + box)
    body = "".join(parts)
    return (
        "\\documentclass[varwidth=150mm]{standalone}\n"
        "\\usepackage[dvipsnames]{xcolor}\n"
        "\\begin{document}\n"
        "{\\setlength{\\fboxsep}{0pt}%\n"
        f"{body}\n"
        "}\n"
        "\\end{document}\n"
    )


def token_html(tokens: Sequence[str], scores: Sequence[float], title: str = "") -> str:
    """An HTML fragment: each token on a red background whose opacity is its 0…100 score."""
    spans = []
    for token, value in zip(tokens, percent_scores(scores)):
        glued = token.startswith("##")
        text = html.escape(token[2:] if glued else token)
        span = f'<span style="background: rgba(220, 30, 30, {value / 100:.2f}); padding: 1px 2px" title="{value}">{text}</span>'
        spans.append(span if glued or not spans else " " + span)
    heading = f"<h3>{html.escape(title)}</h3>\n" if title else ""
    return f'<div style="font-family: sans-serif; font-size: 18px; line-height: 1.8">\n{heading}{"".join(spans)}\n</div>\n'


def draw_tokens(ax, tokens: Sequence[str], scores: Sequence[float], y: float = 0.5, fontsize: int = 9) -> None:
    """Write tokens left to right on an axis (axes coordinates), each on a red box of its score."""
    figure = ax.figure
    renderer = figure.canvas.get_renderer()
    x = 0.0
    for token, value in zip(tokens, percent_scores(scores)):
        glued = token.startswith("##")
        label = token[2:] if glued else token
        if not glued and x > 0:
            x += 0.03
        text = ax.text(x, y, label, transform=ax.transAxes, fontsize=fontsize, va="center", ha="left",
                       bbox=dict(boxstyle="square,pad=0.15", facecolor=(0.86, 0.12, 0.12, value / 100), edgecolor="none"))  # fmt: skip
        extent = text.get_window_extent(renderer=renderer).transformed(ax.transAxes.inverted())
        x = extent.x1
    ax.set_axis_off()


def token_strip(tokens: Sequence[str], scores: Sequence[float], title: str = ""):
    """A one-line figure of the tokens on red boxes of their relevance. Returns the figure."""
    plt = pyplot()

    figure, ax = plt.subplots(figsize=(max(3.0, 0.55 * len(tokens)), 0.8 if not title else 1.1))
    draw_tokens(ax, tokens, scores, fontsize=11)
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    return figure
