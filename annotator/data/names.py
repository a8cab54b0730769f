"""Image ``file_name`` values written by other tools, matched to the files they name.

We write ``file_name`` as a POSIX path relative to the working file's folder
(``sub/a.jpg``), and the window finds an image's record by that exact string.
Files made elsewhere spell the same file differently:

* Windows separators: ``sub\\a.jpg`` (a COCO or labelme file written with
  ``os.path.join`` on Windows);
* ``./a.jpg``, ``sub//a.jpg``, ``sub/../a.jpg`` (path joins in scripts);
* an absolute path, ``/data/project/a.jpg``.

Matched exactly, such a record is never found: its annotations do not show,
and the first accept on the image adds a *second* record for the same file
(an export then lists the picture twice). :func:`name_key` gives the spelling
every name of one file shares, so the document can find the record whatever
its spelling, and :func:`local_name` the name to open on this system. The
``file_name`` in the record is never rewritten: the file is saved back as it
was read.

``..`` segments are folded textually (``a/../b`` is ``b``), as every COCO
reader does; a folder symlink in between is not followed.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Union

__all__ = ["local_name", "name_key"]

PathLike = Union[str, "os.PathLike[str]"]


def local_name(file_name: str, root: PathLike) -> str:
    """``file_name`` as this system opens it below ``root``: Windows separators read as ``/`` on POSIX.

    A name whose backslash is really part of a file name (a file called
    ``a\\b.jpg`` exists in ``root``) is kept as it is.
    """
    if "\\" in file_name and os.sep == "/" and not os.path.lexists(os.path.join(os.fspath(root), file_name)):
        return file_name.replace("\\", "/")
    return file_name


def name_key(file_name: str, root: PathLike) -> str:
    """What every spelling of the file ``file_name`` (below ``root``) has in common.

    Separators as ``/``, ``.`` and ``..`` segments and doubled slashes folded,
    and an absolute path made relative to ``root`` (kept absolute on another
    Windows drive): ``name_key("./sub\\\\a.jpg", r)`` is ``"sub/a.jpg"``, as
    is ``name_key(str(r / "sub/a.jpg"), r)``. On POSIX a backslash that is
    part of a file's name (see :func:`local_name`) is kept: ``a\\b.jpg`` and
    ``a/b.jpg`` are then two files.
    """
    name = local_name(file_name, root) if os.sep == "/" else file_name.replace("\\", "/")
    if os.path.isabs(name) or posixpath.isabs(name):
        try:
            name = os.path.relpath(os.path.normpath(name), os.path.abspath(os.fspath(root)))
        except ValueError:  # another drive on Windows
            pass
        name = Path(name).as_posix() if os.sep != "/" else name
    return posixpath.normpath(name)
