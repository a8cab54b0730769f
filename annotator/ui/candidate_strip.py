"""The candidate strip: SAM's three candidates side by side, best first.

Each entry shows a picture (the candidate over a crop of the image, the same
crop for all three; where a candidate differs from #1 is tinted strongly, what
it leaves out of #1 striped: :func:`annotator.render.thumbnails`), its key
(1, 2, 3: also its rank), predicted IoU and area. The pictures are as large as
the strip's width lets the three entries be, text included (:meth:`CandidateStrip.fit`):
:data:`THUMB` beside the text in a wide window; in a narrow one (the smallest the
docks allow is about 880 px, leaving each entry about 120 px) smaller, and under
the text when that leaves the larger picture. Clicking one picks it; the keys (Tab,
Shift+Tab, 1, 2, 3) go through the main window's actions to the session,
which then calls :meth:`CandidateStrip.set_selected`.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QButtonGroup, QHBoxLayout, QLabel, QSizePolicy, QToolButton, QWidget

from annotator.render import THUMB_SIDE
from annotator.session.rows import CandidateRow, format_area, format_iou

SLOTS = 3
THUMB = THUMB_SIDE
#: The smallest picture the strip shrinks to (px a side); below it the text is what gets clipped.
MIN_THUMB = 48
_STYLES = (Qt.ToolButtonStyle.ToolButtonTextBesideIcon, Qt.ToolButtonStyle.ToolButtonTextUnderIcon)


class CandidateStrip(QWidget):
    """Three selectable entries, plus a hint when there is nothing to show."""

    candidateChosen = Signal(int)  # index 0..2

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("candidateStrip")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.setSpacing(6)
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self.buttons: List[QToolButton] = []
        for i in range(SLOTS):
            b = QToolButton(self)
            b.setObjectName(f"candidate{i + 1}")
            b.setCheckable(True)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            b.setIconSize(QSize(THUMB, THUMB))
            # an explicit minimum below the text's width: showing candidates in a narrow window must not widen
            # the window (and rescale the canvas under the user); the picture and text are clipped instead
            b.setMinimumWidth(96)
            b.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
            font = b.font()
            font.setPointSizeF(font.pointSizeF() * 1.1)
            b.setFont(font)
            b.setToolTip(f"Candidate {i + 1} (key {i + 1}; Tab cycles)")
            self.group.addButton(b, i)
            layout.addWidget(b)
            self.buttons.append(b)
        self.hint = QLabel(self)
        self.hint.setObjectName("stripHint")
        self.hint.setWordWrap(True)
        self.hint.setAlignment(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.hint, 1)
        self.group.idClicked.connect(self.candidateChosen)
        # One height whether it shows candidates or the hint: the canvas above must not jump.
        self.setFixedHeight(THUMB + 18)
        self.set_candidates(())

    def set_candidates(self, rows: Sequence[CandidateRow], selected: int = 0, hint: str = "") -> None:
        """Show ``rows`` (at most three) with ``selected`` checked; no rows shows ``hint`` instead."""
        for i, b in enumerate(self.buttons):
            if i < len(rows):
                r = rows[i]
                b.setText(f"Key {r.rank}\n{format_iou(r.score)}\n{format_area(r.area)}")  # the raw value on hover
                b.setToolTip(f"Candidate {r.rank} (key {r.rank}; Tab cycles): SAM's predicted IoU {r.score:.4f}, "
                             f"{format_area(r.area)}")
                b.setIcon(QIcon(QPixmap.fromImage(r.thumb)) if r.thumb is not None else QIcon())
                b.setEnabled(True)
                b.show()
            else:
                b.setText("")
                b.setIcon(QIcon())
                b.hide()
        self.hint.setText(hint)
        self.hint.setVisible(not rows)
        self.set_selected(selected if rows else -1)
        self.fit()

    def fit(self) -> None:
        """Give the entries the largest picture (and the text's place, beside or under it) with which each,
        text included, fits its share of the strip: the three share the width equally, the hint being hidden."""
        shown = [b for b in self.buttons if not b.isHidden()]
        if not shown:
            return
        m, spacing = self.layout().contentsMargins(), self.layout().spacing()
        width = (self.width() - m.left() - m.right() - spacing * (SLOTS - 1)) // SLOTS
        height = self.height() - m.top() - m.bottom()
        best = None
        for style in _STYLES:
            side = self._largest(shown, style, width, height)
            if side is not None and (best is None or side > best[0]):
                best = (side, style)
        side, style = best if best is not None else (MIN_THUMB, _STYLES[1])
        for b in self.buttons:
            if b.iconSize().width() != side or b.toolButtonStyle() != style:
                b.setToolButtonStyle(style)
                b.setIconSize(QSize(side, side))

    @staticmethod
    def _largest(shown: List[QToolButton], style, width: int, height: int) -> Optional[int]:
        """The largest side (:data:`MIN_THUMB`..:data:`THUMB`, by 4 px) with which every shown entry fits
        ``width`` x ``height`` in ``style``, by its own size hint; None if none does."""
        before = [(b.toolButtonStyle(), b.iconSize()) for b in shown]
        try:
            for side in range(THUMB, MIN_THUMB - 1, -4):
                fits = True
                for b in shown:
                    b.setToolButtonStyle(style)
                    b.setIconSize(QSize(side, side))
                    hint = b.sizeHint()
                    fits = fits and hint.width() <= width and hint.height() <= height
                if fits:
                    return side
            return None
        finally:
            for b, (old_style, old_size) in zip(shown, before):
                b.setToolButtonStyle(old_style)
                b.setIconSize(old_size)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self.fit()

    def set_selected(self, index: int) -> None:
        if 0 <= index < SLOTS and not self.buttons[index].isHidden():
            self.buttons[index].setChecked(True)
        else:
            self.group.setExclusive(False)
            for b in self.buttons:
                b.setChecked(False)
            self.group.setExclusive(True)

    def selected(self) -> int:
        return self.group.checkedId()
