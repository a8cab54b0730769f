"""The preferences dialog, driven as a user would with qtbot.

The main check (issue 10): a shortcut changed in the dialog takes effect in a
window whose actions come from :data:`annotator.ui.actions.ACTIONS` (built by
:func:`annotator.ui.actions.build_actions`, as the main window builds them) and
persists in the settings file. Settings live in an ini file under ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDialog, QMainWindow, QWidget

from annotator.ui import actions
from annotator.ui.preferences import PreferencesDialog
from annotator.ui.settings import DEFAULT_OPACITY, Settings, apply_shortcuts

pytestmark = pytest.mark.gui

LEFT = Qt.MouseButton.LeftButton


@pytest.fixture
def ini(tmp_path) -> Path:
    return tmp_path / "settings.ini"


class Harness:
    """A small main window whose actions come from ACTIONS; records which handlers ran."""

    def __init__(self, qtbot) -> None:
        self.qtbot = qtbot
        self.triggered: List[str] = []
        self.window = QMainWindow()
        qtbot.addWidget(self.window)
        self.focus = QWidget(self.window)  # a focusable canvas stand-in that types no text
        self.focus.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.window.setCentralWidget(self.focus)
        handlers = {s.name: (lambda n=s.name: self.triggered.append(n)) for s in actions.ACTIONS}
        self.actions: Dict[str, QAction] = actions.build_actions(self.window, handlers)
        menus = {m: self.window.menuBar().addMenu(m) for m in actions.MENUS}
        for s in actions.ACTIONS:
            menus[s.menu].addAction(self.actions[s.name])
        self.window.show()
        self.activate()

    def activate(self) -> None:
        self.window.activateWindow()
        self.qtbot.waitUntil(self.window.isActiveWindow)
        self.focus.setFocus()

    def press(self, key: Qt.Key, modifier=Qt.KeyboardModifier.NoModifier) -> List[str]:
        """Press ``key`` in the window; the names of the actions it triggered."""
        self.activate()
        self.triggered.clear()
        self.qtbot.keyClick(self.focus, key, modifier)
        return list(self.triggered)


def open_dialog(qtbot, settings: Settings, parent=None, **kwargs) -> PreferencesDialog:
    dialog = PreferencesDialog(settings, parent=parent, **kwargs)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def click_row(qtbot, dialog: PreferencesDialog, name: str) -> None:
    dialog.tabs.setCurrentWidget(dialog.shortcuts_tab)
    table = dialog.table
    row = next(r for r in range(table.rowCount()) if table.item(r, 0).data(Qt.ItemDataRole.UserRole) == name)
    table.scrollToItem(table.item(row, 0))
    qtbot.mouseClick(table.viewport(), LEFT, pos=table.visualItemRect(table.item(row, 0)).center())
    assert dialog.editor_label.text() == f"Keys for “{table.item(row, 0).text()}”:"


def record_key(qtbot, dialog: PreferencesDialog, slot: int, key: Qt.Key, modifier=Qt.KeyboardModifier.NoModifier):
    edit = dialog.key_edits[slot]
    edit.setFocus()
    qtbot.keyClick(edit, key, modifier)


# --------------------------------------------------------------------------------------
# the check
# --------------------------------------------------------------------------------------


def test_a_changed_shortcut_takes_effect_and_persists(qtbot, ini):
    settings = Settings(ini)
    ui = Harness(qtbot)
    apply_shortcuts(ui.actions, settings)
    assert ui.press(Qt.Key.Key_Tab) == ["next_candidate"]  # the default works to begin with
    assert ui.press(Qt.Key.Key_N) == []

    dialog = open_dialog(qtbot, settings, parent=ui.window)
    click_row(qtbot, dialog, "next_candidate")
    assert dialog.key_edits[0].keySequence().toString() == "Tab"
    record_key(qtbot, dialog, 0, Qt.Key.Key_N)
    assert dialog.pending_overrides() == {"next_candidate": ("N",)}
    assert "N" in dialog.table.item(dialog.table.currentRow(), 2).text()
    assert settings.shortcuts == {}  # nothing is written before OK
    qtbot.mouseClick(dialog.ok_button, LEFT)
    assert dialog.result() == QDialog.DialogCode.Accepted and not dialog.isVisible()
    assert dialog.restart_required is False

    apply_shortcuts(ui.actions, settings)
    assert ui.press(Qt.Key.Key_N) == ["next_candidate"]
    assert ui.press(Qt.Key.Key_Tab) == []  # the old key is free again
    assert ui.press(Qt.Key.Key_D) == ["next_image"]  # the others are unchanged

    # persisted: on disk, and in a fresh Settings applied to a fresh window
    assert "next_candidate" in ini.read_text()
    fresh = Settings(ini)
    assert fresh.shortcuts == {"next_candidate": ("N",)}
    again = Harness(qtbot)
    assert again.press(Qt.Key.Key_N) == []  # built from the table: the default keys
    apply_shortcuts(again.actions, fresh)
    assert again.press(Qt.Key.Key_N) == ["next_candidate"]
    assert again.press(Qt.Key.Key_Tab) == []


def test_a_conflicting_shortcut_is_refused_with_a_message(qtbot, ini):
    settings = Settings(ini)
    dialog = open_dialog(qtbot, settings)
    assert dialog.conflict_label.isHidden()
    click_row(qtbot, dialog, "next_candidate")
    record_key(qtbot, dialog, 0, Qt.Key.Key_D)  # D is Next Image
    assert dialog.conflicts() == [("D", ["next_image", "next_candidate"])]
    assert dialog.conflict_label.isVisible()
    assert "Next Candidate" in dialog.conflict_label.text() and "Next Image" in dialog.conflict_label.text()
    table = dialog.table
    for name in ("next_candidate", "next_image"):
        row = dialog._row_of[name]
        assert table.item(row, 2).foreground().color() == dialog.conflict_label.palette().color(
            dialog.conflict_label.foregroundRole()
        )
        assert "also used by" in table.item(row, 2).toolTip()

    dialog.tabs.setCurrentWidget(dialog.general_tab)
    qtbot.mouseClick(dialog.ok_button, LEFT)
    assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted
    assert dialog.tabs.currentWidget() is dialog.shortcuts_tab
    assert dialog.conflict_label.text().startswith("Not saved.")
    assert settings.shortcuts == {} and not ini.exists()

    # Reset on the row resolves it; OK then closes and stores nothing (the default needs no override)
    qtbot.mouseClick(table.cellWidget(dialog._row_of["next_candidate"], 3), LEFT)
    assert dialog.conflicts() == [] and dialog.conflict_label.isHidden()
    assert dialog.key_edits[0].keySequence().toString() == "Tab"
    qtbot.mouseClick(dialog.ok_button, LEFT)
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert Settings(ini).shortcuts == {}


def test_a_canvas_key_conflicts_too(qtbot, ini):
    dialog = open_dialog(qtbot, Settings(ini))
    click_row(qtbot, dialog, "fit_view")
    record_key(qtbot, dialog, 0, Qt.Key.Key_Space)
    assert dialog.conflicts() == [("Space", ["accept", "fit_view"])]
    qtbot.mouseClick(dialog.ok_button, LEFT)
    assert dialog.isVisible()


def test_cancel_changes_nothing(qtbot, ini, tmp_path):
    settings = Settings(ini)
    settings.overlay_opacity = 0.3
    settings.set_shortcuts("undo", ["U"])
    assert settings.sync()
    before = ini.read_bytes()

    dialog = open_dialog(qtbot, settings, clear_cache=None)
    assert dialog.opacity_slider.value() == 30
    dialog.model_combo.setCurrentIndex(dialog.model_combo.findData("vit_b"))
    dialog.device_combo.setCurrentIndex(dialog.device_combo.findData("cpu"))
    dialog.opacity_slider.setValue(90)
    dialog.autosave_check.setChecked(False)
    dialog.cache_dir_edit.setText(str(tmp_path / "elsewhere"))
    dialog.memory_spin.setValue(64)
    dialog.disk_spin.setValue(100)
    click_row(qtbot, dialog, "next_candidate")
    record_key(qtbot, dialog, 0, Qt.Key.Key_N)
    qtbot.mouseClick(dialog.reset_all_button, LEFT)  # also resets undo back to Ctrl+Z, in the dialog only
    assert dialog.pending_overrides() == {}
    qtbot.mouseClick(dialog.cancel_button, LEFT)
    assert dialog.result() == QDialog.DialogCode.Rejected

    assert ini.read_bytes() == before
    fresh = Settings(ini)
    assert fresh.overlay_opacity == 0.3 and fresh.shortcuts == {"undo": ("U",)}
    assert (fresh.model, fresh.device, fresh.autosave, fresh.cache_dir) == ("auto", "auto", True, "")


def test_general_and_cache_values_round_trip(qtbot, ini, tmp_path):
    settings = Settings(ini)
    dialog = open_dialog(qtbot, settings)
    assert dialog.opacity_slider.value() == round(DEFAULT_OPACITY * 100)
    assert dialog.autosave_check.isChecked()
    dialog.tabs.setCurrentWidget(dialog.general_tab)
    dialog.opacity_slider.setFocus()
    for _ in range(3):
        qtbot.keyClick(dialog.opacity_slider, Qt.Key.Key_PageUp)  # +10% each
    assert dialog.opacity_value.text() == "75%"
    dialog.autosave_check.setFocus()
    qtbot.keyClick(dialog.autosave_check, Qt.Key.Key_Space)
    assert not dialog.autosave_check.isChecked()
    dialog.memory_spin.setValue(128)
    dialog.disk_spin.setValue(4096)
    qtbot.mouseClick(dialog.ok_button, LEFT)
    assert dialog.result() == QDialog.DialogCode.Accepted and dialog.restart_required is False

    fresh = Settings(ini)
    assert fresh.overlay_opacity == pytest.approx(0.75)
    assert fresh.autosave is False
    assert (fresh.cache_memory_mb, fresh.cache_disk_mb) == (128, 4096)
    text = ini.read_text()
    assert "model" not in text and "device" not in text  # untouched settings are not written

    again = open_dialog(qtbot, fresh)
    assert again.opacity_slider.value() == 75 and not again.autosave_check.isChecked()
    assert again.disk_spin.value() == 4096
    again.model_combo.setCurrentIndex(again.model_combo.findData("vit_t"))
    again.cache_dir_edit.setText(str(tmp_path / "cache"))
    qtbot.mouseClick(again.ok_button, LEFT)
    assert again.restart_required is True
    last = Settings(ini)
    assert last.model == "vit_t" and last.cache_root() == tmp_path / "cache"
    assert last.overlay_opacity == pytest.approx(0.75)


def test_bad_values_in_the_file_show_as_defaults(qtbot, ini):
    ini.write_text(
        "[General]\nmodel=vit_z\ndevice=tpu\noverlay_opacity=2.5\nautosave=maybe\ncache_memory_mb=lots\n"
        "[shortcuts]\nnext_candidate=Foo+Bar\nundo=D\n",  # undo=D clashes with Next Image
        encoding="utf-8",
    )
    dialog = open_dialog(qtbot, Settings(ini))
    assert dialog.model_combo.currentData() == "auto" and dialog.device_combo.currentData() == "auto"
    assert dialog.opacity_slider.value() == round(DEFAULT_OPACITY * 100)
    assert dialog.autosave_check.isChecked() and dialog.memory_spin.value() == 512
    assert dialog.pending_overrides() == {} and dialog.conflicts() == []
    qtbot.mouseClick(dialog.ok_button, LEFT)
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert Settings(ini).shortcuts == {}  # OK wrote the defaults back: the bad overrides are gone


def test_several_keys_per_action_and_clearing_one(qtbot, ini):
    settings = Settings(ini)
    dialog = open_dialog(qtbot, settings)
    click_row(qtbot, dialog, "next_image")
    assert [e.keySequence().toString() for e in dialog.key_edits] == ["D", "Right", "PgDown"]
    record_key(qtbot, dialog, 1, Qt.Key.Key_L)
    dialog.key_edits[2].clear()
    assert dialog.pending_shortcuts()["next_image"] == ("D", "L")
    click_row(qtbot, dialog, "choose_checkpoint")  # no key by default
    record_key(qtbot, dialog, 0, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier)
    assert dialog.pending_shortcuts()["choose_checkpoint"] == ("Ctrl+L",)
    assert dialog.table.cellWidget(dialog._row_of["choose_checkpoint"], 3).isEnabled()
    qtbot.mouseClick(dialog.ok_button, LEFT)
    assert Settings(ini).shortcuts == {"next_image": ("D", "L"), "choose_checkpoint": ("Ctrl+L",)}


def test_filter_hides_rows(qtbot, ini):
    dialog = open_dialog(qtbot, Settings(ini))
    dialog.tabs.setCurrentWidget(dialog.shortcuts_tab)
    qtbot.keyClicks(dialog.filter_edit, "candidate")
    visible = [s.name for s in actions.ACTIONS if not dialog.table.isRowHidden(dialog._row_of[s.name])]
    assert visible == ["next_candidate", "previous_candidate", "candidate_1", "candidate_2", "candidate_3"]
    dialog.select_action("undo")  # clears a filter that hides the row
    assert not dialog.table.isRowHidden(dialog._row_of["undo"]) and dialog.filter_edit.text() == ""


def test_clear_cache_button_calls_the_callback(qtbot, ini):
    calls = []
    dialog = open_dialog(qtbot, Settings(ini), clear_cache=lambda: calls.append(1) or "Removed 3 embeddings.")
    dialog.tabs.setCurrentWidget(dialog.cache_tab)
    qtbot.mouseClick(dialog.clear_cache_button, LEFT)
    assert calls == [1] and dialog.clear_cache_status.text() == "Removed 3 embeddings."

    def broken():
        raise OSError("disk on fire")

    failing = open_dialog(qtbot, Settings(ini), clear_cache=broken)
    failing.tabs.setCurrentWidget(failing.cache_tab)
    qtbot.mouseClick(failing.clear_cache_button, LEFT)
    assert "disk on fire" in failing.clear_cache_status.text()
    assert not open_dialog(qtbot, Settings(ini)).clear_cache_button.isEnabled()


def test_browse_fills_the_cache_folder(qtbot, ini, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(tmp_path)))
    dialog = open_dialog(qtbot, Settings(ini))
    dialog.tabs.setCurrentWidget(dialog.cache_tab)
    qtbot.mouseClick(dialog.findChild(QWidget, "cacheBrowse"), LEFT)
    assert dialog.cache_dir_edit.text() == str(tmp_path)
