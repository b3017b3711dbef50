"""Content digests of the files and folders a run reads, streamed (files run to many GB).

Used wherever a number must be tied to the exact inputs that produced it: the fingerprint
that decides whether a partial run may resume, and the provenance recorded in result files.
Size and modification time are not enough (a file can be rewritten in place within the
same second, or copied with its times kept), so the bytes themselves are hashed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, or of a folder: every file under it, by relative path and
    content, in sorted order (so renaming, adding or changing any file changes it)."""
    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        digest.update(file_sha256(file).encode() + b"\n")
    return digest.hexdigest()
