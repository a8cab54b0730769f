"""Work-arounds for bugs of the installed Qt binding, applied once on import.

PySide6 6.12.0 hands back ``None`` from every ``void`` C++ method (``setText``,
``setPixmap``, ``processEvents``...) and ``True`` from ``SignalInstance.emit``
without owning a reference to them. Python 3.12 and later do not notice
(those objects are immortal there), but on Python 3.10 and 3.11 each such call
takes one reference away, and after some minutes of annotating the process
aborts with "Fatal Python error: none_dealloc: deallocating None" (or
``bool_dealloc``).

:func:`apply` probes the running binding. Where it has the bug and Python
keeps counting references to these singletons, it gives ``None``, ``True``
and ``False`` 2**40 extra references: what Python 3.12 calls immortal in
effect (a trillion leaked references are needed to reach zero). A fixed
binding, or Python 3.12+, is left alone.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

EXTRA_REFERENCES = 1 << 40
_applied = False
#: What the probe found: the names of the singletons the binding leaks references of (empty: none).
LEAKS: tuple = ()


def _probe() -> tuple:
    """Which of ``None`` / ``True`` the binding drops references to (64 calls of each kind)."""
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    n = 64
    found = []
    for name, obj, call in (
        ("None", None, lambda: probe.setObjectName("probe")),  # a void method
        ("True", True, lambda: probe.ping.emit()),  # emit() returns True
    ):
        before = sys.getrefcount(obj)
        for _ in range(n):
            call()
        if before - sys.getrefcount(obj) >= n:
            found.append(name)
    return tuple(found)


def _add_references(obj: object, count: int) -> None:
    """Raise ``obj``'s reference count by ``count`` (CPython: ``ob_refcnt`` is the object's first field)."""
    ctypes.c_ssize_t.from_address(id(obj)).value += count


def apply() -> None:
    """Install the work-arounds the running binding needs (idempotent)."""
    global _applied, LEAKS
    if _applied:
        return
    _applied = True
    if sys.implementation.name != "cpython":  # pragma: no cover
        return
    LEAKS = _probe()
    if not LEAKS or sys.version_info >= (3, 12):
        return
    from PySide6 import __version__ as pyside_version

    log.info(
        "PySide6 %s drops references to %s on Python %d.%d; making them immortal to avoid a crash. "
        "Another PySide6 version avoids this.",
        pyside_version, " and ".join(LEAKS), *sys.version_info[:2],
    )
    for obj in (None, True, False):
        _add_references(obj, EXTRA_REFERENCES)


apply()
