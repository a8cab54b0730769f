"""The bar above the image when its picture changed under the same name: keep or delete the old annotations.

Shown while the image on show is flagged by
:class:`annotator.session.identity_review.IdentityReview` (its annotations
were made on another picture); hidden otherwise. Its two buttons are the
user's answers; the bar computes nothing.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMainWindow, QPushButton, QWidget

from annotator.ui.panels import REVIEW_MARK


class IdentityBar(QWidget):
    """Keep / Delete the annotations of a changed picture; inserted above the canvas of ``window``."""

    def __init__(self, window: QMainWindow) -> None:
        super().__init__(window)
        self.setObjectName("identityBar")
        self._window = window
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.keep_button = QPushButton("Keep Them", self)
        self.keep_button.setToolTip("The masks still fit the new picture: keep them (saved at once)")
        self.delete_button = QPushButton("Delete Them", self)
        self.delete_button.setToolTip("Delete the annotations made on the old picture (Ctrl+Z brings them back)")
        for b in (self.keep_button, self.delete_button):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.keep_button)
        layout.addWidget(self.delete_button)
        s = window.session
        self.keep_button.clicked.connect(lambda: s.identity.keep())
        self.delete_button.clicked.connect(lambda: s.identity.delete())
        s.annotationsChanged.connect(self.refresh)
        s.currentIndexChanged.connect(self.refresh)
        window.centralWidget().layout().insertWidget(0, self)
        self.hide()

    def refresh(self, *_: object) -> None:
        s = self._window.session
        change = s.identity.change_for(s.current_path)
        if change is None:
            self.hide()
            return
        self.label.setText(f"{REVIEW_MARK} {change.describe()}. Keep them on the new picture, or delete them?")
        self.show()
