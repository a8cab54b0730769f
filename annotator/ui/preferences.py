"""Edit → Preferences…: model, device, cache, overlay, autosave and keyboard shortcuts.

The dialog edits a copy: nothing reaches :class:`~annotator.ui.settings.Settings`
until OK, and Cancel writes nothing. OK is refused while two actions share a
key (the clashes are listed in red above the buttons), because Qt disables
both actions of an ambiguous shortcut without a word.

Shortcuts are edited per action: select a row, then press the new key in one
of the key boxes under the table (each action may have up to
:attr:`PreferencesDialog.MAX_KEYS` keys; a box's clear button removes one).
Keys the canvas handles itself (Space) are shown but cannot be remapped.

After OK, :attr:`PreferencesDialog.restart_required` says whether a setting
that only takes effect at the next start (:data:`~annotator.ui.settings.RESTART_KEYS`)
changed; the caller applies the rest (shortcuts, opacity, autosave, cache sizes).
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QKeySequenceEdit,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from annotator.ui.actions import ACTIONS, ActionSpec, key_text
from annotator.ui.settings import AUTO, DEVICES, MAX_CACHE_MB, RESTART_KEYS, Settings, conflicts, model_types, normalize_key

log = logging.getLogger(__name__)

CONFLICT_COLOR = QColor("#ff6b6b")
RESTART_NOTE = "* takes effect the next time sam-annotator starts."

_FAMILY = {"mobile_sam": "MobileSAM", "sam1": "SAM", "sam2.1": "SAM 2.1"}
_DEVICE_TEXT = {
    "auto": "auto: CUDA GPU, else Apple GPU (MPS), else CPU",
    "cuda": "cuda: NVIDIA GPU",
    "mps": "mps: Apple GPU",
    "cpu": "cpu",
}

Keys = Tuple[str, ...]


def display_name(spec: ActionSpec) -> str:
    """The action's menu text without mnemonic and ellipsis (``"&Open Folder…"`` -> ``"Open Folder"``)."""
    return spec.text.replace("&", "").rstrip("…").rstrip(".").strip()


def _model_items() -> List[Tuple[str, str]]:
    """``(label, model type)`` for the model combo, ``"auto"`` first."""
    items = [("auto: vit_h on a CUDA GPU, else vit_t (MobileSAM)", AUTO)]
    try:
        from sam_core.checkpoints import CHECKPOINTS
    except Exception:  # pragma: no cover - a broken engine still lets the dialog open
        CHECKPOINTS = {}
    for t in model_types():
        c = CHECKPOINTS.get(t)
        if c is None:
            items.append((t, t))
            continue
        size = f", {c.size / 1e6:,.0f} MB" if c.size else ""
        items.append((f"{t} ({_FAMILY.get(c.family, c.family)}{size})", t))
    return items


def _default_cache_folder() -> str:
    try:
        from sam_core.checkpoints import cache_dir

        return str(cache_dir())
    except Exception:  # pragma: no cover
        return ""


