"""``headlens download``: fetch the public files of the real VQA v2 experiments, resumably and safely.

Machines that run headlens usually have no network, so nothing else in headlens downloads:
loaders look under the data folder and, when a file is missing, name the command that
fetches it (:func:`hint`). This module is that command. It uses the standard library only
(``urllib``), and every file goes through the same steps:

* the bytes go to ``<dest>.part``; a ``.part`` left by an interrupted run is continued with
  an HTTP ``Range`` request (a server that answers 200 instead of 206 is read from the start);
* the finished ``.part`` is checked against every size and digest known: an empty body is
  never kept; a short body (the connection closed early, with or without ``Content-Length``)
  is kept as ``.part`` to resume when the exact size or ``Content-Range`` total says so; a
  sha256 mismatch is deleted and reported (file, expected and actual digest); only then is it
  renamed onto the destination, so a file that exists is always complete and a good one is
  never replaced by a bad one. A file already there is checked the same way (exact size,
  sha256, not empty) before it counts as present;
* an archive is unpacked into a temporary folder beside its target, refusing unsafe members
  (paths that lead outside it: absolute, ``..``; links, whatever they point at; devices and
  other special files) on every Python, then merged into place: a folder the target lacks is
  renamed in whole, and in a folder it has, each of the archive's files replaces its old copy
  by one rename while files the archive does not hold (a user's own) stay.

Data folder (:func:`headlens.paths.data_dir`): ``$HEADLENS_DATA``, else ``~/.cache/headlens/data``; ``--dir``
overrides both. Destinations below are relative to it; other modules look there.

Where the URLs and checksums come from (read through the code/docs search, not guessed):

* HuggingFace repos: the ``tree/main`` listings. ``unc-nlp/lxmert-vqa-uncased`` has
  ``config.json`` and ``pytorch_model.bin`` (856 MB; a ``model.safetensors`` exists only in
  the bot's pull-request branch, not on ``main``). ``unc-nlp/lxmert-base-uncased`` has
  ``vocab.txt``, ``tokenizer_config.json`` and, since commit 628572c, ``tokenizer.json``.
  ``uclanlp/visualbert-vqa`` has ``config.json`` and ``pytorch_model.bin`` (455 MB; its sha256
  is the Git LFS oid shown on the file's page at commit e3da2db, the one ``main`` holds).
  ``bert-base-uncased`` now lives at ``google-bert/bert-base-uncased``; the old id only
  redirects, so the canonical one is used.
* MMF (facebookresearch/mmf): ``mmf/configs/zoo/models.yaml`` maps
  ``visual_bert.finetuned.vqa2.from_coco_train`` to ``mmf://models/visual_bert/
  visual_bert.finetuned.vqa2.train.tar.gz``; ``mmf/configs/zoo/datasets.yaml`` gives
  ``vqa2.defaults`` (``annotations/annotations.tar.gz``, ``extras.tar.gz``) and
  ``coco.defaults`` features (``features/trainval2014.tar.gz``). ``mmf/utils/download.py``
  expands ``mmf://`` to ``https://dl.fbaipublicfiles.com/mmf/data/`` and checks ``hashcode``
  as sha256, so those hashcodes are used here. ``mmf/datasets/mmf_dataset_builder.py``
  downloads a dataset's annotations/features into ``datasets/<name>/<variation>/<kind>/`` and
  its extras into ``datasets/<name>/<variation>/``, unpacking each archive where it lies;
  the layout below mirrors that (``.../annotations/imdb_val2014.npy``,
  ``.../extras/vocabs/answers_vqa.txt``, ``coco/defaults/features/trainval2014.lmdb``).
* LXMERT (airsplay/lxmert): the README's ``valid.json`` and ``val2014_obj36.zip`` URLs;
  ``data/vqa/trainval_label2ans.json`` is in the repository. The README unzips the val
  features with ``-d data`` (train with ``-d data/mscoco_imgfeat``), i.e. the val archive holds
  ``mscoco_imgfeat/val2014_obj36.tsv``; ``archive_root`` strips that folder so the file lands
  at ``lxmert/mscoco_imgfeat/val2014_obj36.tsv`` whichever way it is packed.
* COCO: ``http://images.cocodataset.org/zips/val2014.zip`` as listed in MMF's datasets.yaml.

* ``trainval_label2ans.json`` is fetched from airsplay/lxmert at commit 0db1182 (the file has
  not changed since it was added in 90a4fde); its sha256 and exact size are those of that blob.

Not published, hence ``sha256=None`` (a non-empty file of the exact size, where that is known,
is taken as present): the HF files other than VisualBERT's weights (HF pages show the sha256 of
LFS files only, and ``unc-nlp/lxmert-vqa-uncased``'s weights page was not found), LXMERT's
``valid.json`` and features, and COCO. ``size`` is approximate (HF's file pages,
cocodataset.org's "41K/6GB"), shown by ``--list`` with a ``~`` and used as the progress total
when a server sends no length, never checked; ``exact_size`` is checked.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import shutil
import stat
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

from tqdm import tqdm

from .errors import UnsafeFileError
from .paths import data_dir as default_data_dir

TIMEOUT_S = 60.0  # per connect and per read, not for the whole transfer
CHUNK = 1 << 20
USER_AGENT = "headlens-download/0.1 (python urllib)"
MMF = "https://dl.fbaipublicfiles.com/mmf/data/"  # what MMF's ``mmf://`` prefix stands for


class DownloadError(RuntimeError):
    """A file could not be fetched or unpacked; the message names the URL or the file."""


class ChecksumError(DownloadError):
    """A finished download whose sha256 is not the expected one (the download is deleted)."""


class UnsafeArchiveError(DownloadError, UnsafeFileError):
    """An archive member headlens refuses to unpack: a path leading outside the folder it is
    unpacked into, a link (symbolic or hard, whatever it points at) or a special file."""


#: what an unsafe member's message ends with: there is no opt-in for archives.
_UNPACK_YOURSELF = "headlens reads nothing from the archive; unpack it yourself if you trust it"
#: the tarfile data filter's refusals (Python 3.12, and the 3.10/3.11 security releases), where it exists.
_FILTER_ERRORS = (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()


@dataclass(frozen=True)
class Remote:
    """One file to fetch: ``url`` → ``dest`` (relative to the data folder).

    ``unpack_to``: unpack the archive (.zip, .tar.gz) into this folder (relative to the data
    folder) after it is fetched; ``lands``: the path (relative) that exists once unpacked, which
    tells whether unpacking is done; ``archive_root``: a single top folder of the archive whose
    contents, not the folder itself, go into ``unpack_to``.
    """

    url: str
    dest: str
    sha256: str | None = None
    size: int | None = None  # approximate bytes, for --list and as a progress total fallback; never checked
    exact_size: int | None = None  # bytes, checked after every transfer and before "already present"
    unpack_to: str | None = None
    lands: str | None = None
    archive_root: str | None = None

    @property
    def landing(self) -> str:
        """Where the file, or what it unpacks to, lands (relative to the data folder)."""
        return self.lands if self.unpack_to and self.lands else self.dest


@dataclass(frozen=True)
class Resource:
    """A named set of files fetched together by ``headlens download <name>``."""

    name: str
    files: tuple[Remote, ...]
    description: str


def _hf(repo: str, into: str, *names: str, sha256: dict[str, str] | None = None,
        size: dict[str, int] | None = None) -> tuple[Remote, ...]:  # fmt: skip
    """Files of a HuggingFace model repo at ``main``, placed flat in ``into``."""
    sha256, size = sha256 or {}, size or {}
    return tuple(
        Remote(f"https://huggingface.co/{repo}/resolve/main/{name}", f"{into}/{name}", sha256.get(name), size.get(name))
        for name in names
    )


FILES: dict[str, Resource] = {
    "lxmert-vqa": Resource(
        "lxmert-vqa",
        _hf("unc-nlp/lxmert-vqa-uncased", "models/unc-nlp/lxmert-vqa-uncased", "config.json", "pytorch_model.bin",
            size={"pytorch_model.bin": 856_000_000}),
        "LXMERT fine-tuned on VQA v2 (HF unc-nlp/lxmert-vqa-uncased): config and weights",
    ),
    "lxmert-tokenizer": Resource(
        "lxmert-tokenizer",
        _hf("unc-nlp/lxmert-base-uncased", "models/unc-nlp/lxmert-base-uncased",
            "vocab.txt", "tokenizer_config.json", "tokenizer.json"),
        "LXMERT's uncased WordPiece tokenizer (HF unc-nlp/lxmert-base-uncased)",
    ),
    "visualbert-vqa": Resource(
        "visualbert-vqa",
        _hf("uclanlp/visualbert-vqa", "models/uclanlp/visualbert-vqa", "config.json", "pytorch_model.bin",
            sha256={"pytorch_model.bin": "0ae380f5aeec7fbf4e4b7c74bf543e5e7e2d6fbb88c1862d9949880af9f68200"},
            size={"pytorch_model.bin": 455_000_000}),
        "VisualBERT fine-tuned on VQA v2 (HF uclanlp/visualbert-vqa): config and weights",
    ),
    "bert-tokenizer": Resource(
        "bert-tokenizer",
        _hf("google-bert/bert-base-uncased", "models/bert-base-uncased",
            "vocab.txt", "tokenizer_config.json", "tokenizer.json"),
        "BERT's uncased tokenizer, which VisualBERT uses (HF bert-base-uncased)",
    ),
    "mmf-visual-bert-vqa2": Resource(
        "mmf-visual-bert-vqa2",
        (Remote(MMF + "models/visual_bert/visual_bert.finetuned.vqa2.train.tar.gz",
                "models/visual_bert.finetuned.vqa2.from_coco_train.tar.gz",
                "e786351503f0e19abd916cc9063b427adc60a0f98f6686e58b296672e90b74c8"),),
        "MMF zoo checkpoint visual_bert.finetuned.vqa2.from_coco_train (kept as .tar.gz)",
    ),
    "lxmert-valid": Resource(
        "lxmert-valid",
        (Remote("https://nlp.cs.unc.edu/data/lxmert_data/vqa/valid.json", "lxmert/vqa/valid.json"),),
        "LXMERT's VQA v2 validation questions with answer scores (valid.json)",
    ),
    "lxmert-answers": Resource(
        "lxmert-answers",
        (Remote("https://raw.githubusercontent.com/airsplay/lxmert/0db1182b9030da3ce41f17717cc628e1cd0a95d5/"
                "data/vqa/trainval_label2ans.json", "lxmert/vqa/trainval_label2ans.json",
                "e72e568a6303130f5a627db06360605ee3b306366ff463aa5153d782adc12a7d", exact_size=46_668),),
        "LXMERT's VQA answer vocabulary, label index -> answer (trainval_label2ans.json)",
    ),
    "lxmert-features": Resource(
        "lxmert-features",
        (Remote("https://nlp.cs.unc.edu/data/lxmert_data/mscoco_imgfeat/val2014_obj36.zip",
                "lxmert/mscoco_imgfeat/val2014_obj36.zip", unpack_to="lxmert/mscoco_imgfeat",
                lands="lxmert/mscoco_imgfeat/val2014_obj36.tsv", archive_root="mscoco_imgfeat"),),
        "LXMERT's Faster R-CNN features of COCO val2014, 36 boxes per image (val2014_obj36.tsv)",
    ),
    "mmf-vqa2": Resource(
        "mmf-vqa2",
        (
            Remote(MMF + "datasets/vqa2/defaults/annotations/annotations.tar.gz",
                   "datasets/vqa2/defaults/annotations/annotations.tar.gz",
                   "58daa4b6e5992258049f18a9d7a397e027bdd29388027aad90b41c687024a7b8",
                   unpack_to="datasets/vqa2/defaults/annotations",
                   lands="datasets/vqa2/defaults/annotations/imdb_val2014.npy"),
            Remote(MMF + "datasets/vqa2/defaults/extras.tar.gz", "datasets/vqa2/defaults/extras.tar.gz",
                   "e45c3dbef61e5cc550b08ed7299c88cf7937efa219d071342b8ed7a6a5642a55",
                   unpack_to="datasets/vqa2/defaults", lands="datasets/vqa2/defaults/extras/vocabs/answers_vqa.txt"),
            Remote(MMF + "datasets/coco/defaults/features/trainval2014.tar.gz",
                   "datasets/coco/defaults/features/trainval2014.tar.gz",
                   "242b4a2bf3ab930c3275d3ab9b4e1dccd1fb1745d3e939f8d50482d83e1fd1ad",
                   unpack_to="datasets/coco/defaults/features",
                   lands="datasets/coco/defaults/features/trainval2014.lmdb"),
        ),
        "MMF's VQA v2 annotations (imdb_*.npy), answer vocabulary and COCO trainval2014 LMDB features",
    ),
    "coco-val2014": Resource(
        "coco-val2014",
        (Remote("http://images.cocodataset.org/zips/val2014.zip", "datasets/coco/subset_val/images/val2014.zip",
                size=6_000_000_000, unpack_to="datasets/coco/subset_val/images",
                lands="datasets/coco/subset_val/images/val2014"),),
        "COCO val2014 images (COCO_val2014_*.jpg), for drawing relevance maps",
    ),
}  # fmt: skip


# --- where files land --------------------------------------------------------------------


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir`` if given, else :func:`headlens.paths.data_dir` (``$HEADLENS_DATA`` or ``~/.cache/headlens/data``)."""
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def _resource(name: str) -> Resource:
    if name not in FILES:
        raise KeyError(f"unknown download {name!r}; valid names: {', '.join(FILES)}")
    return FILES[name]


