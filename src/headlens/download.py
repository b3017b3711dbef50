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

What each download is and where it lands: :mod:`headlens.resources`; how archives are
unpacked: :mod:`headlens.archives`.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from .archives import DownloadError, UnsafeArchiveError, unpack
from . import resources
from .resources import Remote, Resource, data_dir_or_default, expected_path, find_resource, hint, is_present

TIMEOUT_S = 60.0  # per connect and per read, not for the whole transfer
CHUNK = 1 << 20
USER_AGENT = "headlens-download/0.1 (python urllib)"


class ChecksumError(DownloadError):
    """A finished download whose sha256 is not the expected one (the download is deleted)."""


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


# --- resources ---------------------------------------------------------------------------


def download_file(remote: Remote, data_dir: str | os.PathLike | None = None, progress: bool = True) -> str:
    """Fetch one file of a resource and unpack it if it is an archive; returns what happened."""
    root = data_dir_or_default(data_dir)
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
    resource = find_resource(resource) if isinstance(resource, str) else resource
    root = data_dir_or_default(data_dir)
    return [(root / remote.landing, download_file(remote, root, progress)) for remote in resource.files]


# --- command line ------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``headlens download`` arguments to ``parser``."""
    parser.add_argument("names", nargs="*", metavar="name", help=f"what to fetch, or all: {', '.join(resources.FILES)}")
    parser.add_argument("--dir", dest="data_dir", default=None,
                        help="data folder (default: $HEADLENS_DATA, else ~/.cache/headlens/data)")  # fmt: skip
    parser.add_argument("--list", action="store_true", help="list the downloads, where each goes, whether it is there")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return parser


def format_list(names: Sequence[str], data_dir: str | os.PathLike | None = None) -> str:
    """One entry per resource: name, present/missing, size (``~``: approximate), description, destination."""
    lines = []
    for name in names:
        resource = resources.FILES[name]
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
    unknown = [name for name in names if name != "all" and name not in resources.FILES]
    if unknown:
        print(f"headlens download: error: unknown name{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
              f"valid names: {', '.join(resources.FILES)}, all", file=sys.stderr)  # fmt: skip
        return 2
    selected = list(resources.FILES) if "all" in names or not names else list(dict.fromkeys(names))
    if args.list:
        print(format_list(selected, args.data_dir))
        return 0
    if not names:
        print(f"headlens download: error: name what to fetch (or all); valid names: {', '.join(resources.FILES)}; "
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


#: what other modules import from here: the downloads themselves and the errors a download raises.
__all__ = [
    "ChecksumError", "DownloadError", "Remote", "Resource", "UnsafeArchiveError", "configure_parser",
    "download", "download_file", "expected_path", "fetch", "format_list", "hint", "is_present", "run", "unpack",
]  # fmt: skip
