"""Every writer other than the working file's own document respects the one-writer lock.

A window (here: a real second process holding ``Dataset.open(..., lock=True)``)
has a folder open. ``sam-annotator import`` into its working file,
``sam-annotator export`` onto it, and another document's Save As or Save a
Copy onto it must not write under it: all are refused, naming the process,
and the file stays byte for byte. Once the window has closed, they work; an
export over an existing COCO file backs it up first.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator.commands import export, importer
from annotator.data import atomic
from annotator.data.document import Dataset
from annotator.data.lock import WorkingFileLock, lock_path
from annotator.data.replacing import replacing
from annotator.data.workfile import SaveError

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX processes")

ROOT = Path(__file__).resolve().parents[1]

_WINDOW = r"""
import sys
from annotator.data.document import Dataset
ds = Dataset.open(sys.argv[1], lock=True)
print("locked" if ds.locked else "not locked", flush=True)
sys.stdin.readline()  # stay open until told
ds.close()
"""


@pytest.fixture(autouse=True)
def _new_session(monkeypatch):
    monkeypatch.setattr(atomic, "_backed_up", set())


@pytest.fixture
def folder(tmp_path):
    """A folder with one image, its working file (one annotation) and a labelme file to import."""
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    ds = Dataset(tmp_path / "annotations.json")
    rec = ds.ensure_image("a.png", 30, 20)
    cat = ds.add_category("dog")
    mask = np.zeros((20, 30), bool)
    mask[2:6, 2:6] = True
    ds.add_annotation(ds.make_annotation(rec.id, cat.id, mask))
    ds.save()
    shape = {"label": "cat", "points": [[10, 10], [20, 10], [20, 18]], "shape_type": "polygon"}
    (tmp_path / "a.json").write_text(json.dumps(
        {"version": "5.0.0", "shapes": [shape], "imagePath": "a.png", "imageHeight": 20, "imageWidth": 30}
    ))  # fmt: skip
    return tmp_path


@contextlib.contextmanager
def _window(path: Path):
    proc = subprocess.Popen([sys.executable, "-c", _WINDOW, str(path)], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"locked"
        yield proc
    finally:
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        proc.wait(timeout=60)
        proc.stdin.close()
        proc.stdout.close()


def _run(module, argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = module.main(argv)
    return code, out.getvalue(), err.getvalue()


def _import_argv(folder: Path):
    return [str(folder / "a.json"), "--format", "labelme", "-o", str(folder / "annotations.json")]


def test_import_into_a_working_file_open_in_a_window_is_refused(folder):
    working = folder / "annotations.json"
    before = working.read_bytes()
    with _window(working) as proc:
        code, stdout, stderr = _run(importer, _import_argv(folder))
        assert code == 1 and stdout == ""
        assert f"process {proc.pid}" in stderr and "nothing was imported" in stderr
        assert working.read_bytes() == before
        assert list(folder.glob("annotations.json.*.bak")) == []
    assert not lock_path(working).exists()  # the window released it; the refused import left none either
    code, stdout, stderr = _run(importer, _import_argv(folder))  # the window is closed: now it works
    assert code == 0, stderr
    assert len(Dataset.open(working).annotations) == 2
    assert not lock_path(working).exists()  # and the import released its own lock


def test_export_onto_a_working_file_open_in_a_window_is_refused(folder, tmp_path):
    working = folder / "annotations.json"
    before = working.read_bytes()
    with _window(working) as proc:
        # onto itself, and from another file onto it
        other = tmp_path / "other" / "annotations.json"
        other.parent.mkdir()
        other.write_bytes(before)
        for source in (working, other):
            code, stdout, stderr = _run(export, [str(source), "-o", str(working)])
            assert code == 1 and stdout == ""
            assert f"process {proc.pid}" in stderr and "not overwritten" in stderr
            assert working.read_bytes() == before
        # through a symlink to it, too
        link = tmp_path / "link.json"
        link.symlink_to(working)
        code, _, stderr = _run(export, [str(other), "-o", str(link)])
        assert code == 1 and "not overwritten" in stderr
        assert working.read_bytes() == before


def test_an_export_over_an_existing_coco_file_backs_it_up(folder, tmp_path):
    out = tmp_path / "train.json"
    out.write_bytes(b'{"an": "earlier export, or another dataset"}')
    code, stdout, stderr = _run(export, [str(folder / "annotations.json"), "-o", str(out)])
    assert code == 0, stderr
    backups = list(tmp_path.glob("train.json.*.bak"))
    assert len(backups) == 1 and backups[0].read_bytes() == b'{"an": "earlier export, or another dataset"}'
    assert f"backed up as {backups[0].name}" in stdout
    assert len(json.loads(out.read_text())["annotations"]) == 1
    assert not lock_path(out).exists()


def test_replacing_a_new_file_backs_nothing_up_and_releases_its_lock(tmp_path):
    target = tmp_path / "new.json"
    with replacing(target) as backup:
        assert backup is None
        assert lock_path(target).exists()
        target.write_text("{}")
    assert not lock_path(target).exists()
    with WorkingFileLock.acquire(target):  # free again
        pass


def test_save_as_or_a_copy_onto_a_working_file_open_in_a_window_is_refused(folder, tmp_path, monkeypatch):
    working = folder / "annotations.json"
    before = working.read_bytes()
    mine = Dataset(tmp_path / "mine.json")
    assert mine.acquire_lock() is None  # a window's document: it holds its own file
    mine.add_category("my work")
    with _window(working) as proc:
        for write in (mine.save_copy, mine.save):
            with pytest.raises(SaveError, match=f"process {proc.pid}") as info:
                write(working)
            assert info.value.errno == errno.EBUSY and "not written over" in str(info.value)
            assert working.read_bytes() == before
        assert mine.path == tmp_path / "mine.json" and mine.dirty  # the failed save-as moved nothing
        assert list(folder.glob("annotations.json.*.bak")) == []
    monkeypatch.setattr(atomic, "_backed_up", set())  # as in a new process (the fixture wrote it in this one)
    mine.save(working)  # closed there: a save-as goes through (the old file backed up) and takes the lock
    try:
        assert mine.path == working and mine.locked and not mine.dirty
        assert [b.read_bytes() for b in folder.glob("annotations.json.*.bak")] == [before]
    finally:
        mine.close()
    assert not lock_path(tmp_path / "mine.json").exists()  # the old file's lock went with the move


def test_a_save_after_the_folder_was_renamed_says_so_and_keeps_the_work(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    ds = Dataset.open(folder / "annotations.json", lock=True)
    try:
        ds.add_category("first")
        ds.save()
        folder.rename(tmp_path / "project-renamed")
        ds.add_category("second")
        with pytest.raises(SaveError, match="no longer exists") as info:
            ds.save()
        assert str(folder) in str(info.value) and "writing .annotations" not in str(info.value)
        assert ds.dirty
        assert not folder.exists()  # nothing re-created under the old name
        copy = ds.save_copy(tmp_path / "project-renamed" / "rescued.json")
        assert "second" in copy.read_text()
    finally:
        ds.close()


def test_save_as_through_a_link_to_the_working_file_itself_is_a_plain_save(tmp_path):
    path = tmp_path / "annotations.json"
    ds = Dataset.open(path, lock=True)
    try:
        ds.add_category("first")
        ds.save()
        ds.ensure_image("a.png", 6, 4)
        (tmp_path / "elsewhere").mkdir()
        link = tmp_path / "elsewhere" / "link.json"
        link.symlink_to(path)
        ds.add_category("second")
        assert ds.save(link) == link  # not "open in another window": that window is this document
        assert ds.path == path and ds.locked and not ds.dirty
        assert "second" in path.read_text() and link.is_symlink()
        assert json.loads(path.read_text())["images"][0]["file_name"] == "a.png"  # relative to the file's folder
    finally:
        ds.close()


def test_a_link_to_a_working_file_open_in_a_window_is_the_same_file(folder, tmp_path):
    working = folder / "annotations.json"
    before = working.read_bytes()
    link = tmp_path / "link.json"
    link.symlink_to(working)
    with _window(working) as proc:
        ds = Dataset.open(link, lock=True)  # a second window, by another name
        try:
            assert ds.read_only and ds.lock_holder.pid == proc.pid
        finally:
            ds.close()
        code, _, stderr = _run(importer, [str(folder / "a.json"), "--format", "labelme", "-o", str(link)])
        assert code == 1 and f"process {proc.pid}" in stderr
        assert working.read_bytes() == before
