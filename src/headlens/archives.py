"""Unpacking archives safely: every member is checked before anything is written, on every
Python (the ``tarfile`` data filter of newer releases is only a second guard), and what an
archive holds is merged into place without touching files it does not hold.

Refused (:class:`UnsafeArchiveError`): paths that lead outside the target (absolute, ``..``),
links (symbolic or hard, whatever they point at), devices and other special files. Used by
``headlens download`` and by the reader of MMF's checkpoint archives.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from .errors import UnsafeFileError


class DownloadError(RuntimeError):
    """A file could not be fetched or unpacked; the message names the URL or the file."""


class UnsafeArchiveError(DownloadError, UnsafeFileError):
    """An archive member headlens refuses to unpack: a path leading outside the folder it is
    unpacked into, a link (symbolic or hard, whatever it points at) or a special file."""


#: what an unsafe member's message ends with: there is no opt-in for archives.
_UNPACK_YOURSELF = "headlens reads nothing from the archive; unpack it yourself if you trust it"
#: the tarfile data filter's refusals (Python 3.12, and the 3.10/3.11 security releases), where it exists.
_FILTER_ERRORS = (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()


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