def expected_path(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Where resource ``name``'s first file (or what it unpacks to) lands."""
    return resolve_data_dir(data_dir) / _resource(name).files[0].landing


def hint(name: str, looked_at: str | os.PathLike | None = None) -> str:
    """The command that fetches resource ``name``, for "not found" messages. Given the path
    a loader looked at, it adds the ``--dir`` that lands the files there, when that is not
    the default data folder (and the path is where a download lands, inside what it
    unpacks to, or the folder its files go into)."""
    command = f"headlens download {_resource(name).name}"
    if looked_at is None:
        return command
    path = Path(looked_at).expanduser().absolute()
    for remote in _resource(name).files:
        for landing in (Path(remote.landing).parts, Path(remote.landing).parent.parts):
            for end in range(len(path.parts), len(landing) - 1, -1):  # the path itself, then its parents
                if landing and path.parts[end - len(landing) : end] == landing:
                    root = Path(*path.parts[: end - len(landing)])
                    return command if root == resolve_data_dir().absolute() else f"{command} --dir {root}"
    return command


def is_present(resource: Resource, data_dir: str | os.PathLike | None = None) -> bool:
    """Whether every file of ``resource`` (or what it unpacks to) is in place."""
    root = resolve_data_dir(data_dir)
    return all((root / remote.landing).exists() for remote in resource.files)


# --- fetching ----------------------------------------------------------------------------


def sha256_of(path: str | os.PathLike, progress: bool = False) -> str:
    """The hex sha256 of a file, read in chunks (the files run to many GB)."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle, _bar(path.stat().st_size, 0, f"sha256 {path.name}", progress) as bar:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _bar(total: int | None, initial: int, desc: str, progress: bool) -> tqdm:
    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not progress, leave=False)  # fmt: skip


def fetch(url: str, dest: str | os.PathLike, *, sha256: str | None = None, size: int | None = None,
          exact_size: int | None = None, progress: bool = True, timeout: float = TIMEOUT_S) -> str:  # fmt: skip
    """Fetch ``url`` to ``dest`` (see the module docstring); returns what happened, for the log.

    An existing ``dest`` is kept when it passes every check known (not empty, ``exact_size``,
    ``sha256``); otherwise a new copy is fetched and replaces it only once verified. ``size``
    (approximate) only sizes the progress bar.
    """
    dest = Path(dest)
    if dest.is_file():
        present = _present(dest, sha256, exact_size, progress)
        if present:
            return present
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _transfer(url, part, size=exact_size or size, progress=progress, timeout=timeout, desc=dest.name)
    _check_part(url, part, dest, sha256, exact_size, progress)
    os.replace(part, dest)
    return "downloaded"


def _present(dest: Path, sha256: str | None, exact_size: int | None, progress: bool) -> str | None:
    """How a file already at ``dest`` passes the checks known, or None when it fails one."""
    length = dest.stat().st_size
    if length == 0 or (exact_size is not None and length != exact_size):
        return None  # an empty file is never a whole download; a wrong size is an old or cut copy
    if sha256 is not None:
        return "already present (sha256 ok)" if sha256_of(dest, progress) == sha256.lower() else None
    return "already present (size ok)" if exact_size is not None else "already present"


def _check_part(url: str, part: Path, dest: Path, sha256: str | None, exact_size: int | None, progress: bool) -> None:
    """Raise (deleting ``part`` unless it can be resumed) when the finished download fails a check."""
    length = part.stat().st_size
    kept = f"; the existing {dest} is kept" if dest.exists() else ""
    if length == 0:
        part.unlink()
        raise DownloadError(f"{url}: the server sent an empty file; nothing was kept{kept}; re-run the command later")
    if exact_size is not None and length < exact_size:
        raise DownloadError(
            f"{url}: the transfer ended after {length} of {exact_size} bytes; {part} is kept: re-run the command to resume"
        )
    if exact_size is not None and length > exact_size:
        part.unlink()
        raise DownloadError(
            f"{dest}: the file from {url} has {length} bytes, not {exact_size}; the download was deleted{kept}; "
            "re-run the command to fetch it again"
        )
    if sha256 is not None:
        actual = sha256_of(part, progress)
        if actual != sha256.lower():
            part.unlink()
            raise ChecksumError(
                f"{dest}: sha256 mismatch for the file from {url}: expected {sha256.lower()}, got {actual}; "
                f"the download was deleted{kept}; re-run the command to fetch it again"
            )


def _transfer(url: str, part: Path, *, size: int | None, progress: bool, timeout: float, desc: str,
              may_restart: bool = True) -> None:  # fmt: skip
    """Bring ``part`` to the full content of ``url``, continuing what it already holds."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:
            # nothing left after ``offset``: either the .part is whole (a run stopped before the
            # rename) or it is longer than the file now is, which only a fresh start can fix
            if _range_total(error.headers.get("Content-Range")) == offset:
                return
            if may_restart:
                part.unlink()
                return _transfer(url, part, size=size, progress=progress, timeout=timeout, desc=desc,
                                 may_restart=False)  # fmt: skip
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        raise _network_error(url, error, part) from error
    with response:
        resumed = bool(offset) and response.status == 206
        content_range = response.headers.get("Content-Range")
        if resumed and _range_start(content_range) != offset:
            # a range other than the one asked for cannot be appended; start over without one
            response.close()
            if not may_restart:
                raise DownloadError(f"{url}: the server answered a different byte range than asked for")
            part.unlink()
            return _transfer(url, part, size=size, progress=progress, timeout=timeout, desc=desc, may_restart=False)
        if not resumed:
            offset = 0  # a plain 200 is the whole file: the .part is rewritten from the start
        length = response.headers.get("Content-Length")
        length = int(length) if length is not None and length.isdigit() else None
        # every size the reply tells: its Content-Length, else a 206's Content-Range total
        expected = offset + length if length is not None else _range_total(content_range) if resumed else None
        received = 0
        with open(part, "ab" if resumed else "wb") as out, _bar(expected or size, offset, desc, progress) as bar:
            try:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (http.client.HTTPException, OSError) as error:
                raise _network_error(url, error, part) from error
    # http.client returns a short body without complaint when the peer closes early
    if expected is not None and offset + received < expected:
        raise DownloadError(
            f"{url}: the connection closed after {offset + received} of {expected} bytes; "
            f"{part} is kept: re-run the command to resume"
        )


def _network_error(url: str, error: BaseException, part: Path) -> DownloadError:
    reason = getattr(error, "reason", None) or error
    kept = f"; {part} is kept" if part.exists() and part.stat().st_size else ""
    return DownloadError(f"{url}: {reason}{kept}; re-run the command to resume")


def _range_start(content_range: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-", content_range or "")
    return int(match.group(1)) if match else None


def _range_total(content_range: str | None) -> int | None:
    match = re.search(r"/(\d+)\s*$", content_range or "")
    return int(match.group(1)) if match else None


# --- unpacking ---------------------------------------------------------------------------


def unpack(archive: str | os.PathLike, into: str | os.PathLike, *, archive_root: str | None = None) -> list[Path]:
    """Unpack a .zip or .tar.gz into ``into``; returns the top-level paths the archive placed there.

    Everything is extracted into a temporary folder beside ``into`` first, then merged in
    (:func:`_merge`): an interrupted run leaves each file either old or new, never half, and
    files in ``into`` that the archive does not hold are left as they are.
    """
    archive, into = Path(archive), Path(into)
    into.mkdir(parents=True, exist_ok=True)
    staging = into.with_name(f".{into.name}.unpacking")
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted run
    staging.mkdir()
    try:
        _extract(archive, staging)
        entries = sorted(staging.iterdir())
        if archive_root and [entry.name for entry in entries] == [archive_root] and entries[0].is_dir():
            entries = sorted(entries[0].iterdir())
        for entry in entries:
            _merge(entry, into / entry.name)
        return [into / entry.name for entry in entries]
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _merge(source: Path, target: Path) -> None:
    """Move ``source`` onto ``target``: a file replaces its old copy by one rename; a folder the
    target lacks is renamed in whole (so it appears complete or not at all); into a folder that
    exists, the source's entries are merged one by one, and what only the target holds stays."""
    if source.is_dir():
        if not target.exists() and not target.is_symlink():
            os.replace(source, target)
        elif not target.is_dir():
            raise DownloadError(f"{target}: a file where the archive has a folder; move it away and re-run the command")
        else:
            for child in sorted(source.iterdir()):
                _merge(child, target / child.name)
    elif target.is_dir() and not target.is_symlink():
        raise DownloadError(f"{target}: a folder where the archive has a file; move it away and re-run the command")
    else:
        os.replace(source, target)


def _extract(archive: Path, into: Path) -> None:
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as handle:
                for info in handle.infolist():
                    check_zip_member(archive, info)
                handle.extractall(into)
        elif name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(archive, "r:*") as handle:
                members = handle.getmembers()
                for member in members:
                    check_tar_member(archive, member)
                # the "data" filter, where this Python has it, is a second guard behind the checks above
                extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                handle.extractall(into, members=members, **extra)
        else:
            raise DownloadError(f"{archive}: cannot unpack, not a .zip or .tar.gz")
    except _FILTER_ERRORS as error:  # a subclass of TarError: unsafe, not damaged
        raise UnsafeArchiveError(f"{archive}: unsafe member ({error}); {_UNPACK_YOURSELF}") from error
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
        raise DownloadError(f"{archive}: damaged archive ({error}); delete it and re-run the command") from error


def _check_path(archive: Path, name: str) -> None:
    path = name.replace("\\", "/")
    if path.startswith("/") or re.match(r"[A-Za-z]:", path) or ".." in PurePosixPath(path).parts:
        raise UnsafeArchiveError(
            f"{archive}: unsafe member {name!r} (a path that would land outside the target); {_UNPACK_YOURSELF}"
        )


def check_tar_member(archive: str | os.PathLike, member: tarfile.TarInfo) -> None:
    """Refuse a tar member that is not a plain file or folder inside the archive's folder.

    Links are refused outright, whatever they point at: a chain of links that each look
    harmless can still lead outside, and only some Pythons' ``tarfile`` filters catch that.
    """
    _check_path(Path(archive), member.name)
    if member.issym() or member.islnk():
        kind = "symbolic" if member.issym() else "hard"
        raise UnsafeArchiveError(
            f"{archive}: unsafe member {member.name!r} (link: a {kind} link to {member.linkname!r}); {_UNPACK_YOURSELF}"
        )
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{archive}: unsafe member {member.name!r} (device or other special file); {_UNPACK_YOURSELF}")


def check_zip_member(archive: str | os.PathLike, info: zipfile.ZipInfo) -> None:
    """Refuse a zip member outside the archive's folder, or a link or special file (by its Unix mode)."""
    _check_path(Path(archive), info.filename)
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise UnsafeArchiveError(f"{archive}: unsafe member {info.filename!r} (link); {_UNPACK_YOURSELF}")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeArchiveError(f"{archive}: unsafe member {info.filename!r} (special file); {_UNPACK_YOURSELF}")


# --- resources ---------------------------------------------------------------------------


def download_file(remote: Remote, data_dir: str | os.PathLike | None = None, progress: bool = True) -> str:
    """Fetch one file of a resource and unpack it if it is an archive; returns what happened."""
    root = resolve_data_dir(data_dir)
    dest, landed = root / remote.dest, root / remote.landing
    if remote.unpack_to and landed.exists() and not dest.exists():
        return "already unpacked"  # the archive was deleted after unpacking: nothing to do
    status = fetch(remote.url, dest, sha256=remote.sha256, size=remote.size, exact_size=remote.exact_size,
                   progress=progress)
    if remote.unpack_to and (status == "downloaded" or not landed.exists()):
        unpack(dest, root / remote.unpack_to, archive_root=remote.archive_root)
        status += ", unpacked"
    return status


def download(resource: str | Resource, data_dir: str | os.PathLike | None = None,
             progress: bool = True) -> list[tuple[Path, str]]:  # fmt: skip
    """Fetch every file of ``resource`` (a name in :data:`FILES` or a :class:`Resource`).

    Returns (landing path, what happened) per file; raises :class:`DownloadError` on the first
    file that fails (the files before it stay in place, so a re-run continues from there).
    """
    resource = _resource(resource) if isinstance(resource, str) else resource
    root = resolve_data_dir(data_dir)
    return [(root / remote.landing, download_file(remote, root, progress)) for remote in resource.files]


# --- command line ------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``headlens download`` arguments to ``parser``."""
    parser.add_argument("names", nargs="*", metavar="name", help=f"what to fetch, or all: {', '.join(FILES)}")
    parser.add_argument("--dir", dest="data_dir", default=None,
                        help="data folder (default: $HEADLENS_DATA, else ~/.cache/headlens/data)")  # fmt: skip
    parser.add_argument("--list", action="store_true", help="list the downloads, where each goes, whether it is there")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return parser


def format_list(names: Sequence[str], data_dir: str | os.PathLike | None = None) -> str:
    """One entry per resource: name, present/missing, size (``~``: approximate), description, destination."""
    lines = []
    for name in names:
        resource = FILES[name]
        known = [remote.exact_size or remote.size for remote in resource.files if remote.exact_size or remote.size]
        rounded = any(remote.exact_size is None and remote.size for remote in resource.files)  # the listings' sizes
        size = f"{'~' if rounded else ''}{_human(sum(known))}" if known else "?"
        state = "present" if is_present(resource, data_dir) else "missing"
        lines.append(f"{name:<21} {state:<8} {size:>8}  {resource.description}")
        lines.append(f"{'':<21} -> {expected_path(name, data_dir)}")
    return "\n".join(lines)


def _human(size: int) -> str:
    if size < 1000:
        return f"{size} B"
    exponent = min(3, (len(str(size)) - 1) // 3)
    return f"{size / 1000**exponent:.1f} {('B', 'kB', 'MB', 'GB')[exponent]}"


def run(args: argparse.Namespace) -> int:
    """Perform ``headlens download``: 0 when all went well, 1 when a download failed, 2 on bad names."""
    names = list(args.names)
    unknown = [name for name in names if name != "all" and name not in FILES]
    if unknown:
        print(f"headlens download: error: unknown name{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
              f"valid names: {', '.join(FILES)}, all", file=sys.stderr)  # fmt: skip
        return 2
    selected = list(FILES) if "all" in names or not names else list(dict.fromkeys(names))
    if args.list:
        print(format_list(selected, args.data_dir))
        return 0
    if not names:
        print(f"headlens download: error: name what to fetch (or all); valid names: {', '.join(FILES)}; "
              "see --list", file=sys.stderr)  # fmt: skip
        return 2
    failed = []
    for name in selected:
        try:
            for path, status in download(name, args.data_dir, progress=getattr(args, "progress", True)):
                print(f"{name}: {path}: {status}")
        except DownloadError as error:
            print(f"headlens download: error: {error}", file=sys.stderr)
            failed.append(name)
    if failed:
        print(f"headlens download: failed: {', '.join(failed)} (re-run to resume)", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="headlens download", description="Fetch the public files of the VQA runs.")
    return run(configure_parser(parser).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
