"""Images that join or leave the open folder while it is open, kept in step with the image list.

File → Import of labelme files whose image exists only inside the JSON
(``imageData``) writes that image into the open folder; undoing the import
removes it again (see :mod:`annotator.session.importing`). :class:`FolderImages`
is how such a change reaches the window: the navigator's list gains or loses
the paths (``imageListChanged``), and the image on show is never one that
has gone from the disk:

* added to a folder that had no image on show (an empty folder, say): the
  first image is shown, as opening a folder does;
* removed while on show: the nearest image that stays is shown first (the
  next one, else the one before), or nothing when none stays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Sequence


class FolderImages:
    """Add or remove images of the open folder's list (see the module notes).

    Parameters
    ----------
    images
        The session's :class:`~annotator.session.navigation.ImageNavigator`.
    go_to
        ``go_to(index)``: show image ``index`` (the session's, which leaves the current image first).
    leave
        ``leave()``: no image on show any more (prompts, edits and the canvas cleared).
    """

    def __init__(self, images, go_to: Callable[[int], None], leave: Callable[[], None]) -> None:
        self._images = images
        self._go_to = go_to
        self._leave = leave

    def add(self, paths: Sequence[Path]) -> List[Path]:
        """List ``paths`` (files now in the open folder); returns those that were not listed yet."""
        nav = self._images
        nothing_shown = nav.current_path is None
        added = nav.add_paths(paths)
        if added and nothing_shown and nav.paths:
            self._go_to(0)
        return added

    def remove(self, paths: Sequence[Path]) -> List[Path]:
        """Stop listing ``paths`` (about to be deleted), moving off the image on show first if it is one."""
        nav = self._images
        gone = {Path(p) for p in paths}
        current = nav.current_path
        if current is not None and current in gone:
            stays = [i for i, p in enumerate(nav.paths) if p not in gone]
            after = [i for i in stays if i > nav.index]
            before = [i for i in stays if i < nav.index]
            if after or before:
                self._go_to(after[0] if after else before[-1])
            else:
                self._leave()
        return nav.remove_paths(list(gone))
