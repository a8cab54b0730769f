"""The Shortcuts page of Edit → Preferences…: every action's keys, edited in the dialog, checked for clashes.

Shortcuts are edited per action: select a row, then press the new key in one
of the key boxes under the table (each action may have up to
:attr:`ShortcutsPage.MAX_KEYS` keys; a box's clear button removes one). Keys
the canvas handles itself (Space) are shown but cannot be remapped. Nothing is
stored here: the dialog writes :meth:`ShortcutsPage.pending_overrides` on OK.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QKeySequenceEdit,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from annotator.ui.actions import ActionSpec, key_text
from annotator.ui.settings import conflicts, normalize_key

CONFLICT_COLOR = QColor("#ff6b6b")

Keys = Tuple[str, ...]


def display_name(spec: ActionSpec) -> str:
    """The action's menu text without mnemonic and ellipsis (``"&Open Folder…"`` -> ``"Open Folder"``)."""
    return spec.text.replace("&", "").rstrip("…").rstrip(".").strip()


class ShortcutsPage(QWidget):
    """The table of actions and their keys, with an editor for the selected one.

    Parameters
    ----------
    specs:
        The action table.
    stored:
        The keys stored in the settings, by action name (missing: the default).
    """

    MAX_KEYS = 3
    changed = Signal()  # the keys as edited changed (the dialog re-checks clashes)

    def __init__(self, specs: Sequence[ActionSpec], stored: Dict[str, Keys], parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.specs: Tuple[ActionSpec, ...] = tuple(specs)
        self._defaults: Dict[str, Keys] = {
            s.name: tuple(dict.fromkeys(normalize_key(k) for k in s.shortcuts if normalize_key(k))) for s in self.specs
        }
        self._pending: Dict[str, Keys] = {s.name: stored.get(s.name, self._defaults[s.name]) for s in self.specs}
        self._row_of: Dict[str, int] = {}
        self._editing: Optional[str] = None
        self._build()
        self._refresh_shortcuts()

    def is_default(self, name: str) -> bool:
        return self._pending[name] == self._defaults[name]

    def _build(self) -> None:
        page = self
        layout = QVBoxLayout(page)

        self.filter_edit = QLineEdit(page)
        self.filter_edit.setObjectName("shortcutFilter")
        self.filter_edit.setPlaceholderText("Filter by action, menu or key")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self._apply_filter)
        layout.addWidget(self.filter_edit)

        table = self.table = QTableWidget(len(self.specs), 4, page)
        table.setObjectName("shortcutTable")
        table.setHorizontalHeaderLabels(["Action", "Menu", "Keys", ""])
        table.verticalHeader().hide()
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
        for row, spec in enumerate(self.specs):
            self._row_of[spec.name] = row
            name = QTableWidgetItem(display_name(spec))
            name.setData(Qt.ItemDataRole.UserRole, spec.name)
            name.setToolTip(spec.help)
            table.setItem(row, 0, name)
            table.setItem(row, 1, QTableWidgetItem(spec.menu))
            table.setItem(row, 2, QTableWidgetItem())
            reset = QPushButton("Reset", table)
            reset.setObjectName(f"reset_{spec.name}")
            reset.setToolTip("Default: " + (", ".join(key_text(k) for k in spec.shortcuts) or "no key"))
            reset.clicked.connect(lambda _checked=False, n=spec.name: self.reset_action(n))
            table.setCellWidget(row, 3, reset)
        table.itemSelectionChanged.connect(self._selection_changed)
        table.itemDoubleClicked.connect(lambda _item: self.key_edits[0].setFocus())
        layout.addWidget(table, 1)

        editor = QHBoxLayout()
        self.editor_label = QLabel("Select an action to change its keys.", page)
        self.editor_label.setObjectName("editorLabel")
        editor.addWidget(self.editor_label, 1)
        self.key_edits: List[QKeySequenceEdit] = []
        for i in range(self.MAX_KEYS):
            edit = QKeySequenceEdit(page)
            edit.setObjectName(f"keyEdit{i}")
            edit.setMaximumSequenceLength(1)  # one chord: recording ends at the key press
            edit.setClearButtonEnabled(True)
            edit.setEnabled(False)
            edit.keySequenceChanged.connect(self._keys_edited)
            editor.addWidget(edit)
            self.key_edits.append(edit)
        layout.addLayout(editor)

        bottom = QHBoxLayout()
        self.canvas_note = QLabel(page)
        self.canvas_note.setEnabled(False)
        bottom.addWidget(self.canvas_note, 1)
        self.reset_all_button = QPushButton("Reset All", page)
        self.reset_all_button.setObjectName("resetAllButton")
        self.reset_all_button.clicked.connect(self.reset_all)
        bottom.addWidget(self.reset_all_button)
        layout.addLayout(bottom)

    # -- public, for the dialog and tests -------------------------------------------------

    def pending_shortcuts(self) -> Dict[str, Keys]:
        """The keys shown for every action (portable text), edits included."""
        return dict(self._pending)

    def pending_overrides(self) -> Dict[str, Keys]:
        """The edited keys that differ from the defaults: what OK stores."""
        return {n: k for n, k in self._pending.items() if k != self._defaults[n]}

    def conflicts(self) -> List[Tuple[str, List[str]]]:
        """``[(key, [action names])]`` for the keys as edited (empty when OK is allowed)."""
        return conflicts(self.specs, self.pending_overrides())

    def select_action(self, name: str) -> None:
        """Select the row of action ``name`` (clearing the filter if it hides it)."""
        row = self._row_of[name]
        if self.table.isRowHidden(row):
            self.filter_edit.clear()
        self.table.selectRow(row)
        self.table.scrollToItem(self.table.item(row, 0))

    def set_keys(self, name: str, keys: Sequence[str]) -> None:
        """Give action ``name`` the keys ``keys`` in the dialog (written on OK)."""
        normal = [normalize_key(k) for k in keys]
        if not all(normal):
            raise ValueError(f"not key sequences: {list(keys)!r}")
        self._pending[name] = tuple(dict.fromkeys(normal))
        if self._editing == name:
            self._load_editor(name)
        self._refresh_shortcuts()

    def reset_action(self, name: str) -> None:
        self.set_keys(name, self._defaults[name])

    def reset_all(self) -> None:
        for name in self._pending:
            self._pending[name] = self._defaults[name]
        if self._editing is not None:
            self._load_editor(self._editing)
        self._refresh_shortcuts()

    # -- editing ----------------------------------------------------------------------------

    def _selection_changed(self) -> None:
        rows = {i.row() for i in self.table.selectedItems()}
        name = self.table.item(rows.pop(), 0).data(Qt.ItemDataRole.UserRole) if len(rows) == 1 else None
        self._editing = name
        self._load_editor(name)

    def _load_editor(self, name: Optional[str]) -> None:
        spec = next((s for s in self.specs if s.name == name), None)
        keys = self._pending.get(name, ()) if name else ()
        for i, edit in enumerate(self.key_edits):
            edit.blockSignals(True)
            edit.setKeySequence(QKeySequence(keys[i]) if i < len(keys) else QKeySequence())
            edit.blockSignals(False)
            edit.setEnabled(spec is not None)
        if spec is None:
            self.editor_label.setText("Select an action to change its keys.")
            self.canvas_note.setText("")
            return
        self.editor_label.setText(f"Keys for “{display_name(spec)}”:")
        extra = len(keys) - self.MAX_KEYS
        notes = []
        if spec.canvas_keys:
            notes.append(f"{', '.join(key_text(k) for k in spec.canvas_keys)} is handled by the canvas and stays.")
        if extra > 0:
            notes.append(f"{extra} more key(s) not shown are kept.")
        self.canvas_note.setText(" ".join(notes))

    def _keys_edited(self) -> None:
        name = self._editing
        if name is None:
            return
        portable = QKeySequence.SequenceFormat.PortableText
        keys = [normalize_key(e.keySequence().toString(portable)) for e in self.key_edits]
        hidden = self._pending[name][self.MAX_KEYS:]
        self._pending[name] = tuple(dict.fromkeys(k for k in (*keys, *hidden) if k))
        self._refresh_shortcuts()

    def _apply_filter(self, text: str) -> None:
        needle = text.strip().lower()
        for spec in self.specs:
            row = self._row_of[spec.name]
            hay = " ".join(
                [display_name(spec), spec.menu, spec.name, *self._pending[spec.name],
                 *(key_text(k) for k in self._pending[spec.name])]
            ).lower()
            self.table.setRowHidden(row, bool(needle) and needle not in hay)

    def _refresh_shortcuts(self) -> None:
        clashes = self.conflicts()
        clash_of: Dict[str, List[Tuple[str, List[str]]]] = {}
        for key, names in clashes:
            for n in names:
                clash_of.setdefault(n, []).append((key, names))
        by_name = {s.name: s for s in self.specs}
        for spec in self.specs:
            row = self._row_of[spec.name]
            keys = self._pending[spec.name]
            shown = [key_text(k) for k in keys] or ["—"]
            shown += [f"{key_text(k)} (canvas)" for k in spec.canvas_keys]
            item = self.table.item(row, 2)
            item.setText(", ".join(shown))
            font = QFont(item.font())
            font.setBold(keys != self._defaults[spec.name])
            item.setFont(font)
            mine = clash_of.get(spec.name)
            if mine:
                for col in (0, 2):
                    self.table.item(row, col).setForeground(CONFLICT_COLOR)
                item.setToolTip("\n".join(
                    f"{key_text(k)} is also used by "
                    + ", ".join(display_name(by_name[n]) for n in names if n != spec.name)
                    for k, names in mine
                ))
            else:
                for col in (0, 2):
                    self.table.item(row, col).setData(Qt.ItemDataRole.ForegroundRole, None)
                item.setToolTip("Default: " + (", ".join(key_text(k) for k in spec.shortcuts) or "no key"))
            self.table.cellWidget(row, 3).setEnabled(keys != self._defaults[spec.name])
        self.reset_all_button.setEnabled(bool(self.pending_overrides()))
        if self.filter_edit.text():
            self._apply_filter(self.filter_edit.text())
        self.changed.emit()

    def conflict_message(self, clashes: List[Tuple[str, List[str]]]) -> str:
        by_name = {s.name: s for s in self.specs}
        lines = [
            f"{key_text(key)} is used by " + " and ".join(display_name(by_name[n]) for n in names)
            for key, names in clashes
        ]
        return "A key is used by more than one action; change one before pressing OK.\n" + "\n".join(lines)
