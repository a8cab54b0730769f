"""Where each image stands in the labeler's work: to do, done or skipped (no Qt).

The state is the user's, recorded in the image record's extra field
``"state"`` of the working file (COCO readers ignore unknown fields):

* ``"todo"``: not finished. An image that has annotations and no recorded
  state counts as to do, as does every image the working file does not list.
* ``"done"``: finished. Done with zero annotations is a **negative**: an image
  that was looked at and holds no object. It stays listed in ``images`` with
  no annotations, which is how a COCO reader (and our exporters, which write
  empty label files for it) tells it from an image nobody opened.
* ``"skipped"``: left out on purpose (blurred, off-topic...).

A fourth state the image list shows, *unusable* (the file cannot be read),
is not stored: it is found again every time the image is loaded.

These names and values are part of the file format: keep them exactly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

__all__ = [
    "STATE_FIELD",
    "TODO",
    "DONE",
    "SKIPPED",
    "STATES",
    "UNUSABLE",
    "recorded_state",
    "effective_state",
    "common_folder",
]

#: The image record's extra field that holds the state.
STATE_FIELD = "state"
TODO = "todo"
DONE = "done"
SKIPPED = "skipped"
#: The values the field may hold.
STATES = (TODO, DONE, SKIPPED)
#: Not stored: an image whose file cannot be used (the image list's own state).
UNUSABLE = "unusable"


def recorded_state(extra: Optional[Mapping[str, Any]]) -> Optional[str]:
    """The state recorded in an image record's ``extra`` dict, or ``None`` (absent or not one of :data:`STATES`)."""
    value = extra.get(STATE_FIELD) if extra else None
    return value if value in STATES else None


def effective_state(extra: Optional[Mapping[str, Any]]) -> str:
    """What the user sees: the recorded state, else :data:`TODO` (``extra`` ``None``: the image is not listed)."""
    return recorded_state(extra) or TODO


def common_folder(paths: Sequence["os.PathLike[str] | str"]) -> Path:
    """The deepest folder holding every one of ``paths`` (image files): where their working file goes by default.

    Raises
    ------
    ValueError
        No paths, or paths with no folder in common (different drives on
        Windows; only the file-system root in common elsewhere, where a working
        file could not be written): the user must name the working file.
        The message says which.
    """
    if not paths:
        raise ValueError("no image files given")
    folders = [os.path.dirname(os.path.abspath(p)) for p in paths]
    try:
        common = os.path.commonpath(folders)
    except ValueError:  # different drives
        raise ValueError("the images are on different drives") from None
    if os.path.dirname(common) == common and len(set(folders)) > 1:  # only the root ('/', 'C:\\') in common
        raise ValueError("the images have no folder in common but the root")
    return Path(common)
