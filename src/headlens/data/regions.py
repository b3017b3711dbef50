"""Region features of real VQA images, read one image at a time.

* :class:`Obj36TSV` — LXMERT's precomputed Faster R-CNN features (``*_obj36.tsv``, many GB):
  tab-separated ``img_id, img_h, img_w, objects_id, objects_conf, attrs_id, attrs_conf,
  num_boxes, boxes, features`` with base64 arrays (boxes ``float32[n, 4]`` pixel
  ``x1, y1, x2, y2``; features ``float32[n, 2048]``). It is never loaded whole: one scan
  records each image's byte offset (kept beside the file, or in the cache when the
  folder is read-only, and reused while the file is unchanged).
* :class:`NpzFolder` — one ``<image id>.npz`` per image (``boxes``, ``features``,
  ``img_h``, ``img_w``): the format headlens writes (:func:`convert_tsv`).
* :class:`LmdbFeatures` — MMF's LMDB (a pickled ``keys`` list; per image a pickled dict
  with ``features``, ``bbox``, ``num_boxes``, ``image_width``, ``image_height``). Needs
  the ``lmdb`` package.

Every reader raises a clear error naming the file and the image on bad input.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

from ..io import atomic_write

TSV_FIELDS = (
    "img_id", "img_h", "img_w", "objects_id", "objects_conf", "attrs_id", "attrs_conf", "num_boxes", "boxes",
    "features",
)  # fmt: skip
csv.field_size_limit(sys.maxsize)


@dataclass
class Regions:
    """The boxes of one image: ``boxes`` ``float32[n, 4]`` pixel ``x1, y1, x2, y2``;
    ``features`` ``float32[n, d]``; the image's ``height`` and ``width`` in pixels."""

    boxes: np.ndarray
    features: np.ndarray
    height: int
    width: int

    def normalised_boxes(self) -> np.ndarray:
        """``(x1/W, y1/H, x2/W, y2/H)``, the positions LXMERT takes."""
        scale = np.array([self.width, self.height, self.width, self.height], dtype=np.float32)
        return self.boxes / scale


class FeatureSource(Protocol):
    """Anything that gives an image's regions by id."""

    def __contains__(self, image_id: str) -> bool: ...

    def get(self, image_id: str) -> Regions: ...


class MissingFeatures(KeyError):
    """An image id with no features in a feature source."""

    def __str__(self) -> str:
        return str(self.args[0])


def _decode(field: str, dtype, shape, where: str) -> np.ndarray:
    try:
        array = np.frombuffer(base64.b64decode(field), dtype=dtype)
        return array.reshape(shape)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{where}: cannot decode a {np.dtype(dtype).name} array of shape {shape}: {error}") from None


class Obj36TSV:
    """LXMERT's ``*_obj36.tsv`` feature file, read by image id (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, index_dir: str | os.PathLike | None = None):
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            from ..download import hint

            raise FileNotFoundError(f"LXMERT features not found: {self.path}; fetch them with `{hint('lxmert-features', path)}`")
        self._index_dir = Path(index_dir) if index_dir else None
        self.offsets = self._load_index()

    # --- the byte-offset index ---------------------------------------------------------
    def _index_path(self) -> Path:
        stat = self.path.stat()
        key = hashlib.sha256(f"{self.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        beside = self.path.with_name(self.path.name + ".index.json")
        if self._index_dir is None and os.access(self.path.parent, os.W_OK):
            return beside
        folder = self._index_dir or Path(os.environ.get("HEADLENS_CACHE", "~/.cache/headlens")).expanduser() / "tsv-index"
        return folder / f"{self.path.name}.{key}.index.json"

    def _load_index(self) -> dict[str, int]:
        stat = self.path.stat()
        index_path = self._index_path()
        if index_path.is_file():
            stored = json.loads(index_path.read_text())
            if stored.get("size") == stat.st_size and stored.get("mtime_ns") == stat.st_mtime_ns:
                return stored["offsets"]
        offsets = {}
        with open(self.path, "rb") as handle:
            offset = 0
            for number, line in enumerate(handle, 1):
                image_id = line.split(b"\t", 1)[0].decode()
                if image_id in offsets:
                    raise ValueError(f"{self.path}, line {number}: image id {image_id!r} appears twice")
                offsets[image_id] = offset
                offset += len(line)
        index_path.parent.mkdir(parents=True, exist_ok=True)
        record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "offsets": offsets}
        atomic_write(index_path, json.dumps(record))
        return offsets

    # --- reading ------------------------------------------------------------------------
    def __contains__(self, image_id: str) -> bool:
        return str(image_id) in self.offsets

    def __len__(self) -> int:
        return len(self.offsets)

    def image_ids(self) -> list[str]:
        return list(self.offsets)

    def get(self, image_id: str) -> Regions:
        image_id = str(image_id)
        if image_id not in self.offsets:
            raise MissingFeatures(f"image {image_id!r} has no features in {self.path}")
        with open(self.path, "rb") as handle:
            handle.seek(self.offsets[image_id])
            line = handle.readline().decode()
        return self.parse(line, f"{self.path} (image {image_id})")

    @staticmethod
    def parse(line: str, where: str) -> Regions:
        fields = next(csv.reader([line.rstrip("\r\n")], delimiter="\t"))
        if len(fields) != len(TSV_FIELDS):
            raise ValueError(
                f"{where}: {len(fields)} tab-separated columns, expected {len(TSV_FIELDS)}: {', '.join(TSV_FIELDS)}"
            )
        row = dict(zip(TSV_FIELDS, fields))
        try:
            n, height, width = int(row["num_boxes"]), int(float(row["img_h"])), int(float(row["img_w"]))
        except ValueError as error:
            raise ValueError(f"{where}: bad num_boxes/img_h/img_w: {error}") from None
        boxes = _decode(row["boxes"], np.float32, (n, 4), f"{where}, column boxes")
        features = _decode(row["features"], np.float32, (n, -1), f"{where}, column features")
        return Regions(boxes.copy(), features.copy(), height, width)


class NpzFolder:
    """One ``<image id>.npz`` per image with ``boxes``, ``features``, ``img_h``, ``img_w``."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"feature folder not found: {self.folder}")

    def _path(self, image_id: str) -> Path:
        return self.folder / f"{image_id}.npz"

    def __contains__(self, image_id: str) -> bool:
        return self._path(str(image_id)).is_file()

    def get(self, image_id: str) -> Regions:
        path = self._path(str(image_id))
        if not path.is_file():
            raise MissingFeatures(f"image {str(image_id)!r} has no features in {self.folder} (no {path.name})")
        with np.load(path) as data:
            missing = {"boxes", "features", "img_h", "img_w"} - set(data.files)
            if missing:
                raise ValueError(f"{path}: missing arrays {sorted(missing)}")
            return Regions(
                data["boxes"].astype(np.float32), data["features"].astype(np.float32), int(data["img_h"]), int(data["img_w"])
            )


