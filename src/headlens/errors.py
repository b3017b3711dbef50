"""Errors a user can cause, as opposed to bugs in headlens.

Every loader and check that reads something a user gave (a file, a folder, a config key,
a command-line value) raises one of these, with a message that names the file (and the
line, field or key) and says what to do. The command-line front ends turn them into one
line on stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable


class InputError(ValueError):
    """Bad input: a file, folder, value or key that headlens cannot use as given."""


class UnsafeFileError(InputError):
    """A file headlens refuses to load because loading it could run code it contains
    (a pickle that names something beyond plain data), or an archive member that could
    land outside its folder. The message says which opt-in, if there is one, would load it
    anyway (``trust_pickle``, for pickles headlens can read only by running them)."""


def library_errors() -> tuple[type[BaseException], ...]:
    """Exceptions of the file-format libraries headlens reads with. Loaders wrap these with the
    file's name; this net only makes sure a case that slipped through still ends as one line."""
    import pickle
    import tarfile
    import zipfile

    found: list[type[BaseException]] = [pickle.UnpicklingError, tarfile.TarError, zipfile.BadZipFile]
    try:
        import yaml

        found.append(yaml.YAMLError)
    except ImportError:  # pragma: no cover - PyYAML comes with omegaconf
        pass
    try:
        from safetensors import SafetensorError

        found.append(SafetensorError)
    except ImportError:  # pragma: no cover - safetensors comes with transformers
        pass
    return tuple(found)


#: what a user's input can raise: our own errors, bad values and paths, broken files.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError, EOFError)


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line (a KeyError's without its quotes)."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    text = "; ".join(part.strip() for part in text.splitlines() if part.strip())
    return text or type(error).__name__


def debugging() -> bool:
    """``HEADLENS_DEBUG=1`` (or ``--debug``, which sets it): show tracebacks instead of one line."""
    return os.environ.get("HEADLENS_DEBUG", "") not in ("", "0", "false", "no")


def run_command(prog: str, fn: Callable[[], int]) -> int:
    """Run a command's body; an error a user can cause becomes one line on stderr and exit code 2,
    Ctrl-C one line and 130. Anything else is a bug and keeps its traceback."""
    try:
        return fn()
    except USER_ERRORS + library_errors() as error:
        if debugging():
            raise
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debugging():
            raise
        print(f"{prog}: interrupted; partial results are kept: rerun the same command to resume", file=sys.stderr)
        return 130


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a bad argument reported in one line (``prog: error: …``, exit code 2)
    instead of the usage block followed by the error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def at_least(least: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer of at least ``least``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value

    parse.__name__ = f"integer ≥ {least}"
    return parse


def notice(message: str) -> None:
    """Tell the user something that changes what a run does (it resumes, it starts afresh, it
    uses fewer examples than asked for): one line on stderr."""
    print(f"headlens: {message}", file=sys.stderr, flush=True)


def choose(value, valid, what: str, error: type[Exception] = InputError, listed=None):
    """``value`` if it is one of ``valid``; else ``error``: ``unknown <what> <value>; valid: …``
    (``listed``: the valid names as the message should show them, aliases say)."""
    if value in valid:
        return value
    raise error(f"unknown {what} {value!r}; valid: {', '.join(map(str, listed if listed is not None else valid))}")


def check_choices(values, valid, where: str, error: type[Exception] = InputError) -> list:
    """``values`` as a list if it is a non-empty selection from ``valid``; else ``error`` naming ``where``."""
    values = list(values)
    if not values or any(v not in valid for v in values):
        raise error(f"{where}: {values} is not a non-empty choice of {', '.join(map(str, valid))}")
    return values
