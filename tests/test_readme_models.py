"""The README says what the program does: its model table is the registry's, its cache order the code's."""

from __future__ import annotations

import re
from pathlib import Path

from annotator.commands.common import format_size
from sam_core.checkpoints import CHECKPOINTS

README = Path(__file__).resolve().parents[1] / "README.md"


def _model_rows():
    rows = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\| `([^`]+)` \| [^|]+ \| `([^`]+)` \| ([^|]+) \|$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3).strip())
    return rows


def test_the_readme_model_table_is_the_registry():
    rows = _model_rows()
    assert set(rows) == set(CHECKPOINTS), "every registered model has exactly one README row"
    for name, spec in CHECKPOINTS.items():
        assert rows[name] == (spec.file_name, format_size(spec.size)), name


def test_format_size_is_decimal():
    assert format_size(40_728_226) == "40.7 MB"
    assert format_size(2_564_550_879) == "2.6 GB"
    assert format_size(999) == "999 B" and format_size(None) == "-"


def test_the_readme_cache_order_is_the_flag_first(tmp_path, monkeypatch):
    from sam_core.checkpoints import cache_dir

    monkeypatch.setenv("SAM_ANNOTATOR_CACHE", str(tmp_path / "env"))
    assert cache_dir(tmp_path / "flag") == tmp_path / "flag"  # --cache-dir wins
    assert cache_dir(None) == tmp_path / "env"
    assert "Cache folder: `--cache-dir`, else `$SAM_ANNOTATOR_CACHE`" in README.read_text(encoding="utf-8")
