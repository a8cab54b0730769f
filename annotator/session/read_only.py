"""Why the open working file is read-only in this window, said once.

:attr:`annotator.data.document.Dataset.read_only` reads ``"opened read-only: X is open in another window
or program: process … since …"``. The window's messages put it after their own words ("Read-only: …",
"Not saved: …"), which gave "Read-only: opened read-only: …" and "X is opened read-only: opened
read-only: X is open …". :func:`read_only_reason` is the clause without that prefix.
"""

from __future__ import annotations

from typing import Optional

_PREFIX = "opened read-only: "


def read_only_reason(dataset) -> Optional[str]:
    """``"X is open in another window or program: process 4711 on host … since …"``, or ``None`` (writable)."""
    text = dataset.read_only if dataset is not None else None
    if not text:
        return None
    return text[len(_PREFIX):] if text.startswith(_PREFIX) else text
