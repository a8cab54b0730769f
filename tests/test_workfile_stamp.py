"""annotator.data.workfile: the external-change check compares the file's bytes (it no longer hashes them)."""

from __future__ import annotations

import os

import pytest

from annotator.data.workfile import ConflictError, WorkingFile


def _rewrite_in_place(path, data):
    """Change the bytes without changing size, inode or mtime (a racy write inside the timestamp's resolution)."""
    st = os.stat(path)
    with open(path, "r+b") as fh:
        fh.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_same_size_change_hidden_behind_the_same_mtime_is_seen(tmp_path):
    path = tmp_path / "annotations.json"
    wf = WorkingFile(path, check_external=True)
    wf.write(b'{"a": 1}\n')
    assert not wf.changed_on_disk()
    _rewrite_in_place(path, b'{"a": 2}\n')
    assert wf.changed_on_disk()
    with pytest.raises(ConflictError):
        wf.write(b'{"a": 3}\n')
    assert path.read_bytes() == b'{"a": 2}\n'  # theirs kept


def test_the_same_bytes_written_again_by_another_program_are_not_a_conflict(tmp_path):
    path = tmp_path / "annotations.json"
    wf = WorkingFile(path, check_external=True)
    wf.write(b'{"a": 1}\n')
    path.unlink()
    path.write_bytes(b'{"a": 1}\n')  # new inode and times, same content
    assert not wf.changed_on_disk()
    wf.write(b'{"a": 4}\n')
    assert path.read_bytes() == b'{"a": 4}\n'


def test_the_stamp_does_not_print_the_whole_file(tmp_path):
    path = tmp_path / "annotations.json"
    wf = WorkingFile(path, check_external=True)
    wf.write(b"x" * 10_000)
    assert len(repr(wf._known)) < 300


@pytest.mark.parametrize("keep", [1 << 30, 4])
def test_a_large_file_keeps_its_digest_not_its_bytes_and_is_checked_all_the_same(tmp_path, monkeypatch, keep):
    """Keeping the bytes costs the file's size for the whole session: past KEEP_BYTES the stamp holds a digest."""
    from annotator.data import filestamp

    monkeypatch.setattr(filestamp, "KEEP_BYTES", keep)
    path = tmp_path / "annotations.json"
    wf = WorkingFile(path, check_external=True)
    wf.write(b'{"a": 1}\n')
    assert (wf._known.content == b'{"a": 1}\n') == (keep > 9) and (wf._known.digest is None) == (keep > 9)
    path.unlink()
    path.write_bytes(b'{"a": 1}\n')  # same content, another file
    assert not wf.changed_on_disk()
    _rewrite_in_place(path, b'{"a": 2}\n')
    assert wf.changed_on_disk()