def write_npz(folder: str | os.PathLike, image_id: str, regions: Regions) -> Path:
    """Write one image's regions in :class:`NpzFolder`'s format (whole or not at all)."""
    import io

    buffer = io.BytesIO()
    np.savez(buffer, boxes=regions.boxes, features=regions.features, img_h=regions.height, img_w=regions.width)
    return atomic_write(Path(folder) / f"{image_id}.npz", buffer.getvalue())


def convert_tsv(tsv: Obj36TSV, folder: str | os.PathLike, image_ids: Iterable[str] | None = None) -> int:
    """Copy the given images (all by default) from an obj36 TSV into an :class:`NpzFolder`."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    count = 0
    for image_id in image_ids if image_ids is not None else tsv.image_ids():
        write_npz(folder, image_id, tsv.get(image_id))
        count += 1
    return count


class LmdbFeatures:
    """MMF's LMDB region features (see the module docstring).

    An image is found under its numeric id (``b"262148"``) or its name
    (``b"COCO_val2014_000000262148"``), as MMF's own reader tries both.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        if not self.path.exists():
            from ..download import hint

            raise FileNotFoundError(f"MMF LMDB features not found: {self.path}; fetch them with `{hint('mmf-vqa2', path)}`")
        try:
            import lmdb
        except ImportError:
            raise ImportError("reading MMF's LMDB features needs the lmdb package: pip install 'headlens[real]'") from None
        self.env = lmdb.open(str(self.path), subdir=self.path.is_dir(), readonly=True, lock=False, readahead=False)
        with self.env.begin(write=False) as txn:
            keys = txn.get(b"keys")
        if keys is None:
            raise ValueError(f"{self.path}: no 'keys' entry (not an MMF feature LMDB)")
        self.keys = {key.decode() if isinstance(key, bytes) else str(key) for key in pickle.loads(keys)}

    def _key(self, image_id: str) -> str | None:
        image_id = str(image_id)
        if image_id in self.keys:
            return image_id
        tail = image_id.rsplit("_", 1)[-1]
        if tail.isdigit() and str(int(tail)) in self.keys:
            return str(int(tail))
        return None

    def __contains__(self, image_id: str) -> bool:
        return self._key(image_id) is not None

    def get(self, image_id: str) -> Regions:
        key = self._key(image_id)
        if key is None:
            raise MissingFeatures(f"image {str(image_id)!r} has no features in {self.path}")
        with self.env.begin(write=False) as txn:
            record = pickle.loads(txn.get(key.encode()))
        try:
            n = int(record.get("num_boxes", len(record["features"])))
            boxes = np.asarray(record["bbox"], dtype=np.float32)[:n]
            features = np.asarray(record["features"], dtype=np.float32)[:n]
            return Regions(boxes, features, int(record["image_height"]), int(record["image_width"]))
        except KeyError as error:
            raise ValueError(f"{self.path}, image {key!r}: the record has no {error} field") from None
