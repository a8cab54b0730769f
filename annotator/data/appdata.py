"""Reading the files in ``resources/`` (default categories, style sheet).

Installed, ``pyproject.toml`` maps the ``resources/`` folder to the package
``annotator.resources``, read with :mod:`importlib.resources`. From a source
tree (``PYTHONPATH=.``) that package does not exist, so the folder beside the
``annotator`` package is read instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

SOURCE_TREE_RESOURCES = Path(__file__).resolve().parents[2] / "resources"


def resource_text(name: str) -> Optional[str]:
    """The text of resource ``name`` (e.g. ``"style.qss"``), or ``None`` if it cannot be found."""
    try:
        from importlib.resources import files

        return files("annotator.resources").joinpath(name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError, OSError):
        pass
    try:
        return (SOURCE_TREE_RESOURCES / name).read_text(encoding="utf-8")
    except OSError:
        log.warning("resource %s not found", name)
        return None
