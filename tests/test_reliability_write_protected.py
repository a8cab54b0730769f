"""A working file the user made read-only (``chmod a-w``) is never replaced, though its folder is writable.

An atomic save renames a new file over the old one, which needs only the
folder's permission: before, a write-protected ``annotations.json`` (a
dataset frozen for a release, a reviewer's copy) was silently overwritten.
Now the save fails with a sentence saying so, the work stays in memory and
dirty, the folder's load notes say it up front, and Save a Copy still works.
The same holds for an export onto a write-protected file. The mode bits are
checked, so this also holds when the tests run as root.
"""

from __future__ import annotations

import io
import contextlib

import numpy as np
import pytest

from annotator.commands import export
from annotator.data import atomic
from annotator.data.atomic import WriteProtectedError, atomic_write_bytes
from annotator.data.document import Dataset
from annotator.data.workfile import SaveError


@pytest.fixture(autouse=True)
def _new_session(monkeypatch):
    monkeypatch.setattr(atomic, "_backed_up", set())


@pytest.fixture
def protected(tmp_path):
    path = tmp_path / "annotations.json"
    ds = Dataset(path)
    rec = ds.ensure_image("a.png", 6, 4)
    cat = ds.add_category("thing")
    ds.add_annotation(ds.make_annotation(rec.id, cat.id, np.eye(4, 6, dtype=bool)))
    ds.save()
    ds.close()
    path.chmod(0o444)
    yield path
    path.chmod(0o644)


def test_a_write_protected_working_file_is_not_overwritten(protected, tmp_path):
    before = protected.read_bytes()
    ds = Dataset.open(protected, lock=True)
    try:
        assert any("write-protected" in note for note in ds.load_notes)
        assert not ds.read_only and ds.locked  # not another writer: the file's permissions
        ds.add_category("new work")
        with pytest.raises(SaveError, match="write-protected") as info:
            ds.save()
        assert "permission denied" not in str(info.value)  # our sentence, not the generic one
        assert ds.dirty
        assert protected.read_bytes() == before
        assert protected.stat().st_mode & 0o777 == 0o444
        copy = ds.save_copy(tmp_path / "copy.json")  # the work can still be kept
        assert "new work" in copy.read_text()
        protected.chmod(0o644)  # the user makes it writable again: the next save goes through
        ds.save()
        assert not ds.dirty and "new work" in protected.read_text()
    finally:
        ds.close()


def test_a_writable_file_gets_no_note(tmp_path):
    path = tmp_path / "annotations.json"
    Dataset(path).save()
    assert Dataset.open(path).load_notes == []


def test_atomic_write_refuses_a_write_protected_file_and_leaves_no_temp(protected):
    before = protected.read_bytes()
    with pytest.raises(WriteProtectedError):
        atomic_write_bytes(protected, b"{}")
    assert protected.read_bytes() == before
    assert [p.name for p in protected.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_export_onto_a_write_protected_file_is_refused(protected, tmp_path):
    out = tmp_path / "release.json"
    out.write_text("{}")
    out.chmod(0o444)
    try:
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = export.main([str(protected), "-o", str(out)])
        assert code == 1 and "write-protected" in err.getvalue()
        assert out.read_text() == "{}"
    finally:
        out.chmod(0o644)
