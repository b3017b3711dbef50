"""Edits of a model, all scoped and reversible through one mechanism
(:mod:`headlens.edits.handles`): interception of every site's attention probabilities,
per-example head gates, eval mode, headlens' attention function, LRP mode — and the
capture of maps, gradients and relevance that uses them."""

from .capture import GRADIENT, RELEVANCE, Capture, capture, capture_options
from .handles import Edits, editing
from .intercept import eval_mode, gates, intercept
from .lrp import lrp_mode

__all__ = [
    "GRADIENT", "RELEVANCE", "Capture", "Edits", "capture", "capture_options", "editing", "eval_mode", "gates", "intercept",
    "lrp_mode",
]  # fmt: skip
