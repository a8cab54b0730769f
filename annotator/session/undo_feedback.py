"""What Ctrl+Z and Ctrl+Shift+Z say in the status bar: the step undone or redone, and its image.

Document steps (an accept, a deletion, a stroke on an accepted annotation, an
image's state) are undone from any image (see :mod:`annotator.session.undo`),
so a Ctrl+Z pressed on one image can change another the user cannot see; the
message names that image. Steps without one image (a category, an import)
are named alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional


def step_image(cmd: Any, dataset: Any) -> Optional[str]:
    """The ``file_name`` (relative to the dataset's root) of the image ``cmd`` changed, or None (no one image).

    Reads the values the commands hold (``accepted.image``, ``image``,
    ``file_name``, an annotation's ``image_id``); never calls them.
    """
    if dataset is None:
        return None
    accepted = getattr(cmd, "accepted", None)
    path = getattr(accepted, "image", None) if accepted is not None else getattr(cmd, "image", None)
    if isinstance(path, Path):
        return dataset.relative_name(path)
    for holder in (cmd, getattr(cmd, "change", None)):  # an image's state; a changed picture's review
        name = getattr(holder, "file_name", None)
        if isinstance(name, str):
            return name
    anns = getattr(cmd, "annotations", None) or [None]
    found = [getattr(cmd, "annotation", None), getattr(cmd, "new", None), anns[0]]
    if isinstance(getattr(cmd, "annotation_id", None), int):
        found.append(dataset.annotations.get(cmd.annotation_id))
    for ann in found:  # ``new`` is also a category's new name or colour: only annotations have an image_id
        image_id = getattr(ann, "image_id", None)
        if isinstance(image_id, int) and image_id in dataset.images:
            return dataset.images[image_id].file_name
    return None


def step_message(verb: str, cmd: Any, dataset: Any, current: Optional[Path]) -> str:
    """``"Undid: Accept object"``, plus ``" (on img.jpg)"`` when the step's image is not ``current``.

    ``verb``: ``"Undid"`` or ``"Redid"``; ``cmd``: the command done, or None
    (then ``"Nothing to undo"`` / ``"Nothing to redo"``).
    """
    if cmd is None:
        return f"Nothing to {'undo' if verb == 'Undid' else 'redo'}"
    text = cmd.text() or "the last step"
    name = step_image(cmd, dataset)
    here = dataset.relative_name(current) if dataset is not None and current is not None else None
    if name is not None and name != here:
        return f"{verb}: {text} (on {name})"
    return f"{verb}: {text}"
