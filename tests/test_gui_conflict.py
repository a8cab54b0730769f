"""Conflict on save, in the window: another program writes the working file between two accepts (issue 15).

The save never overwrites it: this window's version goes beside it, the user
is told both paths once and chooses Keep Both (default), Overwrite with Mine
(theirs copied aside first) or Reload Theirs (after a confirmation).
"""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from qt_fixtures import FakePredictor, click_image, fake_info, key

from annotator.ui.safety_dialogs import KEEP_BOTH, OVERWRITE, RELOAD

pytestmark = pytest.mark.gui


def _accept_at(qtbot, w, x, y):
    from PySide6.QtWidgets import QApplication

    s = w.session
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5000)
    n = len(s.dataset.annotations)
    click_image(qtbot, w, x, y)
    qtbot.waitUntil(lambda: s.result is not None and s.result.prompt is s.prompt, timeout=10_000)
    key(qtbot, w, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not s.accepting and len(s.dataset.annotations) == n + 1, timeout=10_000)


def _ids(path):
    return sorted(a["id"] for a in json.loads(path.read_text())["annotations"])


def _external_edit(path):
    """Another program (a script, a second tool) rewrites the file: drops every annotation, adds a category."""
    coco = json.loads(path.read_text())
    coco["annotations"] = []
    coco["categories"].append({"id": 99, "name": "added-elsewhere", "supercategory": ""})
    path.write_text(json.dumps(coco))  # in place, as most programs do
    return path.read_bytes()


@pytest.fixture
def window(qtbot, make_window, image_folder, tmp_path):
    w = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache"))
    qtbot.waitUntil(lambda: w.session.embedding is not None, timeout=10_000)
    w.asked = []
    w.safety.ask = lambda exc: w.asked.append(exc) or w.answer  # the user's click
    w.answer = KEEP_BOTH
    return w


def test_keep_both_then_overwrite_with_mine(qtbot, window):
    w, s = window, window.session
    _accept_at(qtbot, w, 100, 100)
    working = s.dataset.path
    assert _ids(working) == [1]
    theirs = _external_edit(working)

    _accept_at(qtbot, w, 200, 200)
    qtbot.waitUntil(lambda: len(w.asked) == 1, timeout=5000)
    exc = w.asked[0]
    assert exc.path == working and exc.ours is not None and exc.ours.parent == working.parent
    assert working.read_bytes() == theirs  # never overwritten
    assert _ids(exc.ours) == [1, 2]  # ours, all of it, beside it
    message = w.statusBar().currentMessage()
    assert str(working) in message and str(exc.ours) in message
    assert s.dirty and w.windowTitle().startswith("*")

    _accept_at(qtbot, w, 300, 300)  # the same conflict: no second question, the copy follows
    qtbot.waitUntil(lambda: _ids(exc.ours) == [1, 2, 3], timeout=5000)
    assert len(w.asked) == 1 and working.read_bytes() == theirs

    w.answer = OVERWRITE
    w.actions_by_name["save"].trigger()  # Ctrl+S asks again
    qtbot.waitUntil(lambda: len(w.asked) == 2, timeout=5000)
    qtbot.waitUntil(lambda: not s.dirty, timeout=5000)
    assert _ids(working) == [1, 2, 3]
    aside = [p for p in working.parent.iterdir() if ".theirs-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes() == theirs  # theirs was copied aside first
    assert aside[0].name in w.statusBar().currentMessage()
    assert not w.windowTitle().startswith("*")

    _accept_at(qtbot, w, 400, 400)  # back to normal: saved in place, no question
    assert _ids(working) == [1, 2, 3, 4] and not s.dirty and len(w.asked) == 2


def test_reload_theirs_only_after_a_confirm(qtbot, window):
    w, s = window, window.session
    _accept_at(qtbot, w, 100, 100)
    working = s.dataset.path
    theirs = _external_edit(working)
    confirms = []
    w.safety.confirm_reload = lambda ours: confirms.append(ours) or False  # the user cancels
    w.answer = RELOAD
    _accept_at(qtbot, w, 200, 200)
    qtbot.waitUntil(lambda: len(confirms) == 1, timeout=5000)
    ours = w.asked[0].ours
    assert confirms == [ours]
    assert sorted(s.dataset.annotations) == [1, 2] and s.dirty  # cancelled: nothing changed
    assert working.read_bytes() == theirs

    w.safety.confirm_reload = lambda ours: confirms.append(ours) or True
    w.actions_by_name["save"].trigger()
    qtbot.waitUntil(lambda: len(confirms) == 2, timeout=5000)
    qtbot.waitUntil(lambda: "added-elsewhere" in [c.name for c in s.dataset.categories.values()], timeout=5000)
    assert s.dataset.annotations == {} and not s.dirty and not s.dataset.read_only
    assert _ids(ours) == [1, 2]  # ours is still on disk, in its copy
    assert str(ours) in w.statusBar().currentMessage()
    _accept_at(qtbot, w, 300, 300)  # the reloaded file is ours to write again
    assert len(_ids(working)) == 1


def test_the_question_names_both_files_and_defaults_to_keep_both(qtbot, window, tmp_path):
    from annotator.data.workfile import ConflictError

    mine = tmp_path / "images" / "annotations.conflict-20260101-000000.json"
    box = window.safety.conflict_box(ConflictError(window.session.dataset.path, mine))
    text = box.text() + box.informativeText()
    assert str(window.session.dataset.path) in text and str(mine) in text
    assert box.defaultButton().objectName() == KEEP_BOTH and box.escapeButton() is box.defaultButton()
    assert {b.objectName() for b in box.buttons()} - {""} == {KEEP_BOTH, OVERWRITE, RELOAD}  # (and Show Details)
    box.deleteLater()


def test_a_conflict_report_that_arrives_after_it_was_resolved_asks_nothing(qtbot, window):
    from annotator.data.workfile import ConflictError

    w, s = window, window.session
    _accept_at(qtbot, w, 100, 100)
    assert not s.dirty
    stale = ConflictError(s.dataset.path, s.dataset.path.with_name("annotations.conflict-x.json"))
    w.safety.save_conflict(stale)  # (queued reports of a conflict a later save or a reload ended)
    assert w.asked == []


def test_leaving_during_a_conflict_names_the_copy_that_holds_this_windows_version(qtbot, window, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    w, s = window, window.session
    _accept_at(qtbot, w, 100, 100)
    _external_edit(s.dataset.path)
    _accept_at(qtbot, w, 200, 200)
    qtbot.waitUntil(lambda: len(w.asked) == 1, timeout=5000)
    copy = w.asked[0].ours
    texts = []
    monkeypatch.setattr(QMessageBox, "question",
                        staticmethod(lambda *a, **k: texts.append(a[2]) or QMessageBox.StandardButton.Cancel))
    assert w.file_dialogs.leave_unsaved("Quit") is False  # cancelled: the window stays
    assert str(copy) in texts[0] and "Another program changed" in texts[0]
    w.file_dialogs.leave_unsaved = lambda action: True  # at close: discard (this window's version is in the copy)
