"""Region features of real VQA images, read one image at a time.

* :class:`Obj36TSV` — LXMERT's precomputed Faster R-CNN features (``*_obj36.tsv``, many GB):
  tab-separated ``img_id, img_h, img_w, objects_id, objects_conf, attrs_id, attrs_conf,
  num_boxes, boxes, features`` with base64 arrays (boxes ``float32[n, 4]`` pixel
  ``x1, y1, x2, y2``; features ``float32[n, 2048]``). It is never loaded whole: one scan
  folder is read-only, and reused while the file's size and mtime are unchanged). Every row
  read is checked to be the image asked for; an index that no longer fits is rebuilt once.
* :class:`NpzFolder` — one ``<image id>.npz`` per image (``boxes``, ``features``,
  ``img_h``, ``img_w``): the format headlens writes (:func:`convert_tsv`).
* :class:`LmdbFeatures` — MMF's LMDB (a pickled ``keys`` list; per image a pickled dict
  with ``features``, ``bbox``, ``num_boxes``, ``image_width``, ``image_height``), read as
  plain data by :mod:`headlens.safe_pickle` (``trust_pickle`` to load other pickles, which
  runs their code). Needs the ``lmdb`` package.

Every reader raises a clear error naming the file and the image on bad input
(:class:`~headlens.errors.InputError`; an ``.npz`` holding a pickled object array is
refused with :class:`~headlens.errors.UnsafeFileError`), and every image's boxes and
features must have the same number of rows.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

from .. import safe_pickle
from ..errors import InputError, UnsafeFileError
from ..files import atomic_write
from ..resources import hint

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


def regions_of(boxes, features, height, width, where: str) -> Regions:
    """:class:`Regions` from arrays as read, checking that boxes are ``[n, 4]`` and features ``[n, d]``."""
    boxes, features = np.asarray(boxes, dtype=np.float32), np.asarray(features, dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or features.ndim != 2:
        raise InputError(f"{where}: boxes of shape {boxes.shape} and features of shape {features.shape}; expected [n, 4] and [n, d]")
    if len(boxes) != len(features):
        raise InputError(f"{where}: {len(boxes)} boxes but {len(features)} feature rows; each box needs one row")
    return Regions(boxes, features, int(height), int(width))


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
        raise InputError(f"{where}: cannot decode a {np.dtype(dtype).name} array of shape {shape}: {error}") from None


class Obj36TSV:
    """LXMERT's ``*_obj36.tsv`` feature file, read by image id (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, index_dir: str | os.PathLike | None = None):
        self.path = Path(path).expanduser()
        if not self.path.is_file():
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

    def _load_index(self, rebuild: bool = False) -> dict[str, int]:
        stat = self.path.stat()
        index_path = self._index_path()
        if index_path.is_file() and not rebuild:
            stored = json.loads(index_path.read_text())
            if stored.get("size") == stat.st_size and stored.get("mtime_ns") == stat.st_mtime_ns:
                return stored["offsets"]
        offsets = {}
        with open(self.path, "rb") as handle:
            offset = 0
            for number, line in enumerate(handle, 1):
                image_id = line.split(b"\t", 1)[0].decode()
                if image_id in offsets:
                    raise InputError(f"{self.path}, line {number}: image id {image_id!r} appears twice")
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
        """The row of ``image_id``. A row of another image means the index no longer fits the
        file (rewritten with the same size and mtime): the index is rebuilt once, then it is an error."""
        image_id = str(image_id)
        for attempt in ("index", "rebuilt index"):
            if image_id not in self.offsets:
                raise MissingFeatures(f"image {image_id!r} has no features in {self.path}")
            with open(self.path, "rb") as handle:
                handle.seek(self.offsets[image_id])
                line = handle.readline().decode(errors="replace")
            found = line.split("\t", 1)[0]
            if found == image_id:
                return self.parse(line, f"{self.path} (image {image_id})")
            if attempt == "index":
                self.offsets = self._load_index(rebuild=True)
        raise InputError(
            f"{self.path}: the row at byte {self.offsets[image_id]} is image {found!r}, not {image_id!r}, even after "
            f"rebuilding the byte-offset index ({self._index_path()})"
        )

    @staticmethod
    def parse(line: str, where: str) -> Regions:
        fields = next(csv.reader([line.rstrip("\r\n")], delimiter="\t"))
        if len(fields) != len(TSV_FIELDS):
            raise InputError(
                f"{where}: {len(fields)} tab-separated columns, expected {len(TSV_FIELDS)}: {', '.join(TSV_FIELDS)}"
            )
        row = dict(zip(TSV_FIELDS, fields))
        try:
            n, height, width = int(row["num_boxes"]), int(float(row["img_h"])), int(float(row["img_w"]))
        except ValueError as error:
            raise InputError(f"{where}: bad num_boxes/img_h/img_w: {error}") from None
        boxes = _decode(row["boxes"], np.float32, (n, 4), f"{where}, column boxes")
        features = _decode(row["features"], np.float32, (n, -1), f"{where}, column features")
        return regions_of(boxes.copy(), features.copy(), height, width, where)


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
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, EOFError, ValueError) as error:
            raise InputError(f"{path}: not a readable .npz file ({error})") from None
        with data:
            missing = {"boxes", "features", "img_h", "img_w"} - set(data.files)
            if missing:
                raise InputError(f"{path}: missing arrays {sorted(missing)}")
            arrays = {name: _npz_array(data, name, path) for name in ("boxes", "features", "img_h", "img_w")}
        return regions_of(arrays["boxes"], arrays["features"], arrays["img_h"], arrays["img_w"], str(path))


