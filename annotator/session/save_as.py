"""File → Save As: write the document to another file and work on that file from now on.

:meth:`annotator.data.document.Dataset.save` with another path does the
move: ``file_name`` values are rewritten relative to the new file's folder,
the document's path and root move there once the write succeeded, and the
lock (if the window held one, or wanted one: a read-only window) moves with
it. The refusals are the data layer's, the same as Save a Copy's: a file
another window or program holds is never written over
(:class:`~annotator.data.workfile.SaveError`, ``EBUSY``), nor a FIFO, a
folder or an unwritable place; after a refusal nothing has changed.

This module adds what the window needs afterwards: the accept in flight is
finished first (its annotation goes into the new file), the resume position
follows the file, and the title and status bar say which file is in use.
"""

from __future__ import annotations

import logging
from pathlib import Path

from annotator.session.read_only import read_only_reason

log = logging.getLogger(__name__)


def check_target(target: Path) -> None:
    """Refuse a working file (or copy) named like an image (``photo.jpg``): Save a Copy and Save As both.

    A JSON file written there would replace the user's picture, or be listed
    as an image (an unusable one) the next time the folder is opened.

    Raises
    ------
    annotator.data.workfile.SaveError
        ``target``'s extension is one of :data:`annotator.data.imageio.IMAGE_EXTENSIONS`.
    """
    from annotator.data.imageio import IMAGE_EXTENSIONS
    from annotator.data.workfile import SaveError

    if Path(target).suffix.lower() in IMAGE_EXTENSIONS:
        what = "would replace that image" if Path(target).exists() else "would be listed as an image"
        raise SaveError(target, f"it is an image file name: the annotations (JSON) written there {what}; "
                                "choose a name ending in .json")


def save_as(session, target: Path) -> Path:
    """Write ``session``'s document to ``target`` and make it the working file; returns the file written.

    Parameters
    ----------
    session
        The :class:`~annotator.session.session.Session` (a folder open).
    target
        The new working file (COCO JSON). The working file itself: a plain save.

    Raises
    ------
    ValueError
        No folder is open.
    OSError
        :func:`check_target`'s refusal (an image's file name), or
        :class:`~annotator.data.workfile.SaveError` or
        :class:`~annotator.data.workfile.ReadOnlyError` (the working file
        itself, held by another window): nothing changed, the work is still
        in the window.
    """
    session.wait_for_accept()
    dataset = session.dataset
    if dataset is None:
        raise ValueError("Open a folder first")
    check_target(target)
    old = Path(dataset.path)
    written = dataset.save(Path(target))
    log.info("saved as %s (was %s)", written, old)
    states, image = session.states, session.images.current_path
    if states.resume is not None and image is not None:  # reopening the new file resumes here
        states.resume.put(Path(written).absolute(), Path(image).absolute())
    session.dirtyChanged.emit(session.dirty)  # the title names the new file
    if dataset.read_only:  # (the lock moved: a file another window holds is refused before this)
        session.statusMessage.emit(f"Saved as {written}; read-only: {read_only_reason(dataset)}", 0)
    else:
        session.statusMessage.emit(f"Saved as {written}: this window now works on it ({old.name} is left as it "
                                   "was at its last save)", 8000)
    return Path(written)
