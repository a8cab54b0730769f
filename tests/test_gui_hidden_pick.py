"""Ctrl+click picks nothing while View → Show Annotations (H) hides them all.

Found driving the real window: with every annotation hidden by H, a Ctrl+click
selected the (invisible) annotation under the cursor, with no outline drawn,
so Del, the eraser or R then changed something the user could not see. A
row hidden in the panel was already passed over; the global switch now is
too, and the status bar says why nothing was selected. Fake predictor.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from qt_fixtures import click_image, fake_info, key

pytestmark = pytest.mark.gui

CTRL = Qt.KeyboardModifier.ControlModifier


def test_ctrl_click_selects_nothing_while_annotations_are_hidden(qtbot, make_window, image_folder, fake_predictor,
                                                                 tmp_path):
    w = make_window(image_folder, fake_info(fake_predictor, tmp_path / "cache"))
    s = w.session
    qtbot.waitUntil(lambda: s.embedding is not None, timeout=30_000)
    click_image(qtbot, w, 200, 200)
    qtbot.waitUntil(lambda: s.result is not None and s.result.prompt is s.prompt, timeout=10_000)
    key(qtbot, w, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not s.accepting and len(s.dataset.annotations) == 1, timeout=10_000)
    (aid,) = s.dataset.annotations
    qtbot.waitUntil(lambda: len(w.canvas.overlays.annotation_items) == 1)

    key(qtbot, w, Qt.Key.Key_H)  # hide them all
    assert not w.actions_by_name["toggle_annotations"].isChecked()
    click_image(qtbot, w, 200, 200, modifier=CTRL)
    assert s.selected_annotation is None
    assert "hidden" in w.statusBar().currentMessage()
    key(qtbot, w, Qt.Key.Key_Delete)
    assert aid in s.dataset.annotations

    key(qtbot, w, Qt.Key.Key_H)  # shown again: picked as before
    click_image(qtbot, w, 200, 200, modifier=CTRL)
    assert s.selected_annotation == aid
