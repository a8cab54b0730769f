"""The one rule for user actions while an accept is being finished: they wait, in order.

An accept computes its full-resolution mask on the decoder thread (a few ms
to a few tens). Until the annotation is in the document, every user action
(a click, a key, a panel edit, a segment-everything command) is queued and
replayed in order afterwards, so Ctrl+Z, a new click or the next image never
races the annotation being added. The :class:`ActionGate` holds that queue;
:func:`waits_for_accept` puts a method behind it (the method's object has a
``gate`` attribute). Every part's user entry point uses the same gate.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, List, Tuple


class ActionGate:
    """A queue of user actions that waits while an accept is held (see the module notes)."""

    def __init__(self) -> None:
        self._held = False
        self._queue: List[Tuple[Callable[..., Any], tuple, dict]] = []
        self._replaying = False

    @property
    def busy(self) -> bool:
        """An accept is being finished: actions wait."""
        return self._held

    @property
    def waiting(self) -> int:
        """How many actions are queued."""
        return len(self._queue)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` now, or (returning ``None``) once the accept in flight is finished."""
        if self._held:
            self._queue.append((fn, args, kwargs))
            return None
        return fn(*args, **kwargs)

    def hold(self) -> None:
        """An accept has started: actions wait from now on."""
        self._held = True

    def release(self) -> None:
        """The accept is finished (or failed): run the waiting actions in order, until one starts another accept."""
        self._held = False
        if self._replaying:
            return  # the outer replay loop goes on
        self._replaying = True
        try:
            while self._queue and not self._held:
                fn, args, kwargs = self._queue.pop(0)
                fn(*args, **kwargs)
        finally:
            self._replaying = False

    def clear(self) -> None:
        """Forget the waiting actions (shutdown)."""
        self._queue.clear()

    def wait(self, timeout_s: float = 30.0) -> bool:
        """Process events until no accept is held (before a save on close, or another folder). Returns whether none is."""
        from PySide6.QtCore import QCoreApplication, QEventLoop

        deadline = time.monotonic() + timeout_s
        while self._held and time.monotonic() < deadline:
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            if self._held:
                time.sleep(0.002)
        return not self._held


def waits_for_accept(method):
    """Decorator: the method is a user action that waits behind ``self.gate`` (an :class:`ActionGate`)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        return self.gate.call(method, self, *args, **kwargs)

    wrapper.waits_for_accept = True
    return wrapper
