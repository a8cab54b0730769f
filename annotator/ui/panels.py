"""Side panels: the image list and the annotations of the current image.

Panels display rows (:mod:`annotator.session.rows`) and emit what the user asked for;
they never change the document themselves. They take no keyboard focus, so
the shortcuts and the canvas keep working after a click in a panel.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

from PySide6.QtCore import QAbstractListModel, QModelIndex, QSize, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QColor, QIcon
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from annotator import render
from annotator.ui.icons import exact_icon
from annotator.workers.base import make_timer
from annotator.data.image_states import DONE, SKIPPED
from annotator.session.rows import (
    LIST_STATE_NAMES,
    AnnotationRow,
    CategoryRow,
    ImageRow,
    ImageState,
    count_states,
    format_area,
    format_iou,
    list_state,
)

_STATE_COLORS = {
    ImageState.UNKNOWN: ((120, 124, 130), True),
    ImageState.LOADING: ((240, 190, 60), True),
    ImageState.READY: ((80, 200, 120), False),
    ImageState.ERROR: ((230, 70, 70), False),
}
#: The user's state, as a mark before the name and words in the tooltip.
_PROGRESS_MARK = {DONE: "✓ ", SKIPPED: "↷ "}
_PROGRESS_TEXT = {"todo": "to do", DONE: "done", SKIPPED: "skipped"}
_STATE_TEXT = {
    ImageState.UNKNOWN: "not encoded yet",
    ImageState.LOADING: "loading / encoding",
    ImageState.READY: "embedding ready: clicks answer at once",
    ImageState.ERROR: "cannot be used",
}


#: How an image whose picture changed, and its annotations under review, are marked.
REVIEW_MARK = "⚠"
REVIEW_COLOR = QColor(245, 160, 60)


def _icon(image) -> QIcon:
    return exact_icon(image)  # the same colour when the row is selected


class ImageListModel(QAbstractListModel):
    """Rows from a provider: ``count()`` and ``row(i) -> ImageRow`` (the session's)."""

    def __init__(self, count: Callable[[], int], row: Callable[[int], ImageRow], parent=None) -> None:
        super().__init__(parent)
        self._count = count
        self._row = row
        self._icons = {state: _icon(render.dot(c, 12, hollow)) for state, (c, hollow) in _STATE_COLORS.items()}

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else self._count()

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = self._row(index.row())
        if role == Qt.ItemDataRole.DisplayRole:
            name = _PROGRESS_MARK.get(row.progress, "") + row.name
            text = f"{name}  ({row.annotations})" if row.annotations else name
            return f"{REVIEW_MARK} {text}" if row.review else text
        if role == Qt.ItemDataRole.DecorationRole:
            return self._icons[row.state]
        if role == Qt.ItemDataRole.ToolTipRole:
            negative = " (no annotations: a negative)" if row.progress == DONE and not row.annotations else ""
            tip = (f"{row.path}\n{_PROGRESS_TEXT.get(row.progress, row.progress)}{negative}; "
                   f"{row.annotations} annotation(s); {_STATE_TEXT[row.state]}")
            tip = f"{tip}\n{row.message}" if row.message else tip
            return f"{tip}\n{REVIEW_MARK} {row.review}" if row.review else tip
        if role == Qt.ItemDataRole.ForegroundRole:
            if row.review:
                return REVIEW_COLOR
            if row.state == ImageState.ERROR:
                return QColor(230, 110, 110)
            if row.progress == DONE:
                return QColor(130, 210, 140)
            if row.progress == SKIPPED:
                return QColor(140, 143, 150)
            if row.annotations:
                return QColor(150, 215, 255)
        if role == Qt.ItemDataRole.FontRole and row.annotations:
            from PySide6.QtGui import QFont

            font = QFont()
            font.setBold(True)
            return font
        return None

    def reset(self) -> None:
        self.beginResetModel()
        self.endResetModel()

    def refresh_row(self, i: int) -> None:
        if 0 <= i < self._count():
            index = self.index(i)
            self.dataChanged.emit(index, index)


class StateFilter(QSortFilterProxyModel):
    """The rows of one :data:`annotator.session.rows.LIST_STATES` state (``""``: all)."""

    def __init__(self, model: ImageListModel, parent=None) -> None:
        super().__init__(parent)
        self.state = ""
        self.setSourceModel(model)
        self.setDynamicSortFilter(True)  # a row whose state changes leaves or joins the view at once

    def set_state(self, state: str) -> None:
        self.beginFilterChange()
        self.state = state
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex) -> bool:  # noqa: N802
        return not self.state or list_state(self.sourceModel()._row(source_row)) == self.state


