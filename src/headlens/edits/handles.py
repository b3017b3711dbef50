"""One mechanism for every change headlens makes to a model.

Capturing attention maps, gating heads, switching the attention function, entering LRP
mode, putting a model in eval mode: each is an *edit*, and every edit registers, at the
moment it is made, how it is undone. :func:`editing` collects them for a block and
undoes them all in reverse order when the block ends, normally or by an exception — so
no code path can leave a hook, a switched config or an active mode behind.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

Handle = TypeVar("Handle")


class Edits:
    """The undo steps of the edits made in one block, newest last."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def add(self, undo: Callable[[], None]) -> None:
        """Register how an edit just made is undone."""
        self._undo.append(undo)

    def hook(self, handle: Handle) -> Handle:
        """Register a PyTorch hook handle (anything with ``remove()``); returns it."""
        self.add(handle.remove)
        return handle

    def undo(self) -> None:
        """Undo every edit, newest first; each runs even if an earlier one fails (the first
        failure is raised afterwards)."""
        failure: BaseException | None = None
        while self._undo:
            try:
                self._undo.pop()()
            except BaseException as error:  # noqa: BLE001 - keep undoing, report the first
                failure = failure or error
        if failure is not None:
            raise failure


@contextmanager
def editing() -> Iterator[Edits]:
    """A block whose edits (registered on the yielded :class:`Edits`) are all undone when it ends."""
    edits = Edits()
    try:
        yield edits
    finally:
        edits.undo()
