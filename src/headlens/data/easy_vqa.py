"""easy-VQA (the PyPI package ``easy-vqa``): 64×64 images of one shape, 13 answers.

About 4,000/1,000 train/test images and 38,575/9,673 questions ("what color is
the shape?", "is there not a red shape?", …). Images become *region features*
for LXMERT and VisualBERT, in the role the Faster R-CNN features play for VQA v2:

* the image is cut into a ``grid × grid`` of cells (default 4 × 4 = 16 regions of
  16 × 16 px); each cell is a region whose box is the cell, normalised to [0, 1];
* the background colour is the median of the border pixels and the *foreground*
  a soft mask ``clip(Σ_c |pixel − background| / 0.3, 0, 1)``;
* each region's feature concatenates pixel statistics of its cell — its
  foreground mask at 8 × 8 (64 values), its pixels average-pooled to 4 × 4 × 3
  (48), its foreground fraction (1) and the mean colour of its foreground (3) —
  with *object descriptors* of the whole shape (fill ratio = area / box area,
  aspect, taper = top width / bottom width, area and height as fractions of the
  image: 5 values), given only to regions the shape covers (> 2 % of the cell),
  as a detector's object features sit on the object's boxes; 121 values in all,
  standardised with the training set's mean and deviation.

Measured (docs/method.md#easy-vqa-region-features): raw pixel grids
alone left shape questions near chance within a CPU budget; the object
descriptors let tiny models pass 95 % in a few minutes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import InputError
from ..viz.images import upscale
from .batch import Batch

FEATURE_VERSION = 1
MASK_RES = 8  # foreground mask samples per cell side
POOL_RES = 4  # pooled pixels per cell side
SHAPES = ("circle", "rectangle", "triangle")
_WORDS = re.compile(r"[a-z]+|\?")


def package_root() -> Path:
    """Folder of the installed ``easy_vqa`` package's data."""
    try:
        import easy_vqa
    except ImportError as error:  # pragma: no cover - easy-vqa is a dependency
        raise ImportError("the easy-VQA data comes from the PyPI package 'easy-vqa': pip install easy-vqa") from error
    return Path(easy_vqa.__file__).parent / "data"


@dataclass
class Split:
    """The raw questions of one split and its images (``uint8[n, 64, 64, 3]``, by image id)."""

    name: str
    questions: list[str]
    answers: list[str]
    image_ids: np.ndarray  # per question
    images: np.ndarray  # [n_images, 64, 64, 3]
    image_index: dict[int, int]  # image id -> row of `images`
    _features: dict = field(default_factory=dict, repr=False)

    def region_features(self, grid: int) -> tuple[np.ndarray, np.ndarray]:
        """:func:`region_features` of this split's images (computed once per grid)."""
        if grid not in self._features:
            self._features[grid] = region_features(self.images, grid)
        return self._features[grid]


def load_split(split: str, root: Path | None = None) -> Split:
    """Read ``<root>/<split>/questions.json`` and every ``<root>/<split>/images/<id>.png``."""
    from PIL import Image

    folder = (root or package_root()) / split
    path = folder / "questions.json"
    if not path.is_file():
        raise FileNotFoundError(f"easy-VQA questions not found: {path}")
    records = json.loads(path.read_text())
    try:
        questions, answers, image_ids = ([r[k] for r in records] for k in range(3))
    except (IndexError, TypeError, KeyError):
        raise ValueError(f"{path}: expected a list of [question, answer, image id] records") from None
    wanted = sorted(set(image_ids))
    images = []
    for image_id in wanted:
        image_path = folder / "images" / f"{image_id}.png"
        if not image_path.is_file():
            raise FileNotFoundError(f"easy-VQA image {image_id} of {path} not found: {image_path}")
        with Image.open(image_path) as image:
            images.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
    return Split(
        split,
        questions, answers, np.asarray(image_ids), np.stack(images), {i: r for r, i in enumerate(wanted)}
    )


def answer_list(root: Path | None = None) -> list[str]:
    """The 13 answers, in the package's order (the class index order of our models)."""
    return [line.strip() for line in ((root or package_root()) / "answers.txt").read_text().splitlines() if line.strip()]


# --- region features -------------------------------------------------------------


def foreground(images: np.ndarray) -> np.ndarray:
    """Soft foreground masks ``float32[n, H, W]`` in [0, 1] of ``uint8[n, H, W, 3]`` images."""
    pixels = images.astype(np.float32) / 255.0
    border = np.concatenate([pixels[:, 0], pixels[:, -1], pixels[:, :, 0], pixels[:, :, -1]], axis=1)
    background = np.median(border, axis=1)  # [n, 3]
    distance = np.abs(pixels - background[:, None, None]).sum(-1)
    return np.clip(distance / 0.3, 0.0, 1.0)