class PreferencesDialog(QDialog):
    """The preferences of ``settings``; written back on OK only.

    Parameters
    ----------
    settings:
        Read when the dialog opens, written when OK is accepted.
    specs:
        The action table whose keys are listed (default :data:`ACTIONS`).
    parent:
        Parent widget.
    clear_cache:
        Called by "Clear embedding cache" (at once, not on OK); the button is
        disabled without it. A string it returns is shown beside the button.

    Attributes
    ----------
    restart_required:
        After OK: whether the model, device or cache folder changed.
    """

    MAX_KEYS = 3

    def __init__(
        self,
        settings: Settings,
        specs: Sequence[ActionSpec] = ACTIONS,
        parent: Optional[QWidget] = None,
        *,
        clear_cache: Optional[Callable[[], object]] = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("preferencesDialog")
        self.setWindowTitle("Preferences")
        self.settings = settings
        self.specs: Tuple[ActionSpec, ...] = tuple(specs)
        self.restart_required = False
        self._clear_cache = clear_cache
        self._defaults: Dict[str, Keys] = {
            s.name: tuple(dict.fromkeys(normalize_key(k) for k in s.shortcuts if normalize_key(k))) for s in self.specs
        }
        stored = settings.shortcuts
        self._pending: Dict[str, Keys] = {s.name: stored.get(s.name, self._defaults[s.name]) for s in self.specs}
        self._row_of: Dict[str, int] = {}
        self._editing: Optional[str] = None

        self.tabs = QTabWidget(self)
        self.tabs.setObjectName("tabs")
        self.general_tab = self._build_general()
        self.cache_tab = self._build_cache()
        self.shortcuts_tab = self._build_shortcuts()
        self.tabs.addTab(self.general_tab, "General")
        self.tabs.addTab(self.cache_tab, "Cache")
        self.tabs.addTab(self.shortcuts_tab, "Shortcuts")

        self.conflict_label = QLabel(self)
        self.conflict_label.setObjectName("conflictLabel")
        self.conflict_label.setWordWrap(True)
        self.conflict_label.setStyleSheet(f"color: {CONFLICT_COLOR.name()};")
        self.conflict_label.hide()

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, parent=self
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.conflict_label)
        layout.addWidget(self.buttons)
        self._refresh_shortcuts()
        self._initial = self.values()
        self.resize(680, 620)

    @property
    def ok_button(self) -> QPushButton:
        return self.buttons.button(QDialogButtonBox.StandardButton.Ok)

    @property
    def cancel_button(self) -> QPushButton:
        return self.buttons.button(QDialogButtonBox.StandardButton.Cancel)

    # =====================================================================================
    # General
    # =====================================================================================

    def _build_general(self) -> QWidget:
        s = self.settings
        page = QWidget(self)
        form = QFormLayout(page)

        self.model_combo = QComboBox(page)
        self.model_combo.setObjectName("modelCombo")
        for label, value in _model_items():
            self.model_combo.addItem(label, value)
        self.model_combo.setCurrentIndex(max(0, self.model_combo.findData(s.model)))
        form.addRow("Model *", self.model_combo)

        self.device_combo = QComboBox(page)
        self.device_combo.setObjectName("deviceCombo")
        for d in DEVICES:
            self.device_combo.addItem(_DEVICE_TEXT[d], d)
        if self.device_combo.findData(s.device) < 0:  # cuda:N
            self.device_combo.addItem(s.device, s.device)
        self.device_combo.setCurrentIndex(self.device_combo.findData(s.device))
        form.addRow("Device *", self.device_combo)

        self.opacity_slider = QSlider(Qt.Orientation.Horizontal, page)
        self.opacity_slider.setObjectName("opacitySlider")
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setSingleStep(5)
        self.opacity_slider.setPageStep(10)
        self.opacity_value = QLabel(page)
        self.opacity_value.setMinimumWidth(40)
        self.opacity_slider.valueChanged.connect(lambda v: self.opacity_value.setText(f"{v}%"))
        self.opacity_slider.setValue(round(s.overlay_opacity * 100))
        self.opacity_value.setText(f"{self.opacity_slider.value()}%")
        row = QHBoxLayout()
        row.addWidget(self.opacity_slider, 1)
        row.addWidget(self.opacity_value)
        form.addRow("Mask opacity", row)

        self.autosave_check = QCheckBox("Save the annotations after every change", page)
        self.autosave_check.setObjectName("autosaveCheck")
        self.autosave_check.setToolTip(
            "Off: they are saved on Ctrl+S, on moving to another image or folder, and on quit."
        )
        self.autosave_check.setChecked(s.autosave)
        form.addRow("Autosave", self.autosave_check)

        note = QLabel(f"{RESTART_NOTE}\nSettings are stored in {s.path}", page)
        note.setObjectName("restartNote")
        note.setWordWrap(True)
        note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        note.setEnabled(False)  # the palette's muted text
        form.addRow(note)
        return page

    # =====================================================================================
    # Cache
    # =====================================================================================

    def _build_cache(self) -> QWidget:
        s = self.settings
        page = QWidget(self)
        form = QFormLayout(page)

        self.cache_dir_edit = QLineEdit(s.cache_dir, page)
        self.cache_dir_edit.setObjectName("cacheDirEdit")
        default = _default_cache_folder()
        self.cache_dir_edit.setPlaceholderText(f"default: {default}" if default else "default")
        self.cache_dir_edit.setToolTip(
            "Weights go to FOLDER/checkpoints, embeddings to FOLDER/embeddings. Empty: the default."
        )
        browse = QPushButton("Browse…", page)
        browse.setObjectName("cacheBrowse")
        browse.clicked.connect(self._browse_cache)
        row = QHBoxLayout()
        row.addWidget(self.cache_dir_edit, 1)
        row.addWidget(browse)
        form.addRow("Cache folder *", row)

        self.memory_spin = QSpinBox(page)
        self.memory_spin.setObjectName("memorySpin")
        self.memory_spin.setRange(0, MAX_CACHE_MB)
        self.memory_spin.setSingleStep(128)
        self.memory_spin.setSuffix(" MB")
        self.memory_spin.setValue(s.cache_memory_mb)
        self.memory_spin.setToolTip("Embeddings of recent images kept in memory (about 4 MB per image).")
        form.addRow("Embeddings in memory", self.memory_spin)

        self.disk_spin = QSpinBox(page)
        self.disk_spin.setObjectName("diskSpin")
        self.disk_spin.setRange(0, MAX_CACHE_MB)
        self.disk_spin.setSingleStep(1024)
        self.disk_spin.setSuffix(" MB")
        self.disk_spin.setSpecialValueText("unbounded")
        self.disk_spin.setValue(s.cache_disk_mb)
        self.disk_spin.setToolTip("Embeddings kept on disk; the oldest go first. 0: unbounded.")
        form.addRow("Embeddings on disk", self.disk_spin)

        self.clear_cache_button = QPushButton("Clear Embedding Cache", page)
        self.clear_cache_button.setObjectName("clearCacheButton")
        self.clear_cache_button.setEnabled(self._clear_cache is not None)
        self.clear_cache_button.setToolTip("Delete the stored image embeddings now (weights are kept).")
        self.clear_cache_button.clicked.connect(self._clear_cache_clicked)
        self.clear_cache_status = QLabel(page)
        self.clear_cache_status.setObjectName("clearCacheStatus")
        row = QHBoxLayout()
        row.addWidget(self.clear_cache_button)
        row.addWidget(self.clear_cache_status, 1)
        form.addRow("", row)

        note = QLabel(RESTART_NOTE, page)
        note.setEnabled(False)
        form.addRow(note)
        return page

    def _browse_cache(self) -> None:
        start = self.cache_dir_edit.text().strip() or _default_cache_folder()
        folder = QFileDialog.getExistingDirectory(self, "Cache folder", start)
        if folder:
            self.cache_dir_edit.setText(folder)

    def _clear_cache_clicked(self) -> None:
        if self._clear_cache is None:
            return
        try:
            result = self._clear_cache()
        except Exception as exc:  # noqa: BLE001 - shown to the user
            log.warning("clearing the embedding cache failed: %s", exc)
            self.clear_cache_status.setStyleSheet(f"color: {CONFLICT_COLOR.name()};")
            self.clear_cache_status.setText(f"Failed: {exc}")
            return
        self.clear_cache_status.setStyleSheet("")
        self.clear_cache_status.setText(result if isinstance(result, str) else "Embedding cache cleared.")

    # =====================================================================================
    # Shortcuts
    # =====================================================================================

    def _build_shortcuts(self) -> QWidget:
        page = QWidget(self)
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
        return page

    # -- public, for callers and tests ----------------------------------------------------

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
        if clashes:
            self.conflict_label.setText(self._conflict_message(clashes))
            self.conflict_label.show()
        else:
            self.conflict_label.clear()
            self.conflict_label.hide()
        if self.filter_edit.text():
            self._apply_filter(self.filter_edit.text())

    def _conflict_message(self, clashes: List[Tuple[str, List[str]]]) -> str:
        by_name = {s.name: s for s in self.specs}
        lines = [
            f"{key_text(key)} is used by " + " and ".join(display_name(by_name[n]) for n in names)
            for key, names in clashes
        ]
        return "A key is used by more than one action; change one before pressing OK.\n" + "\n".join(lines)

    # =====================================================================================
    # OK / Cancel
    # =====================================================================================

    def values(self) -> Dict[str, object]:
        """The typed settings as edited (keys of :attr:`Settings.KEYS`)."""
        return {
            "model": self.model_combo.currentData(),
            "device": self.device_combo.currentData(),
            "cache_dir": self.cache_dir_edit.text().strip(),
            "cache_memory_mb": self.memory_spin.value(),
            "cache_disk_mb": self.disk_spin.value(),
            "overlay_opacity": self.opacity_slider.value() / 100.0,
            "autosave": self.autosave_check.isChecked(),
        }

    def accept(self) -> None:
        """Write the settings and close, unless two actions share a key (then say which, and stay open)."""
        clashes = self.conflicts()
        if clashes:
            self.tabs.setCurrentWidget(self.shortcuts_tab)
            self.conflict_label.setText("Not saved. " + self._conflict_message(clashes))
            self.conflict_label.show()
            self.select_action(clashes[0][1][-1])
            return
        self._write()
        super().accept()

    def _write(self) -> None:
        s = self.settings
        changed = {k: v for k, v in self.values().items() if v != self._initial[k]}
        self.restart_required = any(k in changed for k in RESTART_KEYS)
        for key, value in changed.items():  # untouched settings stay as stored (or unset: default)
            setattr(s, key, value)
        for spec in self.specs:
            keys = self._pending[spec.name]
            if keys == self._defaults[spec.name]:
                s.reset_shortcut(spec)
            else:
                s.set_shortcuts(spec, keys)
        s.sync()


__all__ = ["PreferencesDialog", "display_name"]
