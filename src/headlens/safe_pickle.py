"""Pickles read as plain data only: the MMF imdb ``.npy`` and LMDB records.

A pickle is a program: each global it names (``module.name``) is imported and may be called
while it loads, so a planted ``__reduce__`` runs its code the moment ``pickle.loads`` sees it.
:class:`RestrictedUnpickler` admits only the globals that plain data needs — builtins
containers and scalars, and numpy's array, dtype and scalar reconstruction under both the
numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``) module names — and refuses anything
else with :class:`~headlens.errors.UnsafeFileError`, naming the file, the refused
``module.name`` and the opt-in. ``trust=True`` (``trust_pickle``) loads with plain
:mod:`pickle`, which runs whatever code the file holds.

:func:`read_npy` reads a ``.npy`` file: numeric arrays as ``np.load(allow_pickle=False)``
does; an object array (what ``np.save`` writes for a list of dicts: the header, then the
array pickled) through the restricted unpickler.
"""

from __future__ import annotations

import builtins
import codecs
import collections
import io
import os
import pickle
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np

from .errors import InputError, UnsafeFileError

#: how a user loads a refused file anyway, for the error messages.
OPT_IN = (
    "if you trust the file and where it came from, load it with trust_pickle=True "
    "(config key trust_pickle=true), which runs any code the file holds"
)
#: how the unpickling of plain data can fail on a damaged or truncated file.
DAMAGED = (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
           MemoryError, OverflowError, UnicodeDecodeError)  # fmt: skip

_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "bytearray", "bytes", "str", "int", "float", "complex", "bool")


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes, limited to latin-1."""
    if encoding != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} (only latin1 is plain data)")
    return codecs.encode(text, "latin1")


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """numpy's reconstruction functions under every module name a pickle may use for them."""
    array = np.zeros(1)
    reconstruct = array.__reduce__()[0]  # multiarray._reconstruct
    scalar = np.float64(0).__reduce__()[0]  # multiarray.scalar
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
    reduced = array.__reduce_ex__(5)[0]  # numeric._frombuffer (pickle protocol 5), where numpy has it
    if getattr(reduced, "__name__", "") == "_frombuffer":
        for core in ("numpy.core", "numpy._core"):
            allowed[(f"{core}.numeric", "_frombuffer")] = reduced
    return allowed


_ALLOWED: dict[tuple[str, str], Any] = {
    **{(module, name): getattr(builtins, name) for module in ("builtins", "__builtin__") for name in _BUILTINS},
    ("_codecs", "encode"): _latin1,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **_numpy_globals(),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds plain data only (see the module docstring)."""

    def __init__(self, file: IO[bytes], source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is None:
            raise UnsafeFileError(
                f"{self.source}: refusing to load: its pickle names {module}.{name}, which is not plain data "
                f"(numbers, strings, lists, dicts, numpy arrays) and could run code; {OPT_IN}"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeFileError(f"{self.source}: refusing to load: its pickle refers to outside objects (persistent ids); {OPT_IN}")


def load(handle: IO[bytes], source: str, trust: bool = False) -> Any:
    """One pickled object from ``handle``: plain data only unless ``trust`` (which runs its code)."""
    try:
        return pickle.load(handle) if trust else RestrictedUnpickler(handle, source).load()
    except UnsafeFileError:
        raise
    except DAMAGED as error:
        raise InputError(f"{source}: damaged or truncated pickle ({type(error).__name__}: {error})") from None


def loads(data: bytes, source: str, trust: bool = False) -> Any:
    """:func:`load` from bytes."""
    return load(io.BytesIO(data), source, trust)


def read_npy(path: str | os.PathLike, trust: bool = False) -> np.ndarray:
    """The array in a ``.npy`` file; an object array is unpickled as plain data (see the module docstring)."""
    path = Path(path)
    read_header: dict[tuple[int, int], Callable] = {
        (1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0,
    }  # fmt: skip
    with open(path, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            if version not in read_header:  # version 3 (utf-8 field names) holds no object arrays np.save writes
                handle.seek(0)
                return np.lib.format.read_array(handle, allow_pickle=False)
            shape, fortran, dtype = read_header[version](handle)
            if not dtype.hasobject:
                handle.seek(0)
                return np.lib.format.read_array(handle, allow_pickle=False)
        except (ValueError, EOFError, OSError) as error:
            raise InputError(f"{path}: not a readable .npy file ({error})") from None
        array = load(handle, str(path), trust)
    if not isinstance(array, np.ndarray) or array.shape != tuple(shape):
        raise InputError(f"{path}: the pickled payload is not the {tuple(shape)} array its .npy header announces")
    return array
