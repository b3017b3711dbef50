"""Box relevance drawn on images: the original's per-pixel box mask, and a colour overlay.

The original's mask (:func:`box_mask`, :func:`masked_image`) normalises each map min–max, as
its JPEGs did. The colour overlay does not: a sequential map whose opacity rises with
relevance, on a scale shared by the maps compared (an example's pruning levels), so a
near-flat map after heavy pruning looks faint, not as strong as the unpruned one.

Images are ``uint8[H, W, 3]`` arrays; boxes are pixel ``(x1, y1, x2, y2)``.
"""

from __future__ import annotations

import numpy as np


def min_max(scores: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; constant scores give zeros."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0 or scores.max() == scores.min():
        return np.zeros_like(scores)
    return (scores - scores.min()) / (scores.max() - scores.min())


def box_mask(boxes: np.ndarray, scores: np.ndarray, height: int, width: int) -> np.ndarray:
    """``float[H, W]``: each box writes its min–max normalised score on its pixels; where boxes
    overlap the maximum wins; pixels in no box are 0 (the original's visualisation mask)."""
    return _paint(boxes, min_max(scores), height, width)


def _paint(boxes: np.ndarray, values: np.ndarray, height: int, width: int) -> np.ndarray:
    """``float[H, W]``: each box's value on its pixels, the maximum where boxes overlap, 0 elsewhere."""
    mask = np.zeros((height, width), dtype=np.float64)
    for (x1, y1, x2, y2), value in zip(np.asarray(boxes), values):
        left, top = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
        right, bottom = min(int(np.ceil(x2)), width), min(int(np.ceil(y2)), height)
        region = mask[top:bottom, left:right]
        np.maximum(region, value, out=region)
    return mask


def masked_image(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image multiplied by a per-pixel mask in [0, 1] (dark where irrelevant)."""
    return np.clip(image.astype(np.float64) * mask[..., None], 0, 255).astype(np.uint8)


#: the colour overlays' map (sequential: light = little relevance, dark red = most) and the
#: opacity of its darkest colour; opacity rises with relevance, so irrelevant boxes stay clear.
RELEVANCE_CMAP = "YlOrRd"
RELEVANCE_ALPHA = 0.85


def shared_scale(scores: np.ndarray) -> float:
    """The top of one colour scale for several maps (e.g. every pruning level of one example):
    their largest positive score, 1.0 when none is positive."""
    scores = np.asarray(scores, dtype=np.float64)
    top = float(scores.max()) if scores.size else 0.0
    return top if top > 0 else 1.0


def relevance_mask(boxes: np.ndarray, scores: np.ndarray, height: int, width: int, vmax: float) -> np.ndarray:
    """``float[H, W]`` in [0, 1]: each box writes ``score / vmax`` (negative scores 0, clipped at
    1) on its pixels; where boxes overlap the maximum wins; pixels in no box are 0. Unlike
    :func:`box_mask`, no min–max: a near-flat map stays faint on a scale shared with others."""
    return _paint(boxes, np.clip(np.asarray(scores, dtype=np.float64) / vmax, 0, 1), height, width)


def overlay(
    image: np.ndarray, boxes: np.ndarray, scores: np.ndarray, vmax: float | None = None, outline: int = 1
) -> np.ndarray:
    """The image under :data:`RELEVANCE_CMAP`, opacity rising with relevance (``score / vmax``;
    ``vmax`` shared across the maps compared, default these scores' :func:`shared_scale`);
    every box outlined in white, the most relevant one in black unless all score the same:
    ``uint8[H, W, 3]``."""
    from matplotlib import colormaps

    height, width = image.shape[:2]
    scores = np.asarray(scores, dtype=np.float64)
    mask = relevance_mask(boxes, scores, height, width, shared_scale(scores) if vmax is None else vmax)
    heat = colormaps[RELEVANCE_CMAP](mask)[..., :3] * 255
    alpha = (RELEVANCE_ALPHA * mask)[..., None]
    out = ((1 - alpha) * image.astype(np.float64) + alpha * heat).round().astype(np.uint8)
    best = int(np.argmax(scores)) if scores.size and scores.max() > scores.min() else -1  # none when flat
    for index, (x1, y1, x2, y2) in enumerate(np.asarray(boxes)):
        colour = 0 if index == best else 255
        left, top = int(np.clip(x1, 0, width - 1)), int(np.clip(y1, 0, height - 1))
        right, bottom = int(np.clip(np.ceil(x2) - 1, 0, width - 1)), int(np.clip(np.ceil(y2) - 1, 0, height - 1))
        out[top : top + outline, left : right + 1] = colour
        out[bottom - outline + 1 : bottom + 1, left : right + 1] = colour
        out[top : bottom + 1, left : left + outline] = colour
        out[top : bottom + 1, right - outline + 1 : right + 1] = colour
    return out


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement (easy-VQA's 64×64 images are too small to look at)."""
    return image.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else image


def save_image(array: np.ndarray, path, quality: int = 95) -> None:
    """Write ``uint8[H, W, 3]`` as JPEG or PNG (by the file's suffix), whole or not at all."""
    import io
    from pathlib import Path

    from PIL import Image

    from ..files import atomic_write

    buffer = io.BytesIO()
    jpeg = Path(path).suffix.lower() in (".jpg", ".jpeg")
    Image.fromarray(array).save(buffer, format="JPEG" if jpeg else "PNG", quality=quality)
    atomic_write(path, buffer.getvalue())
