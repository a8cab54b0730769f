"""Edit → Preferences…: model, device, cache, overlay, autosave, cleanup, region encoding and keyboard shortcuts.

The dialog edits a copy: nothing reaches :class:`~annotator.ui.settings.Settings`
until OK, and Cancel writes nothing. OK is refused while two actions share a
key (the clashes are listed in red above the buttons), because Qt disables
both actions of an ambiguous shortcut without a word, and while the cache
folder cannot be one (:func:`cache_folder_problem`: a file, or under one, not
writable, or a relative path), which would stop the next start loading any model.

The Shortcuts tab is :class:`~annotator.ui.shortcuts_page.ShortcutsPage`.

After OK, :attr:`PreferencesDialog.restart_required` says whether a setting
that only takes effect at the next start (:data:`~annotator.ui.settings.RESTART_KEYS`)
changed; the caller applies the rest (shortcuts, opacity, autosave, region encoding, cache sizes).
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from annotator.ui.actions import ACTIONS, ActionSpec
from annotator.ui.settings import AUTO, DEVICES, MAX_CACHE_MB, MAX_ISLAND_PX, RESTART_KEYS, Settings, model_types
from annotator.ui.shortcuts_page import CONFLICT_COLOR, ShortcutsPage, display_name

log = logging.getLogger(__name__)

RESTART_NOTE = "* takes effect the next time sam-annotator starts."

_FAMILY = {"mobile_sam": "MobileSAM", "sam1": "SAM", "sam2.1": "SAM 2.1"}
_DEVICE_TEXT = {
    "auto": "auto: CUDA GPU, else Apple GPU (MPS), else CPU",
    "cuda": "cuda: NVIDIA GPU",
    "mps": "mps: Apple GPU",
    "cpu": "cpu",
}


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


def cache_folder_problem(text: str) -> Optional[str]:
    """Why ``text`` cannot be the cache folder (weights and embeddings go under it), or ``None``.

    Empty is the default. Checked at OK because the folder is only used at the
    next start, where a file in its place (or a folder that cannot be made)
    stops every model from loading.
    """
    import os
    from pathlib import Path

    if not text:
        return None
    path = Path(text).expanduser()
    if not path.is_absolute():
        return f"the cache folder “{text}” is not a full path (it would depend on where sam-annotator starts)"
    existing = path
    while not os.path.lexists(existing) and existing.parent != existing:  # (os.path: never raises)
        existing = existing.parent
    if not os.path.isdir(existing):
        if existing == path:
            return f"the cache folder {path} is not a folder (a file is there)"
        return f"{existing} is not a folder, so the cache folder {path} cannot be made in it"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} cannot be written, so the cache folder {path} cannot be " + (
            "used" if existing == path else "made")
    return None


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

        self.tabs = QTabWidget(self)
        self.tabs.setObjectName("tabs")
        self.general_tab = self._build_general()
        self.cache_tab = self._build_cache()
        page = self.shortcuts_tab = ShortcutsPage(self.specs, settings.shortcuts, self)
        # the page's parts, for callers and tests
        self.table, self.filter_edit, self.key_edits = page.table, page.filter_edit, page.key_edits
        self.editor_label, self.reset_all_button, self._row_of = page.editor_label, page.reset_all_button, page._row_of
        self.pending_shortcuts, self.pending_overrides = page.pending_shortcuts, page.pending_overrides
        self.conflicts, self.select_action, self.set_keys = page.conflicts, page.select_action, page.set_keys
        self.reset_action, self.reset_all = page.reset_action, page.reset_all
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
        page.changed.connect(self._show_conflicts)
        self.cache_dir_edit.textChanged.connect(self._show_conflicts)  # a refused folder's message goes on an edit
        self._show_conflicts()
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

        self.island_spin = QSpinBox(page)
        self.island_spin.setObjectName("islandSpin")
        self.island_spin.setRange(1, MAX_ISLAND_PX)
        self.island_spin.setSingleStep(10)
        self.island_spin.setSuffix(" px")
        self.island_spin.setValue(s.min_island_px)
        self.island_spin.setToolTip("Mask → Remove Small Islands removes the parts of a mask smaller than this.")
        form.addRow("Small islands", self.island_spin)

        self.cleanup_check = QCheckBox("Fill holes and remove small islands of every accepted mask", page)
        self.cleanup_check.setObjectName("cleanupCheck")
        self.cleanup_check.setToolTip("Applied when a clicked or painted mask is accepted (not to proposals).")
        self.cleanup_check.setChecked(s.cleanup_on_accept)
        form.addRow("Cleanup", self.cleanup_check)

        self.region_check = QCheckBox("Encode the region in view when zoomed in on a large image", page)
        self.region_check.setObjectName("regionCheck")
        self.region_check.setToolTip(
            "SAM sees a whole image at 1024 pixels: small objects on a large image come out as blobs. On: once\n"
            "the view is still, the part in view is encoded at up to full resolution and clicks in it use it.\n"
            "Off: every prompt uses the whole image (one encode per image)."
        )
        self.region_check.setChecked(s.region_encoding)
        form.addRow("Large images", self.region_check)

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

        self.image_budget_spin = QSpinBox(page)
        self.image_budget_spin.setObjectName("imageBudgetSpin")
        self.image_budget_spin.setRange(0, MAX_CACHE_MB)
        self.image_budget_spin.setSingleStep(1024)
        self.image_budget_spin.setSuffix(" MB")
        self.image_budget_spin.setSpecialValueText("automatic (a quarter of the memory)")
        self.image_budget_spin.setValue(s.image_budget_mb)
        self.image_budget_spin.setToolTip("An image that takes more memory than this to open (read from its header) "
                                          "is refused with a message, and never loaded in advance.")
        form.addRow("Largest image", self.image_budget_spin)

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

    def _show_conflicts(self) -> None:
        clashes = self.conflicts()
        if clashes:
            self.conflict_label.setText(self.shortcuts_tab.conflict_message(clashes))
            self.conflict_label.show()
        else:
            self.conflict_label.clear()
            self.conflict_label.hide()

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
            "image_budget_mb": self.image_budget_spin.value(),
            "overlay_opacity": self.opacity_slider.value() / 100.0,
            "autosave": self.autosave_check.isChecked(),
            "min_island_px": self.island_spin.value(),
            "cleanup_on_accept": self.cleanup_check.isChecked(),
            "region_encoding": self.region_check.isChecked(),
        }

    def accept(self) -> None:
        """Write the settings and close, unless two actions share a key or the cache folder cannot be one (then
        say why, and stay open)."""
        clashes = self.conflicts()
        if clashes:
            self.tabs.setCurrentWidget(self.shortcuts_tab)
            self.conflict_label.setText("Not saved. " + self.shortcuts_tab.conflict_message(clashes))
            self.conflict_label.show()
            self.select_action(clashes[0][1][-1])
            return
        problem = cache_folder_problem(self.cache_dir_edit.text().strip())
        if problem is not None:
            self.tabs.setCurrentWidget(self.cache_tab)
            self.conflict_label.setText(f"Not saved: {problem}.")
            self.conflict_label.show()
            self.cache_dir_edit.setFocus()
            return
        self._show_conflicts()  # (none: the label goes)
        self._write()
        super().accept()

    def _write(self) -> None:
        s = self.settings
        changed = {k: v for k, v in self.values().items() if v != self._initial[k]}
        self.restart_required = any(k in changed for k in RESTART_KEYS)
        for key, value in changed.items():  # untouched settings stay as stored (or unset: default)
            setattr(s, key, value)
        pending = self.pending_shortcuts()
        for spec in self.specs:
            if self.shortcuts_tab.is_default(spec.name):
                s.reset_shortcut(spec)
            else:
                s.set_shortcuts(spec, pending[spec.name])
        s.sync()


__all__ = ["PreferencesDialog", "cache_folder_problem", "display_name"]
