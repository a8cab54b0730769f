"""A selected row's colour swatch shows the category's own colour, not one tinted by the selection.

Found on screenshots of the real window: Qt draws a selected item's icon in
its Selected mode, which the style tints with the highlight colour, so the
current category (always selected in the Categories panel) and the selected
annotation showed a colour no mask on the canvas has (object's red
(230, 25, 75) came out as (177, 53, 111)). Window without a model.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import QListWidget

pytestmark = pytest.mark.gui


def _row_pixels(lst: QListWidget, row: int) -> set:
    """The RGB colours drawn in list row ``row`` (grabbed from the widget as shown)."""
    rect = lst.visualItemRect(lst.item(row))
    from PySide6.QtGui import QImage

    img = lst.viewport().grab(rect).toImage().convertToFormat(QImage.Format.Format_RGB32)
    a = np.frombuffer(img.constBits(), np.uint8, img.sizeInBytes()).reshape(img.height(), img.bytesPerLine() // 4, 4)
    return {tuple(int(v) for v in px[2::-1]) for px in a[:, : img.width()].reshape(-1, 4)}


def test_the_selected_rows_swatch_is_the_category_colour(qtbot, make_window, image_folder):
    w = make_window(image_folder)
    s = w.session
    s.add_category("helmet")
    lst = w.categories.list
    qtbot.waitUntil(lambda: lst.count() == 2)
    colors = [tuple(s.dataset.categories[lst.item(r).data(0x0100)].color) for r in range(2)]
    for row in range(2):
        lst.setCurrentRow(row)
        assert lst.item(row).isSelected() and not lst.item(1 - row).isSelected()
        assert colors[1 - row] in _row_pixels(lst, 1 - row)  # unselected: its colour (the reader works)
        assert colors[row] in _row_pixels(lst, row)  # selected: its colour too, not a tint of it
