"""``set_aside``: the other program's version is copied beside the working file before "Overwrite with Mine"."""

from __future__ import annotations

import os

import pytest

from annotator.data.workfile import SaveError, conflict_path, set_aside


def test_the_file_is_copied_beside_it_under_a_fresh_name(tmp_path):
    p = tmp_path / "annotations.json"
    p.write_bytes(b'{"theirs": 1}')
    first, second = set_aside(p), set_aside(p)
    assert first != second and first.parent == second.parent == tmp_path  # never over an earlier copy
    assert ".theirs-" in first.name and first.suffix == ".json"
    assert first.read_bytes() == second.read_bytes() == p.read_bytes()


def test_nothing_there_gives_none(tmp_path):
    assert set_aside(tmp_path / "annotations.json") is None


def test_a_fifo_is_not_read(tmp_path):
    p = tmp_path / "annotations.json"
    os.mkfifo(p)
    with pytest.raises(SaveError, match="cannot be read"):
        set_aside(p)  # (opening a FIFO to read would hang: refused instead)


def test_the_copys_name_fits_the_name_limit(tmp_path):
    p = tmp_path / ("a" * 250 + ".json")
    p.write_bytes(b"{}")
    copy = set_aside(p)
    assert len(os.fsencode(copy.name)) <= 255 and copy.read_bytes() == b"{}"
    assert conflict_path(p, tag="theirs").name != copy.name