def _npz_array(data, name: str, path: Path) -> np.ndarray:
    """One array of an ``.npz``; an object array (a pickle, which could run code) is refused."""
    try:
        return data[name]
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise UnsafeFileError(
                f"{path}: refusing to load array {name!r}: it is a pickled object array, which could run code; "
                "headlens' feature files hold numbers only (write them with headlens.data.regions.write_npz)"
            ) from None
        raise InputError(f"{path}: array {name!r} is damaged ({error})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise InputError(f"{path}: array {name!r} is damaged ({error})") from None


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

    def __init__(self, path: str | os.PathLike, trust_pickle: bool = False):
        self.path = Path(path).expanduser()
        self.trust_pickle = trust_pickle  # True: unpickle records with plain pickle, which runs their code
        if not self.path.exists():
            raise FileNotFoundError(f"MMF LMDB features not found: {self.path}; fetch them with `{hint('mmf-vqa2', path)}`")
        try:
            import lmdb
        except ImportError:
            raise ImportError("reading MMF's LMDB features needs the lmdb package: pip install 'headlens[real]'") from None
        self.env = lmdb.open(str(self.path), subdir=self.path.is_dir(), readonly=True, lock=False, readahead=False)
        with self.env.begin(write=False) as txn:
            keys = txn.get(b"keys")
        if keys is None:
            raise InputError(f"{self.path}: no 'keys' entry (not an MMF feature LMDB)")
        keys = safe_pickle.loads(keys, f"{self.path}, entry 'keys'", trust_pickle)
        if not isinstance(keys, (list, tuple, set, np.ndarray)):
            raise InputError(f"{self.path}, entry 'keys': a {type(keys).__name__}, not a list of image keys")
        self.keys = {key.decode() if isinstance(key, bytes) else str(key) for key in keys}

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
        where = f"{self.path}, image {key!r}"
        with self.env.begin(write=False) as txn:
            data = txn.get(key.encode())
        if data is None:
            raise InputError(f"{where}: listed in 'keys' but has no record")
        record = safe_pickle.loads(data, where, self.trust_pickle)
        if not isinstance(record, dict):
            raise InputError(f"{where}: the record is a {type(record).__name__}, not a dict of arrays")
        try:
            n = int(record.get("num_boxes", len(record["features"])))
            boxes = np.asarray(record["bbox"], dtype=np.float32)[:n]
            features = np.asarray(record["features"], dtype=np.float32)[:n]
            return regions_of(boxes, features, record["image_height"], record["image_width"], where)
        except KeyError as error:
            raise InputError(f"{where}: the record has no {error} field") from None
