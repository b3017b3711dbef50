"""Writing files whole or not at all, and a run's output files as one set.

* :func:`atomic_write` — one file: a temporary name in the same folder, then a rename.
* :func:`atomic_folder` — one folder (a trained model): staged beside it, then renamed.
* :class:`RunFolder` — the result files of one run (``results.json``, tables, pictures, the
  report), staged while the run computes and put in place together, so that a folder never
  holds files of two runs side by side.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from .digest import file_sha256
from .errors import InputError

#: suffix of the temporary files :func:`atomic_write` makes (and a run folder cleans up).
TMP_SUFFIX = ".headlens-tmp"


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` so that a file that exists is always complete."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextmanager
def atomic_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield a staging folder beside ``folder``; when the block ends without an error it
    replaces ``folder``, so a folder that exists is always whole (a model, a subject)."""
    folder = Path(folder).expanduser()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        yield staging
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def writable_folder(folder: str | os.PathLike, key: str = "out_dir") -> Path:
    """``folder``, created if needed, once a file could be written in it; else an error naming
    ``key`` — checked before a run computes, so that it cannot fail after an hour's work."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe{TMP_SUFFIX}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise InputError(f"{key} {folder}: cannot write there ({error.strerror or error}); give a writable folder") from None
    return folder


#: the file that lists a run's set; written last, so it exists only beside a complete set.
MANIFEST = "results.json"
#: what a run folder wrote before manifests listed their files (removed when a new set replaces them).
LEGACY_SET = ("curves.csv", "per_example.npz", "curves.png", "summary.md", "pointing.json", "report.html")
STAGING = ".headlens-staging"


class RunFolder:
    """The output folder of one run, whose result files are written as one set.

    Creating it checks, before anything is computed, that the folder can be written
    (an unwritable ``out_dir`` fails now, not after an hour's sweep), and removes what a
    killed run left: its staging folder and temporary files. Result files are written into
    :meth:`stage` paths while the run computes; :meth:`commit` then

    1. removes the previous set: ``results.json`` first, then every file it listed;
    2. moves every staged file into place (one rename each);
    3. writes ``results.json`` last: the run's document plus ``run_id`` and ``files``
       (each file of the set, relative, with its sha256).

    Killed at any point, the folder holds either the previous whole set, or some files of
    the new run and no ``results.json`` — never files of two runs side by side; a
    ``results.json`` that exists describes exactly the files beside it. Files the user put
    in the folder are never touched.
    """

    def __init__(self, out_dir: str | os.PathLike):
        self.out = writable_folder(out_dir)
        self.run_id = uuid.uuid4().hex[:12]
        self._clean()
        self.staging = self.out / STAGING
        self.staging.mkdir()

    def _clean(self) -> None:
        shutil.rmtree(self.out / STAGING, ignore_errors=True)
        for tmp in self.out.rglob(f".*{TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)

    def stage(self, relative: str | os.PathLike) -> Path:
        """Where to write the set's file (or folder) ``relative`` while the run computes."""
        path = self.staging / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def final(self, path: str | os.PathLike) -> Path:
        """The place a staged path will have once committed."""
        return self.out / Path(path).relative_to(self.staging)

    def previous_files(self) -> list[Path]:
        """The files of the set now in the folder (what ``results.json`` lists, or the
        names earlier versions wrote)."""
        manifest = self.out / MANIFEST
        listed: Iterable[str] = LEGACY_SET
        if manifest.is_file():
            try:
                listed = list(json.loads(manifest.read_text()).get("files") or LEGACY_SET)
            except (ValueError, AttributeError):  # unreadable: fall back to the known names
                pass
        return [self.out / name for name in listed if name != MANIFEST]

    def commit(self, document: dict, finished: Iterable[str | os.PathLike] = ()) -> dict[str, Path]:
        """Put the staged set in place (see the class docstring) with ``document`` as
        ``results.json``; then delete ``finished`` (partial results the set supersedes).
        Returns the final path of every file, by its relative name."""
        staged = sorted(p for p in self.staging.rglob("*") if p.is_file())
        files = {p.relative_to(self.staging).as_posix(): file_sha256(p) for p in staged}
        old = self.previous_files()
        (self.out / MANIFEST).unlink(missing_ok=True)
        for path in old:
            path.unlink(missing_ok=True)
            _prune_empty(path.parent, self.out)
        for path in staged:
            target = self.final(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        shutil.rmtree(self.staging, ignore_errors=True)
        body = {**document, "run_id": self.run_id, "files": files}
        atomic_write(self.out / MANIFEST, json.dumps(body, indent=1, default=_jsonable) + "\n")
        for path in finished:
            Path(path).unlink(missing_ok=True)
        return {MANIFEST: self.out / MANIFEST, **{name: self.out / name for name in files}}

    def abandon(self) -> None:
        """Drop what was staged (the previous set stays as it was)."""
        shutil.rmtree(self.staging, ignore_errors=True)


def _prune_empty(folder: Path, top: Path) -> None:
    """Remove ``folder`` and its parents up to (not including) ``top`` while they are empty."""
    while folder != top and top in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty (a user's file, another set's file) or gone
            return
        folder = folder.parent


def _jsonable(value):
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
