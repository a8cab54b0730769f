"""A second window on a folder another window holds (read-only): found driving the real window under Xvfb.

``sam-annotator FOLDER --categories list.txt`` in a second window loaded the list into the read-only
document, whose autosave then failed at once: the user got a "Could not save" box over the
"Opened read-only" one, advising to "fix the problem and press Ctrl+S" (which can never work there).
"""

from __future__ import annotations

import json

import pytest
from qt_fixtures import FakePredictor, fake_info

pytestmark = pytest.mark.gui


def _second_window(make_window, image_folder, tmp_path):
    a = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache-a"))
    assert not a.session.dataset.read_only
    b = make_window(None, fake_info(FakePredictor(), tmp_path / "cache-b"))
    b.interactive = False
    b.file_dialogs.leave_unsaved = lambda action: True
    return a, b


def test_a_category_list_is_not_loaded_into_a_read_only_file(qtbot, make_window, image_folder, tmp_path):
    a, b = _second_window(make_window, image_folder, tmp_path)
    listing = tmp_path / "cats.txt"
    listing.write_text("".join(f"class_{i}\n" for i in range(1, 51)))
    failures, said = [], []
    b.session.saveFailed.connect(failures.append)
    b.session.statusMessage.connect(lambda text, ms: said.append(text))
    b.start(image_folder, categories=listing)  # as `sam-annotator FOLDER --categories cats.txt` does
    assert b.session.dataset.read_only
    names = {c.name for c in b.session.dataset.categories.values()}
    assert not names & {f"class_{i}" for i in range(1, 51)}
    assert not b.session.dataset.dirty and not b.session.edits.save_pending
    assert b.category_loading.last is None
    assert any("not loaded" in m and "read-only" in m for m in said), said
    assert failures == []
    # the first window's file is untouched, and that window can still load the list
    assert a.category_loading.load(listing)[0][:2] == ["class_1", "class_2"]


def test_a_failed_save_of_a_read_only_file_points_to_save_a_copy(qtbot, make_window, image_folder, tmp_path):
    a, b = _second_window(make_window, image_folder, tmp_path)
    assert b.open_folder(image_folder)
    failures = []
    b.session.saveFailed.connect(failures.append)
    b.session.add_category("kept in memory")
    assert not b.session.save()
    (message,) = failures
    assert "Save a Copy" in message
    assert "press Ctrl+S" not in message  # saving here can never work
    assert ".." not in message
    assert "kept" in message  # nothing is lost
    on_disk = json.loads(a.session.dataset.path.read_text()) if a.session.dataset.path.exists() else {"categories": []}
    assert "kept in memory" not in {c["name"] for c in on_disk["categories"]}


def test_file_save_a_copy_keeps_the_work_of_a_read_only_window(qtbot, make_window, image_folder, tmp_path,
                                                               monkeypatch):
    """The messages say "File → Save a Copy"; the File menu had no such entry (only the quit question offered it)."""
    from PySide6.QtWidgets import QFileDialog

    from annotator.data.document import Dataset

    a, b = _second_window(make_window, image_folder, tmp_path)
    assert b.open_folder(image_folder) and b.session.dataset.read_only
    action = b.actions_by_name["save_copy"]
    assert action.isEnabled() and action in b.menuBar().actions()[0].menu().actions()
    assert action.shortcut().toString() == "Ctrl+Shift+S"
    b.session.add_category("kept in memory")
    copy = tmp_path / "elsewhere" / "mine.json"
    copy.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(copy), "COCO JSON (*.json)"))
    action.trigger()
    assert "kept in memory" in {c.name for c in Dataset.open(copy).categories.values()}
    assert "Saved a copy" in b.statusBar().currentMessage()
    working = a.session.dataset.path
    assert not working.exists() or "kept in memory" not in working.read_text()


def test_the_read_only_messages_say_why_once(qtbot, make_window, image_folder, tmp_path, monkeypatch):
    """Found under Xvfb: "…/annotations.json is opened read-only: opened read-only: …/annotations.json is open in
    another window or program: process …", and "Read-only: opened read-only: …" in the status bar."""
    from PySide6.QtWidgets import QMessageBox

    a, b = _second_window(make_window, image_folder, tmp_path)
    b.interactive = True
    boxes, said, failures = [], [], []
    monkeypatch.setattr(QMessageBox, "information", lambda *args, **k: boxes.append(args[2]))
    monkeypatch.setattr(QMessageBox, "warning", lambda *args, **k: failures.append(args[2]))
    b.session.statusMessage.connect(lambda text, ms: said.append(text))
    b.session.saveFailed.connect(failures.append)
    assert b.open_folder(image_folder)
    b.session.add_category("x")
    b.session.save()
    b.session.mark_image("done")
    path = str(b.session.dataset.path)
    texts = boxes + said + failures
    assert boxes and any(t.startswith("Read-only: ") for t in said) and failures
    for text in texts:
        assert "opened read-only: " not in text, text
        assert text.count(path) <= 1, text
    assert "process" in boxes[0] and "This window opened it read-only" in boxes[0]
