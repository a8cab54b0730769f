"""Ctrl+Z / Ctrl+Shift+Z say what they did, and on which image when it is not the one on show.

Found driving the real window: undo is global for document steps (an accept,
a deletion, a category), so Ctrl+Z pressed on one image silently removed
annotations of images the user could not see (held down, it emptied the
whole dataset with nothing on screen changing). The window's status bar now
names each step undone or redone, with the image it changed. The real
MainWindow and Session, with the fake predictor (the masks are not the point).
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from qt_fixtures import click_image, fake_info, key

pytestmark = pytest.mark.gui

CTRL, SHIFT = Qt.KeyboardModifier.ControlModifier, Qt.KeyboardModifier.ShiftModifier


def _accept_one(qtbot, w, x=200, y=200):
    s = w.session
    qtbot.waitUntil(lambda: s.embedding is not None, timeout=30_000)
    n = len(s.dataset.annotations)
    click_image(qtbot, w, x, y)
    qtbot.waitUntil(lambda: s.result is not None and s.result.prompt is s.prompt, timeout=10_000)
    key(qtbot, w, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not s.accepting and len(s.dataset.annotations) == n + 1, timeout=10_000)


def test_undo_and_redo_name_the_step_and_the_image_it_changed(qtbot, make_window, image_folder, fake_predictor,
                                                              tmp_path):
    w = make_window(image_folder, fake_info(fake_predictor, tmp_path / "cache"))
    s = w.session
    bar = w.statusBar()
    _accept_one(qtbot, w)
    s.next_image()
    qtbot.waitUntil(lambda: s.current_path is not None and s.current_path.name == "02_chelsea.png")

    key(qtbot, w, Qt.Key.Key_Z, CTRL)  # undoes the accept on the first image, which is not on show
    assert len(s.dataset.annotations) == 0
    msg = bar.currentMessage()
    assert "Undid" in msg and "Accept object" in msg and "01_astronaut.jpg" in msg, msg

    key(qtbot, w, Qt.Key.Key_Z, CTRL | SHIFT)
    assert len(s.dataset.annotations) == 1
    msg = bar.currentMessage()
    assert "Redid" in msg and "Accept object" in msg and "01_astronaut.jpg" in msg, msg

    # a step on the image on show: named, without an image
    _accept_one(qtbot, w)
    key(qtbot, w, Qt.Key.Key_Z, CTRL)
    msg = bar.currentMessage()
    assert "Undid" in msg and "Accept object" in msg and "02_chelsea.png" not in msg, msg

    key(qtbot, w, Qt.Key.Key_Z, CTRL)  # the click the accept was made from (it came back with the undo)
    assert s.prompt.empty and "Undid" in bar.currentMessage() and "02_chelsea.png" not in bar.currentMessage()

    key(qtbot, w, Qt.Key.Key_Z, CTRL)  # the first image's accept again
    assert "01_astronaut.jpg" in bar.currentMessage()
    # nothing left to undo on this image or the document (the first image's click is not on show): the action
    # is off, and Session.undo, called anyway, says so
    assert not w.actions_by_name["undo"].isEnabled()
    s.undo()
    assert len(s.dataset.annotations) == 0 and bar.currentMessage() == "Nothing to undo"


def test_a_deletion_and_a_category_change_name_their_image_a_new_category_names_none(
    qtbot, make_window, image_folder, fake_predictor, tmp_path
):
    w = make_window(image_folder, fake_info(fake_predictor, tmp_path / "cache"))
    s = w.session
    bar = w.statusBar()
    _accept_one(qtbot, w)
    (aid,) = s.dataset.annotations
    s.add_category("cat")
    cat = next(c.id for c in s.dataset.categories.values() if c.name == "cat")
    s.set_annotation_category(aid, cat)
    s.delete_annotation(aid)
    s.next_image()
    qtbot.waitUntil(lambda: s.current_path is not None and s.current_path.name == "02_chelsea.png")

    key(qtbot, w, Qt.Key.Key_Z, CTRL)
    assert aid in s.dataset.annotations
    assert bar.currentMessage() == f"Undid: Delete annotation {aid} (on 01_astronaut.jpg)"
    key(qtbot, w, Qt.Key.Key_Z, CTRL)
    assert bar.currentMessage() == f"Undid: Change category of annotation {aid} (on 01_astronaut.jpg)"
    key(qtbot, w, Qt.Key.Key_Z, CTRL)
    assert bar.currentMessage() == "Undid: Add category cat"  # the document's, no image


def test_delete_says_what_it_deleted(qtbot, make_window, image_folder, fake_predictor, tmp_path):
    """Del on the selected annotation removed it with no word in the status bar (an accept says what it added)."""
    w = make_window(image_folder, fake_info(fake_predictor, tmp_path / "cache"))
    s = w.session
    _accept_one(qtbot, w)
    (aid,) = s.dataset.annotations
    s.select_annotation(aid)
    key(qtbot, w, Qt.Key.Key_Delete)
    assert aid not in s.dataset.annotations
    assert w.statusBar().currentMessage().startswith(f"Deleted object #{aid}")


def test_undo_and_redo_are_enabled_and_named_after_the_step_they_would_do(qtbot, make_window, image_folder,
                                                                         fake_predictor, tmp_path):
    """A click's prompt step belongs to its image: after moving on, Ctrl+Z skips it. The Undo action was still
    enabled and named after it ("Undo Add point") when nothing else was left to undo, or when Ctrl+Z would
    undo an accept further down."""
    w = make_window(image_folder, fake_info(fake_predictor, tmp_path / "cache"))
    s = w.session
    undo, redo = w.actions_by_name["undo"], w.actions_by_name["redo"]
    qtbot.waitUntil(lambda: s.embedding is not None, timeout=30_000)
    click_image(qtbot, w, 200, 200)
    qtbot.waitUntil(lambda: s.result is not None and s.result.prompt is s.prompt, timeout=10_000)
    assert undo.isEnabled() and undo.text() != "&Undo"
    s.next_image()
    assert not undo.isEnabled() and undo.text() == "&Undo"  # only the first image's click is left: skipped
    s.previous_image()
    qtbot.waitUntil(lambda: s.embedding is not None, timeout=30_000)
    assert not undo.isEnabled()  # the click went with the image (its prompt was cleared)

    _accept_one(qtbot, w)
    click_image(qtbot, w, 100, 100)  # a new click after the accept
    qtbot.waitUntil(lambda: s.result is not None and s.result.prompt is s.prompt, timeout=10_000)
    s.next_image()
    assert undo.isEnabled() and undo.text() == "&Undo Accept object"  # what Ctrl+Z does here
    key(qtbot, w, Qt.Key.Key_Z, CTRL)
    assert len(s.dataset.annotations) == 0
    assert redo.isEnabled() and redo.text() == "&Redo Accept object" and not undo.isEnabled()


def test_a_step_that_names_its_image_is_not_named_twice(qtbot, make_window, image_folder, fake_predictor, tmp_path):
    w = make_window(image_folder, fake_info(fake_predictor, tmp_path / "cache"))
    s = w.session
    key(qtbot, w, Qt.Key.Key_C)  # mark the first image done
    s.next_image()
    key(qtbot, w, Qt.Key.Key_Z, CTRL)
    assert w.statusBar().currentMessage() == "Undid: Mark 01_astronaut.jpg done"
