"""D / A under the image list's filter (found driving the real window): with the list filtered to Done, D and A
stepped through every image, so the image on show dropped out of the list. They now step through the images the
filter shows, say so when there is none, and Next To Do keeps its meaning. Keys go through the window's shortcuts."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from qt_fixtures import key

pytestmark = pytest.mark.gui


@pytest.fixture
def six(tmp_path, photos):
    from PIL import Image

    folder = tmp_path / "six"
    folder.mkdir()
    small = Image.fromarray(photos["coffee"]).resize((60, 40))
    for i in range(6):
        small.save(folder / f"img{i}.png")
    return folder


def _shown(qtbot, w, index):
    qtbot.waitUntil(lambda: w.session.index == index and w.session.loaded is not None, timeout=30_000)


def _focus(qtbot, w):
    from PySide6.QtWidgets import QApplication

    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5000)


def _selected_row(w) -> int:
    index = w.images.view.currentIndex()
    return w.images.proxy.mapToSource(index).row() if index.isValid() else -1


def _filter(w, state):
    w.images.filter.setCurrentIndex(w.images.filter.findData(state))


def _mark_done(qtbot, w, indexes):
    for i in indexes:
        w.session.go_to(i)
        _shown(qtbot, w, i)
        key(qtbot, w, Qt.Key.Key_C)


def test_d_and_a_step_through_the_filtered_images_and_say_when_none_is_left(qtbot, make_window, six):
    w = make_window(six)
    s = w.session
    _shown(qtbot, w, 0)
    _focus(qtbot, w)
    _mark_done(qtbot, w, [1, 3, 4])
    _filter(w, "done")
    assert w.images.proxy.rowCount() == 3

    s.go_to(1)
    _shown(qtbot, w, 1)
    key(qtbot, w, Qt.Key.Key_D)
    _shown(qtbot, w, 3)  # 2 is to do: passed over
    assert _selected_row(w) == 3  # the image on show is the list's selected row
    key(qtbot, w, Qt.Key.Key_D)
    _shown(qtbot, w, 4)
    key(qtbot, w, Qt.Key.Key_D)  # 5 is to do: no next done image
    assert s.index == 4 and _selected_row(w) == 4
    message = w.statusBar().currentMessage()
    assert "No image after this one" in message and "Done" in message, message
    key(qtbot, w, Qt.Key.Key_A)
    _shown(qtbot, w, 3)
    key(qtbot, w, Qt.Key.Key_A)
    _shown(qtbot, w, 1)
    key(qtbot, w, Qt.Key.Key_A)  # 0 is to do
    assert s.index == 1 and "No image before this one" in w.statusBar().currentMessage()

    # Next To Do keeps its meaning whatever the filter shows
    key(qtbot, w, Qt.Key.Key_D, Qt.KeyboardModifier.ShiftModifier)
    _shown(qtbot, w, 2)

    # the image on show is not under the filter (to do, filter Done): D goes to the next done one after it
    key(qtbot, w, Qt.Key.Key_D)
    _shown(qtbot, w, 3)

    # every image again with the filter on All; To Do steps over the done ones
    _filter(w, "")
    key(qtbot, w, Qt.Key.Key_D)
    _shown(qtbot, w, 4)
    key(qtbot, w, Qt.Key.Key_D)
    _shown(qtbot, w, 5)
    _filter(w, "todo")
    key(qtbot, w, Qt.Key.Key_A)
    _shown(qtbot, w, 2)
    assert _selected_row(w) == 2


def test_a_filter_set_before_a_folder_opens_still_applies_and_resume_is_unchanged(qtbot, make_window, six):
    w = make_window(six)
    s = w.session
    _shown(qtbot, w, 0)
    _focus(qtbot, w)
    _mark_done(qtbot, w, [2, 5])
    s.go_to(4)
    _shown(qtbot, w, 4)
    _filter(w, "done")
    w.close()

    w2 = make_window(six)  # resumes where the user was, whatever a filter would show
    _shown(qtbot, w2, 4)
    _focus(qtbot, w2)
    _filter(w2, "done")
    key(qtbot, w2, Qt.Key.Key_D)
    _shown(qtbot, w2, 5)
    key(qtbot, w2, Qt.Key.Key_A)
    _shown(qtbot, w2, 2)
    assert w2.images.counts()["done"] == 2
