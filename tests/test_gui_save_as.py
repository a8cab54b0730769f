"""File → Save As… (Ctrl+Alt+S): write the annotations to another file and work on it from now on.

The data layer could do it (``Dataset.save(path)`` moves the document, its root and its lock) but the window had
no action for it: Save a Copy left the window on the old file. Refusals are Save a Copy's: another window's file
is never written over, and nothing changes after a refusal.
"""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox
from qt_fixtures import FakePredictor, fake_info, key

from annotator.data.document import Dataset

pytestmark = pytest.mark.gui


def _shown(qtbot, w, index):
    qtbot.waitUntil(lambda: w.session.index == index and w.session.loaded is not None, timeout=30_000)


def _focus(qtbot, w):
    from PySide6.QtWidgets import QApplication

    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5000)


def _answer(monkeypatch, target):
    asked, warned = [], []
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *a, **k: (asked.append(a[2]), (str(target), "COCO JSON (*.json)"))[1])
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warned.append(a[2]))
    return asked, warned


def _names(path):
    return {img["file_name"]: img.get("state") for img in json.loads(path.read_text())["images"]}


def test_save_as_moves_the_window_to_the_new_file(qtbot, make_window, image_folder, tmp_path, monkeypatch):
    w = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache"))
    s = w.session
    _shown(qtbot, w, 0)
    _focus(qtbot, w)
    old = s.dataset.path
    action = w.actions_by_name["save_as"]
    assert action in w.menuBar().actions()[0].menu().actions()
    assert action.shortcut().toString() == "Ctrl+Alt+S"
    key(qtbot, w, Qt.Key.Key_C)  # done: saved into the old file
    assert _names(old) == {"01_astronaut.jpg": "done"}
    s.add_category("car")

    new = tmp_path / "elsewhere" / "work.json"
    new.parent.mkdir()
    asked, warned = _answer(monkeypatch, new)
    key(qtbot, w, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier)
    assert asked and not warned, warned
    assert s.dataset.path == new and not s.dirty
    assert w.windowTitle().startswith("work.json — ")
    assert "Saved as" in w.statusBar().currentMessage() and str(new) in w.statusBar().currentMessage()
    assert _names(new) == {"../images/01_astronaut.jpg": "done"}  # relative to the new file's folder
    assert "car" in {c.name for c in Dataset.open(new).categories.values()}
    before = old.read_text()
    assert "car" not in before  # the old file stays as it was at its last save

    # later work goes into the new file only
    s.go_to(2)
    _shown(qtbot, w, 2)
    key(qtbot, w, Qt.Key.Key_S)  # skipped
    assert _names(new)["../images/03_coffee.jpg"] == "skipped"
    assert old.read_text() == before

    # the lock moved with the file: another window gets the new file read-only, the old one writable
    held, free = Dataset.open(new, image_dir=image_folder, lock=True), Dataset.open(old, lock=True)
    try:
        assert held.read_only and not free.read_only
    finally:
        held.close()
        free.close()

    # reopening the new file resumes where the user was in it
    w.close()
    w2 = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache"), output=new)
    _shown(qtbot, w2, 2)


def test_save_as_onto_another_windows_file_is_refused_and_nothing_changes(qtbot, make_window, image_folder, tmp_path,
                                                                          monkeypatch):
    a = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache-a"))
    a.session.add_category("theirs")
    assert a.session.save()
    theirs = a.session.dataset.path
    before = theirs.read_text()

    mine = tmp_path / "mine.json"
    b = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache-b"), output=mine)
    b.session.add_category("mine")
    _asked, warned = _answer(monkeypatch, theirs)
    assert not b.file_dialogs.save_as()
    assert warned and "another window" in warned[0] and str(mine) in warned[0], warned
    assert b.session.dataset.path == mine and b.windowTitle().endswith("sam-annotator")
    assert "mine.json" in b.windowTitle()
    assert theirs.read_text() == before
    assert "mine" in {c.name for c in b.session.dataset.categories.values()}  # the work is still in the window


def test_a_read_only_window_saved_as_another_file_can_save_again(qtbot, make_window, image_folder, tmp_path,
                                                                   monkeypatch):
    a = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache-a"))
    b = make_window(None, fake_info(FakePredictor(), tmp_path / "cache-b"))
    b.interactive = False
    assert b.open_folder(image_folder) and b.session.dataset.read_only
    _shown(qtbot, b, 0)
    b.session.add_category("kept")
    new = tmp_path / "mine.json"
    _asked, warned = _answer(monkeypatch, new)
    assert b.file_dialogs.save_as() and not warned
    assert b.session.dataset.path == new and not b.session.dataset.read_only
    assert "read-only" not in b.statusBar().currentMessage()
    b.session.add_category("later")
    assert b.session.save()
    assert {"kept", "later"} <= {c.name for c in Dataset.open(new).categories.values()}
    assert not a.session.dataset.read_only


@pytest.mark.parametrize("action", ["save_as", "save_copy"])
@pytest.mark.parametrize("name", ["01_astronaut.jpg", "annotations.PNG"])
def test_save_as_and_save_a_copy_never_write_over_or_as_an_image(qtbot, make_window, image_folder, tmp_path,
                                                                 monkeypatch, action, name):
    """Typing a picture's name in the file chooser replaced the photo with JSON (or wrote a new "image" the next
    open listed as unusable): both refuse it with a message, and nothing changes."""
    from annotator.data.imageio import list_images

    w = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache"))
    w.session.add_category("car")
    before = {p.name: p.read_bytes() for p in image_folder.iterdir() if p.is_file()}
    working = w.session.dataset.path
    _asked, warned = _answer(monkeypatch, image_folder / name)
    assert not getattr(w.file_dialogs, action)()
    assert warned and "image file name" in warned[0] and ".json" in warned[0], warned
    assert {p.name: p.read_bytes() for p in image_folder.iterdir() if p.is_file()} == before
    assert [p.name for p in list_images(image_folder)] == ["01_astronaut.jpg", "02_chelsea.png", "03_coffee.jpg"]
    assert w.session.dataset.path == working
