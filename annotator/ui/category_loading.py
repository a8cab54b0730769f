"""Loading a list of categories: the panel's Load… button and ``sam-annotator --categories FILE``.

:class:`CategoryLoading` reads the file (:mod:`annotator.data.category_lists`),
adds the names the working file lacks through the session (one undo step;
names already present are kept, never duplicated), and tells the user what
happened: added, already there, and every line it could not use. A list
given on the command line before a folder is open waits for the folder. A
working file open read-only (another window holds it) gets nothing: it is
refused, as File → Import is, instead of failing its first autosave.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from annotator.data.category_lists import CategoryListError, read_categories
from annotator.session.read_only import read_only_reason

#: Problems listed in the message box (the rest are counted).
SHOWN_PROBLEMS = 12
FILTER = "Category lists (*.txt *.json);;Text, one name a line (*.txt);;COCO files (*.json);;All files (*)"


class CategoryLoading(QObject):
    """Loads category lists into the session's working file (no dialogs while ``window.interactive`` is False)."""

    def __init__(self, window: QWidget, session) -> None:
        super().__init__(window)
        self._window = window
        self._session = session
        self._pending: Optional[Path] = None
        #: The last report (``(added, kept, problems)``), for tests and the status bar.
        self.last: Optional[tuple] = None
        session.folderChanged.connect(self._folder_opened)

    def choose(self) -> None:
        """Ask for a file and load it (the panel's Load… button)."""
        if self._session.dataset is None:
            self._session.statusMessage.emit("Open a folder first: categories belong to its working file", 5000)
            return
        path, _ = QFileDialog.getOpenFileName(self._window, "Load categories", "", FILTER)
        if path:
            self.load(Path(path))

    def load_when_open(self, path: Optional[Path]) -> None:
        """Load ``path`` now if a working file is open, else once one is (``--categories``)."""
        if path is None:
            return
        if self._session.dataset is None:
            self._pending = Path(path)
        else:
            self.load(Path(path))

    def load(self, path: Path) -> Optional[tuple]:
        """Add the categories of ``path``; returns ``(added, kept, problems)`` or ``None`` if the file is unusable."""
        dataset = self._session.dataset
        if dataset is not None and dataset.read_only:  # as File → Import: nothing it adds could be saved there
            self._tell(f"Categories not loaded: {read_only_reason(dataset)} (this window has it read-only)", [],
                       error=True)
            return None
        try:
            listed = read_categories(path)
        except CategoryListError as exc:
            self._tell(f"Categories not loaded: {exc}", [], error=True)
            return None
        kept = [n for n in listed.names if dataset is not None and dataset.category_by_name(n) is not None]
        self._session.add_categories(listed.entries)
        added = [n for n in listed.names if n not in kept]
        self.last = (added, kept, list(listed.problems))
        summary = f"{len(added)} categor{'y' if len(added) == 1 else 'ies'} added from {path.name}"
        if kept:
            summary += f", {len(kept)} already there"
        if listed.problems:
            summary += f"; {len(listed.problems)} line(s) not used"
        self._tell(summary, listed.problems)
        return self.last

    def _folder_opened(self) -> None:
        if self._pending is not None and self._session.dataset is not None:
            path, self._pending = self._pending, None
            self.load(path)

    def _tell(self, summary: str, problems: List[str], error: bool = False) -> None:
        self._session.statusMessage.emit(summary, 8000)
        if not getattr(self._window, "interactive", True) or not (problems or error):
            return
        text = "\n".join(problems[:SHOWN_PROBLEMS])
        if len(problems) > SHOWN_PROBLEMS:
            text += f"\n… and {len(problems) - SHOWN_PROBLEMS} more"
        box = QMessageBox(QMessageBox.Icon.Warning, "Load categories", summary, parent=self._window)
        if text:
            box.setInformativeText(text)
        box.setModal(False)  # no nested event loop: the window stays usable
        box.show()
