"""Errors a user can cause, as opposed to bugs in headlens.

Every loader and check that reads something a user gave (a file, a folder, a config key,
a command-line value) raises one of these, with a message that names the file (and the
line, field or key) and says what to do. The command-line front ends turn them into one
line on stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: a file, folder, value or key that headlens cannot use as given."""


class UnsafeFileError(InputError):
    """A file headlens refuses to load because loading it could run code it contains
    (a pickle that names something beyond plain data), or an archive member that could
    land outside its folder. The message says which opt-in would load it anyway."""
