"""Icons that keep their colours: a colour swatch or a state dot means one colour, selected or not.

Qt draws a selected list item's (or a highlighted menu entry's) icon in its
``Selected`` / ``Active`` mode, which the style makes by tinting the pixmap
with the highlight colour: the current category's swatch then showed a
colour no mask on the canvas has. Giving the same pixmap for every mode
keeps it as drawn.
"""

from __future__ import annotations

from PySide6.QtGui import QIcon, QImage, QPixmap


def exact_icon(image: QImage) -> QIcon:
    """A QIcon showing ``image`` unchanged in the normal, selected and active modes (disabled: Qt's greying)."""
    pixmap = QPixmap.fromImage(image)
    icon = QIcon()
    for mode in (QIcon.Mode.Normal, QIcon.Mode.Selected, QIcon.Mode.Active):
        icon.addPixmap(pixmap, mode)
    return icon
