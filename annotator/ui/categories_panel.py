"""The categories panel: pick the current category; add, rename, recolour, delete.

The panel asks the user the questions (name, colour, what to do with the
annotations of a category being deleted) and emits the answers; the session
changes the document.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QColorDialog,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QRadioButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from annotator import render
from annotator.ui.icons import exact_icon
from annotator.data import palette
from annotator.ui.flow_layout import WrappingRow
from annotator.session.rows import CategoryRow


class CategoriesPanel(QWidget):
    """List of categories; the current one is selected."""

    currentChanged = Signal(int)
    addRequested = Signal(str, object)  # name, colour (r, g, b) or None for the next default colour
    renameRequested = Signal(int, str)
    recolorRequested = Signal(int, object)  # id, (r, g, b)
    deleteRequested = Signal(int, object)  # id, category id to reassign its annotations to, or None to delete them
    loadRequested = Signal()  # the user wants to load a list of categories from a file

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("categoriesPanel")
        self.list = QListWidget(self)
        self.list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.itemClicked.connect(self._clicked)
        self.list.itemDoubleClicked.connect(lambda item: self.rename(self._id(item)))
        buttons = WrappingRow(self)  # wraps onto more rows in a narrow dock (one row made ~300 px its minimum)
        for text, tip, slot in (
            ("Add", "Add a category", self.add),
            ("Rename", "Rename the selected category", lambda: self.rename(self.current_id())),
            ("Colour", "Change the selected category's colour", lambda: self.recolor(self.current_id())),
            ("Delete", "Delete the selected category", lambda: self.delete(self.current_id())),
            ("Load…", "Add the categories of a text file (one name a line) or of a COCO file; "
             "names already here are kept", self.loadRequested.emit),
        ):
            b = QToolButton(self)
            b.setText(text)
            b.setToolTip(tip)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.clicked.connect(slot)
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.list)
        layout.addWidget(buttons)
        self._rows: List[CategoryRow] = []

    # -- from the session ------------------------------------------------------------

    def set_rows(self, rows: Sequence[CategoryRow], current: Optional[int]) -> None:
        self._rows = list(rows)
        self.list.blockSignals(True)
        self.list.clear()
        for r in self._rows:
            key = f"   {r.quick_key}" if r.quick_key else ""
            item = QListWidgetItem(exact_icon(render.swatch(r.color, 16)), f"{r.name}  ({r.count}){key}")
            item.setData(Qt.ItemDataRole.UserRole, r.id)
            item.setToolTip(f"{r.name}: {r.count} annotation(s)" + (f"; {r.quick_key} makes it current" if key else ""))
            self.list.addItem(item)
            if r.id == current:
                item.setSelected(True)
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)

    def set_current(self, category_id: Optional[int]) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if self._id(item) == category_id:
                self.list.setCurrentItem(item)
                item.setSelected(True)

    def current_id(self) -> Optional[int]:
        item = self.list.currentItem()
        return self._id(item) if item is not None else None

    # -- dialogs -----------------------------------------------------------------------

    def add(self) -> None:
        name, ok = QInputDialog.getText(self, "Add category", "Name:")
        name = name.strip()
        if ok and name:
            self.addRequested.emit(name, None)

    def rename(self, category_id: Optional[int]) -> None:
        row = self._row(category_id)
        if row is None:
            return
        name, ok = QInputDialog.getText(self, "Rename category", "Name:", text=row.name)
        name = name.strip()
        if ok and name and name != row.name:
            self.renameRequested.emit(row.id, name)

    def recolor(self, category_id: Optional[int]) -> None:
        row = self._row(category_id)
        if row is None:
            return
        color = QColorDialog.getColor(QColor(*row.color), self, f"Colour of {row.name}")
        if not color.isValid():
            return
        rgb = (color.red(), color.green(), color.blue())
        close = palette.close_reserved(rgb)
        if close and QMessageBox.question(
            self, "A colour the canvas uses", f"This colour is close to {' and '.join(close)}, so '{row.name}' "
            "annotations could be mistaken for it on the canvas. Use it anyway?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No,
        ) != QMessageBox.StandardButton.Yes:
            return
        self.recolorRequested.emit(row.id, rgb)

    def delete(self, category_id: Optional[int]) -> None:
        row = self._row(category_id)
        if row is None:
            return
        others = [r for r in self._rows if r.id != row.id]
        if row.count == 0:
            self.deleteRequested.emit(row.id, None)
            return
        dialog = DeleteCategoryDialog(row, others, self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.deleteRequested.emit(row.id, dialog.reassign_to())

    # -- internals -----------------------------------------------------------------------

    def _clicked(self, item: QListWidgetItem) -> None:
        self.currentChanged.emit(self._id(item))

    def _row(self, category_id: Optional[int]) -> Optional[CategoryRow]:
        return next((r for r in self._rows if r.id == category_id), None)

    @staticmethod
    def _id(item: QListWidgetItem) -> int:
        return int(item.data(Qt.ItemDataRole.UserRole))


class DeleteCategoryDialog(QDialog):
    """Asks what happens to the annotations of a category in use: move them to another one, or delete them."""

    def __init__(self, row: CategoryRow, others: Sequence[CategoryRow], parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Delete category {row.name}")
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"“{row.name}” is used by {row.count} annotation(s). What should happen to them?"))
        self.move = QRadioButton("Move them to:")
        self.target = QComboBox()
        for r in others:
            self.target.addItem(exact_icon(render.swatch(r.color)), r.name, r.id)
        self.drop = QRadioButton(f"Delete them ({row.count})")
        move_row = QHBoxLayout()
        move_row.addWidget(self.move)
        move_row.addWidget(self.target, 1)
        layout.addLayout(move_row)
        layout.addWidget(self.drop)
        if others:
            self.move.setChecked(True)
        else:
            self.move.setEnabled(False)
            self.target.setEnabled(False)
            self.drop.setChecked(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Delete category")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def reassign_to(self) -> Optional[int]:
        if self.move.isChecked() and self.target.currentIndex() >= 0:
            return int(self.target.currentData())
        return None
