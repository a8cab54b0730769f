"""Small widgets for long jobs and the proposal review.

* :class:`TaskProgress`: a status-bar group (text, progress bar, Cancel) for
  one background job; hidden while the job is not running. Non-modal: the
  user keeps working while it runs.
* :class:`ReviewBar`: shown in place of the candidate strip while
  segment-everything proposals are reviewed: counts and the Accept Selected,
  Accept All and Reject All buttons.
"""

from __future__ import annotations

import time
from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QToolButton, QWidget


class TaskProgress(QWidget):
    """``start()``, ``set_progress(done, total, text)`` (``total`` 0: busy, no percentage), ``finish()``.

    The text shows the time since :meth:`start` (ticking every half second,
    also between progress reports); ``cancelRequested`` is emitted by the
    Cancel button.
    """

    cancelRequested = Signal()

    def __init__(self, name: str, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.label = QLabel(self)
        self.label.setObjectName(f"{name}Label")
        self.bar = QProgressBar(self)
        self.bar.setObjectName(f"{name}Bar")
        self.bar.setFixedWidth(140)
        self.bar.setMaximumHeight(14)
        self.bar.setTextVisible(False)
        self.cancel_button = QToolButton(self)
        self.cancel_button.setObjectName(f"{name}Cancel")
        self.cancel_button.setText("Cancel")
        self.cancel_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.cancel_button.clicked.connect(self.cancelRequested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 4, 0)
        layout.setSpacing(6)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel_button)
        self._t0 = 0.0
        self._text = ""
        self._count = ""
        from annotator.workers.base import make_timer

        self._timer = make_timer(self, 500)
        self._timer.timeout.connect(self._show)
        self.hide()

    def start(self, text: str = "") -> None:
        self._t0 = time.perf_counter()
        self.set_progress(0, 0, text)
        self._timer.start()
        self.show()

    def set_progress(self, done: int, total: int, text: str = "") -> None:
        if total > 0:
            self.bar.setRange(0, int(total))
            self.bar.setValue(min(int(done), int(total)))
        else:
            self.bar.setRange(0, 0)  # busy
        self._text = text or self._text
        self._count = f" {done}/{total}" if total > 0 else ""
        self._show()

    def _show(self) -> None:
        elapsed = time.perf_counter() - self._t0 if self._t0 else 0.0
        self.label.setText(f"{self._text}{self._count} ({elapsed:.0f} s)")

    def finish(self) -> None:
        """Hide (and stop the clock); safe to call when not running."""
        self._timer.stop()
        self._t0 = 0.0
        self.hide()


class ReviewBar(QWidget):
    """What the user can do with the proposals under review."""

    acceptSelected = Signal()
    acceptAll = Signal()
    rejectAll = Signal()

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("reviewBar")
        self.label = QLabel(self)
        self.label.setObjectName("reviewLabel")
        self.label.setWordWrap(True)
        self.accept_selected_button = self._button(
            "acceptSelectedButton", "Accept Selected (Enter)", self.acceptSelected
        )
        self.accept_all_button = self._button("acceptAllButton", "Accept All (Shift+Enter)", self.acceptAll)
        self.reject_all_button = self._button("rejectAllButton", "Reject All (Esc)", self.rejectAll)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self.label, 1)
        for b in (self.accept_selected_button, self.accept_all_button, self.reject_all_button):
            layout.addWidget(b)
        self.set_counts(0, 0)

    def _button(self, name: str, text: str, signal) -> QToolButton:
        b = QToolButton(self)
        b.setObjectName(name)
        b.setText(text)
        b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        b.clicked.connect(signal)
        return b

    def set_counts(self, selected: int, open_: int) -> None:
        """``selected`` of the ``open_`` proposals not accepted yet are selected."""
        self.label.setText(
            f"<b>{open_} proposals</b>, {selected} selected · click a proposal to select or unselect it, "
            "drag a box to select those inside · accepted ones go to the current category"
        )
        self.accept_selected_button.setEnabled(selected > 0)
        self.accept_all_button.setEnabled(open_ > 0)
