"""Preferences → Cache folder: a value that cannot be a folder is refused at OK, with the reason.

Found driving the real window under Xvfb: typing ``/etc/passwd`` (a file) was saved without a word
("Preferences saved"); the next start could not load any model ("Not a directory:
'/etc/passwd/checkpoints'"), and its message named --cache-dir and SAM_ANNOTATOR_CACHE, not the
preference that caused it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog

from annotator.ui.preferences import PreferencesDialog, cache_folder_problem
from annotator.ui.settings import Settings

pytestmark = pytest.mark.gui

LEFT = Qt.MouseButton.LeftButton


def _dialog(qtbot, settings):
    dialog = PreferencesDialog(settings)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def _type_folder(qtbot, dialog, text):
    dialog.tabs.setCurrentWidget(dialog.general_tab)
    dialog.cache_dir_edit.clear()
    qtbot.keyClicks(dialog.cache_dir_edit, text)


def test_a_file_as_cache_folder_is_refused_and_nothing_is_saved(qtbot, tmp_path):
    ini = tmp_path / "prefs.ini"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    settings = Settings(ini)
    dialog = _dialog(qtbot, settings)
    _type_folder(qtbot, dialog, str(a_file))
    qtbot.mouseClick(dialog.ok_button, LEFT)
    assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted
    assert dialog.tabs.currentWidget() is dialog.cache_tab  # where the value is
    text = dialog.conflict_label.text()
    assert dialog.conflict_label.isVisible() and text.startswith("Not saved:") and "not a folder" in text, text
    assert Settings(ini).cache_dir == ""

    # a folder inside a file cannot be made either
    _type_folder(qtbot, dialog, str(a_file / "cache"))
    qtbot.mouseClick(dialog.ok_button, LEFT)
    assert dialog.isVisible() and Settings(ini).cache_dir == ""

    # a new folder under a writable one is fine (made on the next start), as is the default (empty)
    good = tmp_path / "new" / "cache"
    _type_folder(qtbot, dialog, str(good))
    qtbot.mouseClick(dialog.ok_button, LEFT)
    assert dialog.result() == QDialog.DialogCode.Accepted and dialog.conflict_label.isHidden()
    assert Settings(ini).cache_dir == str(good)


def test_a_relative_cache_folder_is_refused(qtbot, tmp_path):
    ini = tmp_path / "prefs.ini"
    dialog = _dialog(qtbot, Settings(ini))
    _type_folder(qtbot, dialog, "cache")  # relative to whatever folder the next start runs in
    qtbot.mouseClick(dialog.ok_button, LEFT)
    assert dialog.isVisible() and "full path" in dialog.conflict_label.text()
    assert Settings(ini).cache_dir == ""


def test_cache_folder_problem(tmp_path):
    assert cache_folder_problem("") is None  # the default
    assert cache_folder_problem(str(tmp_path)) is None
    assert cache_folder_problem(str(tmp_path / "a" / "b")) is None
    assert cache_folder_problem("~/x") is None  # a home folder spelling is fine
    (tmp_path / "f").write_text("")
    assert "not a folder" in cache_folder_problem(str(tmp_path / "f"))
    assert "not a folder" in cache_folder_problem(str(tmp_path / "f" / "sub"))
    assert "full path" in cache_folder_problem("rel/dir")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_a_write_protected_cache_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert "cannot be written" in cache_folder_problem(str(locked / "cache"))
    finally:
        locked.chmod(0o700)
    assert Path(locked).is_dir()


def test_a_folder_under_one_that_cannot_be_entered_is_refused_with_a_message_not_an_error(tmp_path, monkeypatch):
    """Found in review: pathlib's exists() raises PermissionError under a folder that cannot be searched
    (a non-root user choosing /root/x); the check must give its sentence, not the error dialog."""
    import os

    from annotator.ui.preferences import cache_folder_problem

    locked = tmp_path / "locked"
    locked.mkdir()
    real_stat = os.stat

    def stat(p, *args, **kwargs):
        if str(p).startswith(str(locked) + os.sep):
            raise PermissionError(13, "Permission denied", str(p))
        return real_stat(p, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "lstat", stat)
    monkeypatch.setattr(os, "access", lambda p, mode: not str(p).startswith(str(locked)))
    why = cache_folder_problem(str(locked / "sub" / "cache"))
    assert why is not None and "cannot be written" in why and str(locked) in why
