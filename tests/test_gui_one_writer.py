"""One writer per working file, in the window: a second window opens it read-only and cannot drop the first
one's work; leaving a folder whose changes could not be saved asks first (issue 15)."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from qt_fixtures import FakePredictor, click_image, fake_info, key

pytestmark = pytest.mark.gui


def _accept_at(qtbot, w, x, y):
    from PySide6.QtWidgets import QApplication

    s = w.session
    w.activateWindow()  # the keys go to the active window
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5000)
    n = len(s.dataset.annotations)
    click_image(qtbot, w, x, y)
    qtbot.waitUntil(lambda: s.result is not None and s.result.prompt is s.prompt, timeout=10_000)
    key(qtbot, w, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not s.accepting and len(s.dataset.annotations) == n + 1, timeout=10_000)


def _ids_on_disk(path):
    return sorted(a["id"] for a in json.loads(path.read_text())["annotations"])


def test_a_second_window_cannot_drop_the_first_ones_work(qtbot, make_window, image_folder, tmp_path):
    a = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache-a"))
    qtbot.waitUntil(lambda: a.session.embedding is not None, timeout=10_000)
    _accept_at(qtbot, a, 100, 100)
    working = a.session.dataset.path
    assert _ids_on_disk(working) == [1] and not a.session.dataset.read_only

    b = make_window(None, fake_info(FakePredictor(), tmp_path / "cache-b"))
    b.interactive = False  # report in the status bar, no dialog that waits for a click
    b.file_dialogs.leave_unsaved = lambda action: True  # at close: yes, drop what could not be saved
    assert b.open_folder(image_folder)
    assert b.session.dataset.read_only  # says who holds it
    assert "Read-only" in b.statusBar().currentMessage()
    qtbot.waitUntil(lambda: b.session.embedding is not None, timeout=10_000)
    _accept_at(qtbot, b, 300, 300)  # kept in b's memory, never written over a's file
    assert not b.session.save()
    assert b.session.dataset.dirty
    assert _ids_on_disk(working) == [1]

    _accept_at(qtbot, a, 200, 200)
    assert _ids_on_disk(working) == [1, 2]  # a's work, all of it
    b.close()
    assert _ids_on_disk(working) == [1, 2]


def test_opening_another_folder_with_unsaved_work_asks_first(qtbot, make_window, image_folder, tmp_path, monkeypatch):
    w = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache"))
    w.interactive = False
    qtbot.waitUntil(lambda: w.session.embedding is not None, timeout=10_000)
    s = w.session
    monkeypatch.setattr(type(s.dataset), "save", lambda self, *a, **k: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    _accept_at(qtbot, w, 100, 100)
    assert s.dataset.dirty
    other = tmp_path / "other"
    other.mkdir()
    (image_folder / "01_astronaut.jpg").rename(other / "01_astronaut.jpg")
    asked = []
    w.file_dialogs.leave_unsaved = lambda action: asked.append(action) or False  # the user cancels
    assert not w.open_folder(other)
    assert asked == ["Open another folder"]
    assert s.folder == image_folder and len(s.dataset.annotations) == 1  # nothing lost, nothing switched
    w.file_dialogs.leave_unsaved = lambda action: asked.append(action) or True  # now: discard
    assert w.open_folder(other)
    assert s.folder == other
    monkeypatch.undo()


def test_reopening_the_same_folder_keeps_it_writable(qtbot, make_window, image_folder, tmp_path):
    w = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache"))
    assert not w.session.dataset.read_only
    assert w.open_folder(image_folder)  # File > Open Folder on the folder already open
    assert not w.session.dataset.read_only
