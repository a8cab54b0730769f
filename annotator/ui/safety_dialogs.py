"""The window's questions when the user's work is at risk: the working file changed under us, what the loader repaired.

:class:`SafetyDialogs` asks and hands the answer to the session; it computes
nothing itself (the disk side is :mod:`annotator.data.workfile`).

**Conflict on save.** When another program changed the working file since
this window read or wrote it, the save did not overwrite it: this window's
version went to a conflict copy beside it
(:class:`~annotator.data.workfile.ConflictError`). The user is told both paths
once per conflict and chooses:

* **Keep Both** (the default, already done on disk): nothing else changes;
  this window's later saves keep going to the same copy until the user
  chooses otherwise (Ctrl+S asks again). The title keeps its ``*``.
* **Overwrite with Mine**: the other program's version is first copied aside
  (``NAME.theirs-YYYYmmdd-HHMMSS.json``), then this window's replaces the file.
* **Reload Theirs**: after a confirmation, the window reopens the file as the
  other program left it; this window's version stays in the conflict copy
  (when that copy could not be written, the confirmation says the changes
  will be lost).

The question comes once the user action that saved is over (a queued
connection), never in the middle of an accept or an undo.

**Load notes.** What the loader repaired or set aside when a folder was
opened (:attr:`annotator.data.document.Dataset.load_notes`) is shown once per
open: a line in the status bar, the full list in a dialog (or the log only,
when the window is not interactive).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMainWindow, QMessageBox

from annotator.ui.identity_bar import IdentityBar

log = logging.getLogger(__name__)

KEEP_BOTH, OVERWRITE, RELOAD = "keep-both", "overwrite", "reload"


class SafetyDialogs:
    """Conflict and load-note reports for ``window`` (its session, status bar, ``interactive`` and ``closing``)."""

    def __init__(self, window: QMainWindow) -> None:
        self._window = window
        self._asked_for: Optional[Path] = None  # the conflict copy the user was asked about
        self.notes_box: Optional[QMessageBox] = None  # the last load notes shown
        s = window.session
        s.saveConflict.connect(self.save_conflict, Qt.ConnectionType.QueuedConnection)
        s.folderChanged.connect(self._folder_opened)
        s.folderChanged.connect(self.show_load_notes, Qt.ConnectionType.QueuedConnection)  # after the open's own messages
        s.dirtyChanged.connect(self._saved)
        self.identity_bar = IdentityBar(window)  # above the image: keep or delete annotations of a changed picture
        # Ctrl+S asks again (the conflict is reported through a queued call, after this slot)
        window.actions_by_name["save"].triggered.connect(self._forget_answer)

    @property
    def _session(self):
        return self._window.session

    def _status(self, text: str, ms: int = 0) -> None:
        self._window.statusBar().showMessage(text, ms)

    def _can_ask(self) -> bool:
        return self._window.interactive and not self._window.closing

    # -- conflict on save --------------------------------------------------------------

    def save_conflict(self, exc) -> None:
        """The working file changed on disk (``exc``: a ConflictError): tell the user, ask once per conflict."""
        ours, dataset = exc.ours, self._session.dataset
        if dataset is None or not dataset.dirty or (ours is not None and dataset.conflict_copy != ours):
            return  # (queued) resolved since: a later save went through, or the file was reloaded
        where = f"this window's version is in {ours}" if ours is not None else "this window's version is only in memory"
        self._status(f"{exc.path} was changed by another program: not overwritten; {where}")
        if self._window.closing or (ours is not None and ours == self._asked_for):
            return  # asked already for this conflict: later saves go on into the same copy
        self._asked_for = ours
        if not self._can_ask():
            return  # non-interactive: keep both (already done on disk)
        self.resolve(exc, self.ask(exc))

    def conflict_box(self, exc) -> QMessageBox:
        """The question for ``exc``; its buttons are named ``keep-both``, ``overwrite`` and ``reload`` (objectName)."""
        ours = exc.ours
        box = QMessageBox(self._window)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("The annotation file was changed by another program")
        box.setText(f"<b>{exc.path.name}</b> was changed on disk since this window read it, so it was not "
                    "overwritten. Both versions are kept:")
        mine = str(ours) if ours is not None else "(could not be written: only in this window's memory)"
        box.setInformativeText(
            f"Theirs: {exc.path}\nMine: {mine}\n\n"
            "Keep Both: change nothing (this window goes on saving into its copy).\n"
            "Overwrite with Mine: theirs is copied aside first, then replaced by this window's version.\n"
            "Reload Theirs: show their version here (asks first)."
        )
        box.setDetailedText(str(exc))
        keep = box.addButton("Keep Both", QMessageBox.ButtonRole.AcceptRole)
        keep.setObjectName(KEEP_BOTH)
        box.addButton("Overwrite with Mine", QMessageBox.ButtonRole.DestructiveRole).setObjectName(OVERWRITE)
        box.addButton("Reload Theirs", QMessageBox.ButtonRole.ResetRole).setObjectName(RELOAD)
        box.setDefaultButton(keep)
        box.setEscapeButton(keep)
        return box

    def ask(self, exc) -> str:
        """Show :meth:`conflict_box`; the chosen button's name (Keep Both when the box is closed otherwise)."""
        box = self.conflict_box(exc)
        box.exec()
        clicked = box.clickedButton()
        return clicked.objectName() if clicked is not None and clicked.objectName() else KEEP_BOTH

    def confirm_reload(self, ours: Optional[Path]) -> bool:
        """``True`` when the user agrees to replace this window's document by the file on disk."""
        kept = (f"Your version stays in {ours}." if ours is not None
                else "Your unsaved changes exist nowhere else and will be lost.")
        answer = QMessageBox.question(
            self._window, "Reload their version?",
            f"This window will show the annotation file as the other program left it. {kept}\n\nReload now?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    def resolve(self, exc, choice: str) -> bool:
        """Carry out ``choice`` (:data:`KEEP_BOTH`, :data:`OVERWRITE` or :data:`RELOAD`); ``True`` once done."""
        from annotator.data.workfile import SaveError, set_aside

        s = self._session
        dataset = s.dataset
        if dataset is None or choice == KEEP_BOTH:
            return choice == KEEP_BOTH
        if choice == OVERWRITE:
            try:
                theirs = set_aside(dataset.path)
            except SaveError as err:
                QMessageBox.warning(self._window, "Not overwritten", f"{err}\n\nTheir version was left in place.")
                return False
            if not s.save(force=True):
                return False
            self._asked_for = None
            kept = f"; theirs is kept as {theirs.name}" if theirs is not None else ""
            self._status(f"Saved {dataset.path} with this window's version{kept}", 0)
            log.info("conflict resolved: overwrote %s with this window's version%s", dataset.path, kept)
            return True
        if choice == RELOAD:
            if not self.confirm_reload(exc.ours):
                return False
            ours = exc.ours
            self._asked_for = None
            ok = self._window.file_dialogs.open_folder(s.folder, dataset.path, discard_unsaved=True)
            if ok and ours is not None:
                self._status(f"Reloaded {dataset.path}; this window's earlier version is in {ours}", 0)
            return ok
        raise ValueError(f"unknown choice {choice!r}")

    def _forget_answer(self, *_: object) -> None:
        self._asked_for = None

    def _saved(self, dirty: bool) -> None:
        if not dirty:
            self._asked_for = None  # saved: a new conflict later is a new question

    # -- load notes --------------------------------------------------------------------

    def _folder_opened(self) -> None:
        self._asked_for = None

    def show_load_notes(self) -> None:
        """Tell the user once what the loader repaired or set aside in the document just opened."""
        dataset = self._session.dataset
        notes = list(dataset.load_notes) if dataset is not None else []
        if not notes or self._window.closing:
            return
        for note in notes:
            log.warning("loading %s: %s", dataset.path, note)
        more = f" (and {len(notes) - 1} more: see the details)" if len(notes) > 1 else ""
        self._status(f"Loading {dataset.path.name}: {notes[0]}{more}")
        if not self._can_ask():
            return
        box = QMessageBox(QMessageBox.Icon.Information, "Notes on the annotation file",
                          f"While loading <b>{dataset.path.name}</b>, {len(notes)} thing(s) were repaired or "
                          "set aside. Nothing was changed on disk yet; the next save writes the file as shown.",
                          QMessageBox.StandardButton.Ok, self._window)
        box.setInformativeText(notes[0] if len(notes) == 1 else f"{notes[0]}\n… {len(notes) - 1} more")
        box.setDetailedText("\n".join(notes))
        box.setModal(False)  # the window stays usable behind it
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.notes_box = box
        box.show()