class ImageListPanel(QWidget):
    """The folder's images, filtered by state (with counts); a click asks to show one."""

    imageChosen = Signal(int)  # the row in the session's list (not in the filtered view)
    filterChanged = Signal(str)  # the state the list shows ("": all); D / A step through those images

    def __init__(self, count: Callable[[], int], row: Callable[[int], ImageRow], parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("imageList")
        self.model = ImageListModel(count, row, self)
        self.proxy = StateFilter(self.model, self)
        self.filter = QComboBox(self)
        self.filter.setObjectName("imageFilter")
        self.filter.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.filter.setToolTip("Show only the images in one state (Image menu: mark the image on show to do, done "
                               "or skipped)")
        for state, name in LIST_STATE_NAMES.items():
            self.filter.addItem(name, state)
        self.filter.currentIndexChanged.connect(lambda _i: self.set_filter(self.filter.currentData()))
        self._current = -1
        # the counts read every row: once per burst of row changes (the cached-embeddings scan marks every
        # image ready at once), not once per row, which was quadratic in the folder's size
        self._summary_timer = make_timer(self, 0, single_shot=True)
        self._summary_timer.timeout.connect(self._update_summary)
        self.view = QListView(self)
        self.view.setModel(self.proxy)
        # the image on show left or joined the filtered rows (it was marked): select it again, or nothing
        self.proxy.rowsRemoved.connect(lambda *_: self.set_current(self._current))
        self.proxy.rowsInserted.connect(lambda *_: self.set_current(self._current))
        self.view.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.view.setUniformItemSizes(True)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setIconSize(QSize(12, 12))
        self.view.clicked.connect(lambda index: self.imageChosen.emit(self.proxy.mapToSource(index).row()))
        self.summary = QLabel(self)
        self.summary.setObjectName("panelHint")
        self.summary.setWordWrap(True)  # a narrow dock (small window) wraps it instead of cutting it off
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.filter)
        layout.addWidget(self.view)
        layout.addWidget(self.summary)

    def reset(self) -> None:
        self.model.reset()
        self._update_summary()

    def refresh_row(self, i: int) -> None:
        self.model.refresh_row(i)
        self._summary_timer.start()

    def set_filter(self, state: str) -> None:
        """Show only the images in ``state`` (one of :data:`annotator.session.rows.LIST_STATES`; ``""``: all)."""
        if state != self.proxy.state:
            self.proxy.set_state(state)
            self.filterChanged.emit(state)
        i = self.filter.findData(state)
        if i != self.filter.currentIndex():
            self.filter.setCurrentIndex(i)
        self.set_current(self._current)

    def set_current(self, i: int) -> None:
        """Select and scroll to image ``i`` (a row of the session's list), when the filter shows it."""
        self._current = i
        index = self.proxy.mapFromSource(self.model.index(i)) if 0 <= i < self.model.rowCount() else QModelIndex()
        if index.isValid():
            self.view.setCurrentIndex(index)
            self.view.scrollTo(index)
        else:
            self.view.setCurrentIndex(QModelIndex())  # another row must not look like the image on show
            self.view.clearSelection()

    def counts(self) -> dict:
        """Images per filter state (``""``: all), as the filter menu shows them."""
        return count_states(self.model._row(i) for i in range(self.model.rowCount()))

    def _update_summary(self) -> None:
        n = self.model.rowCount()
        rows = [self.model._row(i) for i in range(n)]
        counts = count_states(rows)
        for i in range(self.filter.count()):
            state = self.filter.itemData(i)
            self.filter.setItemText(i, f"{LIST_STATE_NAMES[state]} ({counts[state]})")
        annotated = sum(1 for r in rows if r.annotations)
        negatives = sum(1 for r in rows if r.progress == DONE and not r.annotations)
        text = f"{annotated} of {n} images annotated, {negatives} negative(s)" if n else "No images: File → Open Folder…"
        self.summary.setText(text)


