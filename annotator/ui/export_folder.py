"""Where File → Export's folder picker opens for the folder formats (YOLO, VOC, labelme, masks).

It used to open in the images folder whenever no ``*_export`` folder existed
yet, so one OK exported into the folder of the photos (YOLO ``labels/`` and
``images/`` copies, masks, labelme JSONs among the pictures). It now offers a
sibling of the images folder, ``<images>/../<images>_<format>_export``
(``photos_yolo_export`` for ``photos``), never a folder inside it:

* a folder the user exported into before is offered again (the sibling, or
  an ``<format>_export`` folder beside the working file, where earlier
  versions suggested one);
* otherwise the sibling is created for the picker to open it (a folder
  picker cannot select a folder that does not exist) and removed again when
  the user cancels or picks another folder, as long as it is still empty.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)


def sibling_folder(images: Path, name: str) -> Path:
    """``<images>/../<images.name>_<name>``: beside the images folder (``name`` e.g. ``"yolo_export"``)."""
    images = Path(images).absolute()
    base = images.name or "images"
    return images.parent / f"{base}_{name}"


class ProposedFolder:
    """The folder the export picker opens in (see the module notes); :meth:`done` tidies it up.

    Parameters
    ----------
    images
        The images folder (never proposed, nor anything inside it).
    working_file
        The working file (an older ``<name>`` folder beside it is offered again if it exists).
    name
        The format's folder name, e.g. ``"yolo_export"``.
    """

    def __init__(self, images: Path, working_file: Path, name: str) -> None:
        self._created: Optional[Path] = None
        sibling = sibling_folder(images, name)
        earlier = Path(working_file).absolute().parent / name
        if sibling.is_dir():
            self.start = sibling
        elif earlier.is_dir():
            self.start = earlier  # the user exported there before: their choice
        else:
            try:
                sibling.mkdir()
                self._created = self.start = sibling
            except OSError as exc:  # an unwritable parent folder: open beside the images, nothing created
                log.info("cannot create %s for the export picker: %s", sibling, exc)
                self.start = sibling.parent

    def done(self, chosen: Optional[Path]) -> None:
        """The picker answered ``chosen`` (``None``: cancelled): the folder made for it goes unless it was chosen."""
        made = self._created
        if made is None or (chosen is not None and Path(chosen).absolute() == made):
            return
        try:
            made.rmdir()  # only if still empty: never anything the user put there meanwhile
        except OSError:
            pass