#: a cell belongs to the shape when more than this share of its pixels is foreground.
SHAPE_COVER = 0.02


def cell_cover(fg: np.ndarray, grid: int) -> np.ndarray:
    """``float[n, grid²]``: the foreground share of each cell of ``fg`` ``[n, H, W]``, row by row."""
    n, height, width = fg.shape
    cells = np.moveaxis(fg.reshape(n, grid, height // grid, grid, width // grid), 3, 2)
    return cells.mean((3, 4)).reshape(n, grid * grid)


def grid_boxes(grid: int) -> np.ndarray:
    """``float32[grid², 4]``: normalised ``(x1, y1, x2, y2)`` of each cell, row by row."""
    ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    return (np.stack([xs, ys, xs + 1, ys + 1], -1).reshape(-1, 4) / grid).astype(np.float32)


def object_descriptors(fg: np.ndarray) -> np.ndarray:
    """``float32[n, 5]`` per image: fill ratio, aspect, taper, area and height fractions of the shape."""
    n, height, width = fg.shape
    hard = fg > 0.5
    rows, cols = hard.any(2), hard.any(1)  # [n, H], [n, W]
    present = rows.any(1)
    y1, y2 = rows.argmax(1), height - 1 - rows[:, ::-1].argmax(1)
    x1, x2 = cols.argmax(1), width - 1 - cols[:, ::-1].argmax(1)
    h, w = (y2 - y1 + 1).astype(np.float32), (x2 - x1 + 1).astype(np.float32)
    area = hard.sum((1, 2)).astype(np.float32)
    widths = hard.sum(2).astype(np.float32)  # [n, H]
    r = np.arange(height)[None, :]
    quarter = np.maximum(h // 4, 1)[:, None]
    top = (r >= y1[:, None]) & (r < y1[:, None] + quarter)
    bottom = (r <= y2[:, None]) & (r > y2[:, None] - quarter)
    top_width = (widths * top).sum(1) / top.sum(1)
    bottom_width = (widths * bottom).sum(1) / bottom.sum(1)
    descriptors = np.stack(
        [area / (h * w), w / h, top_width / np.maximum(bottom_width, 1.0), area / (height * width), h / height], 1
    )
    return np.where(present[:, None], descriptors, 0.0).astype(np.float32)


def region_features(images: np.ndarray, grid: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Unstandardised region features ``float32[n, grid², 121]`` and foreground masks ``[n, H, W]``."""
    n, height, width, _ = images.shape
    if height % (grid * MASK_RES) or width % (grid * MASK_RES):
        raise InputError(f"key 'data.grid': {height}×{width} images cannot be cut into a {grid}×{grid} grid of "
                         f"{MASK_RES}-pixel masks; use a grid that divides {height // MASK_RES}")  # fmt: skip
    pixels = images.astype(np.float32) / 255.0
    fg = foreground(images)
    cell = height // grid

    def cells(x):  # [n, H, W, ...] -> [n, grid, grid, cell, cell, ...]
        x = x.reshape(n, grid, cell, grid, cell, *x.shape[3:])
        return np.moveaxis(x, 3, 2)

    fg_cells, pixel_cells = cells(fg), cells(pixels)
    k = cell // MASK_RES
    mask = fg_cells.reshape(n, grid, grid, MASK_RES, k, MASK_RES, k).mean((4, 6))
    p = cell // POOL_RES
    pooled = pixel_cells.reshape(n, grid, grid, POOL_RES, p, POOL_RES, p, 3).mean((4, 6))
    cover = cell_cover(fg, grid)[..., None]  # [n, regions, 1]
    weights = fg_cells[..., None]
    colour = (pixel_cells * weights).sum((3, 4)) / np.maximum(weights.sum((3, 4)), 1e-6)
    regions = grid * grid
    shape = object_descriptors(fg)[:, None, :] * (cover > SHAPE_COVER)
    features = np.concatenate(
        [
            mask.reshape(n, regions, -1),
            pooled.reshape(n, regions, -1),
            cover,
            colour.reshape(n, regions, 3),
            shape,
        ],
        axis=-1,
    )
    return features.astype(np.float32), fg


@dataclass
class FeatureSpec:
    """How a model's region features were made; saved beside the model as ``features.json``."""

    grid: int
    mean: list[float]
    std: list[float]
    version: int = FEATURE_VERSION

    @classmethod
    def fit(cls, features: np.ndarray, grid: int) -> "FeatureSpec":
        flat = features.reshape(-1, features.shape[-1]).astype(np.float64)
        return cls(grid, flat.mean(0).tolist(), (flat.std(0) + 1e-3).tolist())

    def standardise(self, features: np.ndarray) -> np.ndarray:
        return ((features - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def save(self, folder: Path) -> None:
        (Path(folder) / "features.json").write_text(json.dumps(self.__dict__))

    @classmethod
    def load(cls, folder: Path) -> "FeatureSpec":
        path = Path(folder) / "features.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not an easy-VQA model folder (no features.json)")
        spec = cls(**json.loads(path.read_text()))
        if spec.version != FEATURE_VERSION:
            raise ValueError(f"{path}: features version {spec.version}, this headlens makes version {FEATURE_VERSION}")
        return spec


# --- tokenizer ----------------------------------------------------------------------


def question_words(questions: Sequence[str]) -> list[str]:
    return sorted({w for q in questions for w in _WORDS.findall(q.lower())})


def build_tokenizer(questions: Sequence[str]):
    """A BERT (WordPiece) tokenizer whose vocabulary is the questions' words, whole."""
    from transformers import BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocabulary = {token: index for index, token in enumerate(specials + question_words(questions))}
    return BertTokenizer(vocab=vocabulary)


# --- the dataset ----------------------------------------------------------------------


class EasyVQA:
    """One split of easy-VQA, as batches for one model.

    Args:
        split: the raw split (:func:`load_split`).
        tokenizer: turns questions into token ids.
        spec: the feature standardisation the model was trained with.
        answers: the model's answer list (class order).
    """

    def __init__(self, split: Split, tokenizer, spec: FeatureSpec, answers: Sequence[str]):
        features, fg = split.region_features(spec.grid)
        self.split, self.spec = split, spec
        self.features = torch.from_numpy(spec.standardise(features))
        self.foreground = fg
        self.boxes = torch.from_numpy(grid_boxes(spec.grid))
        # Questions repeat (templates × attributes): tokenize each distinct one once.
        distinct, row_of = np.unique(np.asarray(split.questions), return_inverse=True)
        encoded = tokenizer(distinct.tolist(), padding=True, return_tensors="pt")
        rows = torch.from_numpy(row_of.reshape(-1))
        self.input_ids, self.attention_mask = encoded["input_ids"][rows], encoded["attention_mask"][rows]
        index = {a: i for i, a in enumerate(answers)}
        unknown = sorted({a for a in split.answers if a not in index})
        if unknown:
            raise ValueError(f"answers {unknown} are not in the model's answer list of {len(index)}")
        self.answer_index = torch.tensor([index[a] for a in split.answers])
        self.image_rows = torch.tensor([split.image_index[int(i)] for i in split.image_ids])
        self.n_answers = len(index)

    def __len__(self) -> int:
        return len(self.split.questions)

    def describe(self, index: int, scale: int = 4) -> tuple[str, str, np.ndarray, np.ndarray]:
        """``(question, image name, image uint8[H, W, 3], pixel boxes [n, 4])`` for pictures; the
        64×64 image is enlarged ``scale`` times."""
        row = int(self.image_rows[index])
        image_id = self.split.image_ids[index]
        image = upscale(self.split.images[row], scale)
        boxes = self.boxes.numpy() * image.shape[0]
        return self.split.questions[index], f"{self.split.name}_{image_id}", image, boxes

    def shape_boxes(self, image_rows: torch.Tensor) -> torch.Tensor:
        """``bool[batch, regions]``: the regions on the shape (more than :data:`SHAPE_COVER` foreground)."""
        return torch.from_numpy(cell_cover(self.foreground[image_rows.cpu().numpy()], self.spec.grid) > SHAPE_COVER)

    def collate(self, indices: Sequence[int]) -> Batch:
        rows = torch.as_tensor(list(indices), dtype=torch.long)
        mask = self.attention_mask[rows]
        length = int(mask.sum(1).max())
        images = self.image_rows[rows]
        fields = {
            "input_ids": self.input_ids[rows, :length],
            "attention_mask": mask[:, :length],
            "features": self.features[images],
            "boxes": self.boxes.expand(len(rows), -1, -1),
        }
        labels = torch.nn.functional.one_hot(self.answer_index[rows], self.n_answers).float()
        return Batch(fields, labels, [f"{self.split.name}-{int(i)}" for i in rows], {"image_rows": images})