class AnnotationsPanel(QWidget):
    """Annotations of the current image: select, show/hide, delete, change category."""

    selected = Signal(object)  # annotation id or None
    visibilityChanged = Signal(int, bool)
    deleteRequested = Signal(int)
    categoryChangeRequested = Signal(int, int)  # annotation id, category id

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("annotationsPanel")
        self.list = QListWidget(self)
        self.list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._context_menu)
        self.list.itemSelectionChanged.connect(self._selection_changed)
        self.list.itemChanged.connect(self._item_changed)
        self.category = QComboBox(self)
        self.category.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.category.setToolTip("Category of the selected annotation")
        self.category.activated.connect(self._category_chosen)
        self.delete_button = QToolButton(self)
        self.delete_button.setText("Delete")
        self.delete_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.delete_button.clicked.connect(self._delete_selected)
        row = QHBoxLayout()
        row.addWidget(self.category, 1)
        row.addWidget(self.delete_button)
        self.empty_hint = QLabel("No annotations on this image yet.\nClick an object, then press Enter.", self)
        self.empty_hint.setObjectName("panelHint")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setWordWrap(True)  # a narrow dock (small window) wraps it instead of cutting it off
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.list)
        layout.addWidget(self.empty_hint)
        layout.addLayout(row)
        self._rows: List[AnnotationRow] = []
        self._categories: List[CategoryRow] = []
        self._updating = False
        self._update_controls()

    # -- from the session ------------------------------------------------------------

    def set_rows(self, rows: Sequence[AnnotationRow], selected: Optional[int]) -> None:
        self._updating = True
        try:
            self._rows = list(rows)
            self.list.clear()
            for r in self._rows:
                text = f"#{r.id}  {r.category}   {format_area(r.area)}"
                if r.score is not None:
                    text += f"   {format_iou(r.score, 2)}"
                item = QListWidgetItem(_icon(render.swatch(r.color)), text)
                item.setData(Qt.ItemDataRole.UserRole, r.id)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if r.visible else Qt.CheckState.Unchecked)
                item.setToolTip("Untick to hide it on the canvas")
                if r.review:
                    item.setText(f"{text}   {REVIEW_MARK} review")
                    item.setForeground(REVIEW_COLOR)
                    item.setToolTip("Made on an earlier picture with this file name: keep it or delete it "
                                    "(the bar above the image). Untick to hide it on the canvas")
                self.list.addItem(item)
                if r.id == selected:
                    item.setSelected(True)
                    self.list.setCurrentItem(item)
        finally:
            self._updating = False
        self._update_controls()

    def set_categories(self, categories: Sequence[CategoryRow]) -> None:
        self._categories = list(categories)
        self._update_controls()

    def selected_id(self) -> Optional[int]:
        items = self.list.selectedItems()
        return int(items[0].data(Qt.ItemDataRole.UserRole)) if items else None

    # -- user ------------------------------------------------------------------------

    def _selection_changed(self) -> None:
        if not self._updating:
            self.selected.emit(self.selected_id())
        self._update_controls()

    def _item_changed(self, item: QListWidgetItem) -> None:
        if self._updating:
            return
        self.visibilityChanged.emit(
            int(item.data(Qt.ItemDataRole.UserRole)), item.checkState() == Qt.CheckState.Checked
        )

    def _delete_selected(self) -> None:
        ann = self.selected_id()
        if ann is not None:
            self.deleteRequested.emit(ann)

    def _category_chosen(self, index: int) -> None:
        ann = self.selected_id()
        cat = self.category.itemData(index)
        if ann is not None and cat is not None:
            self.categoryChangeRequested.emit(ann, int(cat))

    def _context_menu(self, pos) -> None:
        item = self.list.itemAt(pos)
        if item is None:
            return
        ann = int(item.data(Qt.ItemDataRole.UserRole))
        menu = QMenu(self)
        sub = menu.addMenu("Category")
        for c in self._categories:
            act = sub.addAction(_icon(render.swatch(c.color)), c.name)
            act.triggered.connect(lambda _=False, a=ann, cid=c.id: self.categoryChangeRequested.emit(a, cid))
        menu.addAction("Delete").triggered.connect(lambda: self.deleteRequested.emit(ann))
        menu.exec(self.list.viewport().mapToGlobal(pos))

    def _update_controls(self) -> None:
        self.empty_hint.setVisible(not self._rows)
        ann = self.selected_id()
        row = next((r for r in self._rows if r.id == ann), None)
        self.category.blockSignals(True)
        self.category.clear()
        for c in self._categories:
            self.category.addItem(_icon(render.swatch(c.color)), c.name, c.id)
        if row is not None:
            self.category.setCurrentIndex(max(0, self.category.findData(row.category_id)))
        self.category.blockSignals(False)
        self.category.setEnabled(row is not None)
        self.delete_button.setEnabled(row is not None)


class EncoderStatus(QLabel):
    """Status-bar label: what the encoder is doing for the current image, with a live timer.

    ``set_state("encoding", t0)`` shows "Encoding image… 1.2 s" and ticks
    every 100 ms; ``set_state("", 0)`` clears it and stops the timer.
    """

    TEXT = {"model": "Loading model…", "loading": "Loading image…", "encoding": "Encoding image…"}

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("encoderStatus")
        from annotator.workers.base import make_timer

        self._timer = make_timer(self, 100)
        self._timer.timeout.connect(self._tick)
        self._state = ""
        self._t0 = 0.0

    def set_state(self, state: str, t0: float) -> None:
        self._state, self._t0 = state, t0
        if state:
            self._timer.start()
        else:
            self._timer.stop()
        self._tick()

    def stop(self) -> None:
        self.set_state("", 0.0)

    def _tick(self) -> None:
        import time

        if not self._state:
            self.setText("")
            return
        self.setText(f"{self.TEXT.get(self._state, self._state)} {time.perf_counter() - self._t0:.1f} s")
