"""annotator.ui.settings: typed QSettings with defaults, bad values ignored, shortcut overrides.

Every test uses an ini file under ``tmp_path``; the user's settings are never touched.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QMainWindow

from annotator.ui import actions
from annotator.ui.settings import (
    DEFAULT_MEMORY_MB,
    DEFAULT_OPACITY,
    ENV_SETTINGS,
    Settings,
    apply_shortcuts,
    parse_keys,
)

P = QKeySequence.SequenceFormat.PortableText


@pytest.fixture
def ini(tmp_path) -> Path:
    return tmp_path / "settings.ini"


def write_ini(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------------------
# typed keys
# --------------------------------------------------------------------------------------


def test_defaults_on_an_empty_store_and_reading_writes_nothing(ini):
    s = Settings(ini)
    assert s.path == str(ini)
    assert (s.model, s.device, s.cache_dir) == ("auto", "auto", "")
    assert (s.cache_memory_mb, s.cache_disk_mb) == (DEFAULT_MEMORY_MB, 0)
    assert s.overlay_opacity == DEFAULT_OPACITY
    assert s.autosave is True
    assert s.shortcuts == {}
    assert s.model_type() is None and s.cache_root() is None
    assert s.memory_bytes() == DEFAULT_MEMORY_MB * 2**20 and s.disk_bytes() is None
    assert s.sync()
    assert not ini.exists()


def test_values_round_trip_through_the_file(ini, tmp_path):
    s = Settings(ini)
    s.model = "vit_t"
    s.device = "cuda:1"
    s.cache_dir = tmp_path / "cache"
    s.cache_memory_mb = 1024
    s.cache_disk_mb = 2048
    s.overlay_opacity = 0.7
    s.autosave = False
    assert s.sync()
    text = ini.read_text()
    assert "overlay_opacity=0.7" in text and "autosave=false" in text

    fresh = Settings(ini)
    assert fresh.model == "vit_t" and fresh.model_type() == "vit_t"
    assert fresh.device == "cuda:1"
    assert fresh.cache_dir == str(tmp_path / "cache") and fresh.cache_root() == tmp_path / "cache"
    assert fresh.cache_memory_mb == 1024 and fresh.memory_bytes() == 1024 * 2**20
    assert fresh.cache_disk_mb == 2048 and fresh.disk_bytes() == 2048 * 2**20
    assert fresh.overlay_opacity == pytest.approx(0.7)
    assert fresh.autosave is False


def test_hand_written_values_are_parsed(ini):
    write_ini(ini, "[General]\nmodel=vit_b\ndevice=CPU\noverlay_opacity=0.25\nautosave=no\ncache_memory_mb=256\n")
    s = Settings(ini)
    assert (s.model, s.device, s.overlay_opacity, s.autosave, s.cache_memory_mb) == ("vit_b", "cpu", 0.25, False, 256)


def test_bad_stored_values_fall_back_to_defaults(ini, caplog):
    write_ini(
        ini,
        "[General]\n"
        "model=vit_z\n"
        "device=tpu\n"
        "cache_dir=a, b\n"  # an ini list, not a folder
        "cache_memory_mb=-5\n"
        "cache_disk_mb=1e99\n"
        "overlay_opacity=nan\n"
        "autosave=maybe\n"
        "[shortcuts]\n"
        "next_candidate=[\"N\"\n"
        "undo=\"[1, 2]\"\n"
        "redo=Foo+Bar\n"
        "no_such_action=X\n",
    )
    s = Settings(ini)
    with caplog.at_level(logging.WARNING, logger="annotator.ui.settings"):
        for _ in range(2):
            assert (s.model, s.device, s.cache_dir) == ("auto", "auto", "")
            assert (s.cache_memory_mb, s.cache_disk_mb) == (DEFAULT_MEMORY_MB, 0)
            assert s.overlay_opacity == DEFAULT_OPACITY
            assert s.autosave is True
            assert s.shortcuts == {}
            assert s.shortcuts_for("next_candidate") == ("Tab",)
            assert s.shortcuts_for("redo") == ("Ctrl+Shift+Z", "Ctrl+Y")
    warned = [r.getMessage() for r in caplog.records]
    for key in ("model", "device", "cache_memory_mb", "overlay_opacity", "autosave", "shortcuts/next_candidate",
                "shortcuts/undo", "shortcuts/redo"):
        assert sum(f" {key}=" in m for m in warned) == 1, (key, warned)  # once, not on every read


def test_a_damaged_file_reads_as_defaults(ini):
    ini.write_bytes(b"\xff\xfe\x00garbage[[[\n=\n\x00\x01")
    s = Settings(ini)
    assert s.overlay_opacity == DEFAULT_OPACITY and s.shortcuts == {}


def test_writing_a_bad_value_raises(ini):
    s = Settings(ini)
    for key, value in [("model", "vit_z"), ("device", "tpu"), ("cache_memory_mb", -1), ("cache_disk_mb", 1.5),
                       ("overlay_opacity", 1.5), ("overlay_opacity", True), ("autosave", "perhaps")]:
        with pytest.raises(ValueError, match=key):
            setattr(s, key, value)
    assert s.sync() and not ini.exists()


def test_reset_and_defaults(ini):
    s = Settings(ini)
    s.overlay_opacity = 0.1
    s.reset("overlay_opacity")
    assert s.overlay_opacity == Settings.default("overlay_opacity") == DEFAULT_OPACITY
    with pytest.raises(KeyError):
        s.reset("nope")


def test_environment_variable_names_the_file(ini, monkeypatch):
    monkeypatch.setenv(ENV_SETTINGS, str(ini))
    s = Settings()
    assert s.path == str(ini)
    s.autosave = False
    s.sync()
    assert Settings(ini).autosave is False


def test_an_explicit_qsettings_is_used(ini):
    qs = QSettings(str(ini), QSettings.Format.IniFormat)
    Settings(qs).cache_disk_mb = 99
    assert qs.value("cache_disk_mb") == 99


# --------------------------------------------------------------------------------------
# shortcuts
# --------------------------------------------------------------------------------------


def test_parse_keys_forms():
    assert parse_keys('["n", "Ctrl+,"]') == ("N", "Ctrl+,")
    assert parse_keys("[]") == ()
    assert parse_keys("F2") == ("F2",)
    assert parse_keys(["N", "M"]) == ("N", "M")  # an ini list: next_candidate=N, M
    assert parse_keys(['["N"', '"M"]']) == ("N", "M")  # an unquoted JSON list in an ini file
    assert parse_keys(["N", "Foo+Bar", "N"]) == ("N",)
    assert parse_keys("Foo+Bar") is None
    assert parse_keys('{"a": 1}') is None
    assert parse_keys(5) is None


def test_overrides_are_stored_and_defaults_are_not(ini):
    s = Settings(ini)
    s.set_shortcuts("next_candidate", ["n"])
    s.set_shortcuts("save", ["Ctrl+S"])  # its default: nothing stored
    s.set_shortcuts("choose_checkpoint", ["Ctrl+L"])
    s.set_shortcuts("help", [])  # no key at all
    assert s.sync()
    fresh = Settings(ini)
    assert fresh.shortcuts == {"next_candidate": ("N",), "choose_checkpoint": ("Ctrl+L",), "help": ()}
    assert fresh.shortcuts_for(actions.spec("next_candidate")) == ("N",)
    assert fresh.shortcuts_for("save") == ("Ctrl+S",)
    assert fresh.shortcuts_for("help") == ()
    assert fresh.is_overridden("help") and not fresh.is_overridden("save")
    fresh.reset_shortcut("next_candidate")
    assert fresh.shortcuts_for("next_candidate") == ("Tab",)
    fresh.reset_all_shortcuts()
    assert fresh.shortcuts == {}


def test_set_shortcuts_rejects_bad_input(ini):
    s = Settings(ini)
    with pytest.raises(KeyError, match="nope"):
        s.set_shortcuts("nope", ["N"])
    with pytest.raises(ValueError, match="Foo"):
        s.set_shortcuts("undo", ["Foo+Bar"])
    with pytest.raises(TypeError):
        s.set_shortcuts("undo", "N")
    with pytest.raises(ValueError):
        s.shortcuts = {"undo": ["N"], "redo": ["Foo+Bar"]}
    assert s.shortcuts == {}  # the bulk setter checks everything first
    s.shortcuts = {"undo": ["U"], "redo": ["Y"]}  # (R: refine with SAM)
    assert s.shortcuts == {"undo": ("U",), "redo": ("Y",)}


def test_conflicts_consider_defaults_overrides_aliases_and_canvas_keys(ini):
    s = Settings(ini)
    assert s.conflicts() == []
    assert s.conflicts({"next_candidate": ["D"]}) == [("D", ["next_image", "next_candidate"])]
    assert s.conflicts({"fit_view": ["Space"]}) == [("Space", ["accept", "fit_view"])]
    # previous_candidate keeps its Shift+Backtab alias while it is not overridden...
    clash = [("Shift+Backtab", ["next_candidate", "previous_candidate"])]
    assert s.conflicts({"next_candidate": ["Shift+Backtab"]}) == clash
    # ...and loses it once it is
    assert s.conflicts({"next_candidate": ["Shift+Backtab"], "previous_candidate": ["P"]}) == []
    # swapping two keys is fine
    assert s.conflicts({"next_candidate": ["D"], "next_image": ["Tab"]}) == []
    # stored overrides count too
    s.set_shortcuts("undo", ["U"])
    assert s.conflicts({"redo": ["U"]}) == [("U", ["undo", "redo"])]


def test_stored_overrides_that_clash_fall_back_to_defaults(ini, caplog):
    write_ini(ini, "[shortcuts]\nnext_candidate=D\nundo=U\n")
    with caplog.at_level(logging.WARNING, logger="annotator.ui.settings"):
        s = Settings(ini)
        assert s.shortcuts == {"undo": ("U",)}
        assert s.shortcuts_for("next_candidate") == ("Tab",)
    assert any("next_candidate" in r.getMessage() and "another action" in r.getMessage() for r in caplog.records)
    write_ini(ini, "[shortcuts]\nnext_candidate=D\nnext_image=Tab\n")
    assert Settings(ini).shortcuts == {"next_candidate": ("D",), "next_image": ("Tab",)}


@pytest.mark.gui
def test_apply_shortcuts_sets_keys_aliases_and_tooltips(qtbot, ini):
    window = QMainWindow()
    qtbot.addWidget(window)
    acts = actions.build_actions(window, {})
    s = Settings(ini)
    s.set_shortcuts("next_candidate", ["N", "Ctrl+Alt+,"])
    s.set_shortcuts("previous_candidate", ["P"])
    assert apply_shortcuts(acts, s) == {"next_candidate": ("N", "Ctrl+Alt+,"), "previous_candidate": ("P",)}

    def keys(name):
        return [k.toString(P) for k in acts[name].shortcuts()]

    assert keys("next_candidate") == ["N", "Ctrl+Alt+,"]
    assert keys("previous_candidate") == ["P"]  # the alias goes with the default
    assert keys("redo") == ["Ctrl+Shift+Z", "Ctrl+Y"]
    assert "N" in acts["next_candidate"].toolTip() and "Tab" not in acts["next_candidate"].toolTip()

    s.reset_shortcut("previous_candidate")
    apply_shortcuts(acts, s)
    assert keys("previous_candidate") == ["Shift+Tab", "Shift+Backtab"]


def test_effective_specs_feed_the_help(ini):
    s = Settings(ini)
    s.set_shortcuts("next_candidate", ["N"])
    rows = {what: keys for _, keys, what in actions.help_rows(s.effective_specs())}
    assert rows[actions.spec("next_candidate").help] == actions.key_text("N")
    assert rows[actions.spec("previous_candidate").help] == actions.key_text("Shift+Tab")
