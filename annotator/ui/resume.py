"""Where the user was in each working file, kept in the user's settings (a :class:`~annotator.session.image_states.ResumeStore`).

Why the settings and not the working file: the position changes on every
image switch, and writing it into the working file would make browsing an
edit (a save per image, a "modified" title with autosave off, a working file
created in a folder the user only looked at, churn in a dataset kept under
version control, and a conflict between two windows on one file); it is
also the user's own place, not a fact about the dataset a colleague opening
the same file should inherit. A read-only window (another one holds the
file) still remembers its place.

The store is one settings key, ``resume/positions``: a JSON object from the
working file's absolute path to the image's absolute path, with the most
recently used last, at most :data:`MAX_ENTRIES` of them (JSON because
QSettings treats ``/`` in a key as a group separator).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, Optional

log = logging.getLogger(__name__)

KEY = "resume/positions"
#: Working files remembered; the least recently used goes first.
MAX_ENTRIES = 200


class SettingsResume:
    """:class:`~annotator.session.image_states.ResumeStore` over a :class:`annotator.ui.settings.Settings`."""

    def __init__(self, settings) -> None:
        self._qs = settings.qsettings

    def _load(self) -> Dict[str, str]:
        raw = self._qs.value(KEY, "")
        if not raw:
            return {}
        try:
            data = json.loads(raw if isinstance(raw, str) else str(raw))
        except ValueError:
            log.warning("settings %s: ignoring %s, not JSON", self._qs.fileName(), KEY)
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}

    def get(self, working_file: Path) -> Optional[Path]:
        """The image the user was on in ``working_file`` (absolute), or ``None``."""
        image = self._load().get(str(working_file))
        return Path(image) if image else None

    def put(self, working_file: Path, image: Path) -> None:
        """Remember ``image`` for ``working_file`` (both absolute)."""
        data = self._load()
        data.pop(str(working_file), None)
        data[str(working_file)] = str(image)
        while len(data) > MAX_ENTRIES:
            data.pop(next(iter(data)))
        self._qs.setValue(KEY, json.dumps(data, ensure_ascii=False))
