"""Issue 15, class 2: one writer per working file, and external changes never overwritten.

* Two processes: the second opens read-only, names the first, cannot save
  over it, and can keep its work with save_copy. A lock left by a process
  killed with SIGKILL is taken over.
* Another program changing the working file (even keeping its size and
  modification time) is detected before the next save: our version goes
  beside it, theirs stays, and the error names both.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from annotator.data import atomic, lock
from annotator.data.document import Dataset
from annotator.data.lock import LockBusy, LockHolder, WorkingFileLock, lock_path, read_holder
from annotator.data.workfile import ConflictError, ReadOnlyError

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX processes")

ROOT = Path(__file__).resolve().parents[1]

_WINDOW = r"""
import sys
import numpy as np
from annotator.data.document import Dataset
ds = Dataset.open(sys.argv[1], lock=True)
print("read-only" if ds.read_only else "locked", flush=True)
rec = ds.ensure_image("a.png", 6, 4)
cat = ds.category_by_name("thing") or ds.add_category("thing")
ds.add_annotation(ds.make_annotation(rec.id, cat.id, np.eye(4, 6, dtype=bool), by="first window"))
ds.save()
print("saved", flush=True)
sys.stdin.readline()  # stay open until told
ds.close()
"""


@pytest.fixture(autouse=True)
def _new_session(monkeypatch):
    monkeypatch.setattr(atomic, "_backed_up", set())


def _window(path: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", _WINDOW, str(path)], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)


def _stop(proc: subprocess.Popen, kill: bool = False) -> None:
    try:
        if kill:
            proc.send_signal(signal.SIGKILL)
        else:
            proc.stdin.write(b"\n")
            proc.stdin.flush()
    finally:
        proc.wait(timeout=60)
        proc.stdin.close()
        proc.stdout.close()


def _add(ds: Dataset, note: str) -> None:
    rec = ds.ensure_image("a.png", 6, 4)
    cat = ds.category_by_name("thing") or ds.add_category("thing")
    ds.add_annotation(ds.make_annotation(rec.id, cat.id, np.ones((4, 6), bool), by=note))


def test_a_second_process_opens_read_only_and_cannot_drop_the_first_ones_work(tmp_path):
    path = tmp_path / "annotations.json"
    first = _window(path)
    try:
        assert first.stdout.readline().strip() == b"locked"
        assert first.stdout.readline().strip() == b"saved"
        second = Dataset.open(path, lock=True)
        assert second.read_only is not None
        assert f"process {first.pid}" in second.read_only and socket.gethostname() in second.read_only
        assert second.lock_holder is not None and second.lock_holder.pid == first.pid
        _add(second, "second window")
        with pytest.raises(ReadOnlyError) as info:
            second.save()
        assert isinstance(info.value, OSError) and "read-only" in info.value.strerror
        assert second.dirty
        copy = second.save_copy(tmp_path / "mine.json")  # the second window's work is kept elsewhere
        assert len(Dataset.open(copy).annotations) == 2
    finally:
        _stop(first)
    on_disk = Dataset.open(path)
    assert [a.extra["by"] for a in on_disk.annotations.values()] == ["first window"]
    assert not lock_path(path).exists()  # released on close


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    path = tmp_path / "annotations.json"
    first = _window(path)
    try:
        assert first.stdout.readline().strip() == b"locked"
        assert first.stdout.readline().strip() == b"saved"
    finally:
        _stop(first, kill=True)
    holder = read_holder(path)
    assert holder is not None and holder.pid == first.pid  # the lock file is still there
    ds = Dataset.open(path, lock=True)
    try:
        assert ds.read_only is None and ds.locked
        _add(ds, "after the crash")
        ds.save()
        assert read_holder(path).pid == os.getpid()
    finally:
        ds.close()
    assert len(Dataset.open(path).annotations) == 2


def test_the_same_process_opening_twice_gets_read_only_too(tmp_path):
    path = tmp_path / "annotations.json"
    one = Dataset.open(path, lock=True)
    try:
        two = Dataset.open(path, lock=True)
        assert two.read_only is not None and f"process {os.getpid()}" in two.read_only
        with pytest.raises(ReadOnlyError):
            two.save()
    finally:
        one.close()
    three = Dataset.open(path, lock=True)  # released: the next one gets it
    assert three.locked
    three.close()


def test_a_document_made_to_replace_a_bad_file_can_take_the_lock(tmp_path):
    path = tmp_path / "annotations.json"
    path.write_text("not json")
    holder = Dataset.open(tmp_path / "other.json", lock=True)  # unrelated: no effect
    fresh = Dataset(path)  # the user chose to replace the bad file
    assert fresh.acquire_lock() is None and fresh.locked
    again = Dataset(path)
    assert "read-only" in again.acquire_lock()
    _add(fresh, "new")
    fresh.save()  # no external-change check against the bad file: it is backed up instead
    assert any(p.name.endswith(".bak") for p in tmp_path.iterdir())
    fresh.close()
    holder.close()


def test_lock_acquire_and_release_directly(tmp_path):
    target = tmp_path / "annotations.json"
    with WorkingFileLock.acquire(target) as held:
        assert held.held and lock_path(target).exists()
        with pytest.raises(LockBusy) as info:
            WorkingFileLock.acquire(target)
        assert info.value.holder.pid == os.getpid()
        assert "since" in info.value.message
    assert not lock_path(target).exists()


@pytest.mark.parametrize("case", ["dead pid here", "live pid here", "other host"])
def test_without_flock_a_dead_pid_on_this_host_is_stale(tmp_path, monkeypatch, case):
    monkeypatch.setattr(lock, "_flock", lambda fd: None)  # a file system without flock
    target = tmp_path / "annotations.json"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pid = {"dead pid here": dead.pid, "live pid here": os.getpid(), "other host": 12345}[case]
    host = "elsewhere.example" if case == "other host" else socket.gethostname()
    lock_path(target).write_bytes(LockHolder(pid=pid, host=host, since=time.time() - 60).to_json())
    if case == "dead pid here":
        with WorkingFileLock.acquire(target) as held:
            assert read_holder(target).pid == os.getpid() and held.held
    else:
        with pytest.raises(LockBusy) as info:
            WorkingFileLock.acquire(target)
        assert info.value.holder.pid == pid and host in info.value.message


# ---------------------------------------------------------------------------------------------
# external changes
# ---------------------------------------------------------------------------------------------


def _saved(tmp_path) -> Dataset:
    ds = Dataset.open(tmp_path / "annotations.json", lock=True)
    _add(ds, "ours 1")
    ds.save()
    return ds


def test_an_external_change_is_never_overwritten_both_versions_are_kept(tmp_path):
    ds = _saved(tmp_path)
    path = ds.path
    try:
        theirs = json.loads(path.read_text())
        theirs["categories"].append({"id": 99, "name": "added by a script"})
        path.write_text(json.dumps(theirs))  # another program, not atomic, same inode
        _add(ds, "ours 2")
        with pytest.raises(ConflictError) as info:
            ds.save()
        ours = info.value.ours
        assert ours is not None and ours.parent == path.parent and ours.name.startswith("annotations.conflict-")
        assert str(path) in info.value.message and ours.name in info.value.message
        assert ds.dirty
        assert Dataset.open(path).category_by_name("added by a script")  # theirs, untouched
        assert len(Dataset.open(ours).annotations) == 2  # ours, whole
        _add(ds, "ours 3")
        with pytest.raises(ConflictError) as again:
            ds.save()
        assert again.value.ours == ours and len(Dataset.open(ours).annotations) == 3  # the same copy, updated
        ds.save(force=True)  # the user chose to keep this version
        assert not ds.dirty and len(Dataset.open(path).annotations) == 3
        assert ds.conflict_copy is None
        _add(ds, "ours 4")
        ds.save()  # no conflict any more
    finally:
        ds.close()


def test_a_change_keeping_size_and_mtime_is_still_detected(tmp_path):
    ds = _saved(tmp_path)
    path = ds.path
    try:
        st = os.stat(path)
        data = path.read_bytes()
        changed = data.replace(b'"ours 1"', b'"OURS 1"')
        assert len(changed) == len(data) and changed != data
        with open(path, "r+b") as f:  # in place: same inode, same size
            f.write(changed)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old modification time
        assert ds.changed_on_disk()
        _add(ds, "ours 2")
        with pytest.raises(ConflictError):
            ds.save()
        assert b'"OURS 1"' in path.read_bytes()
    finally:
        ds.close()


def test_a_file_created_meanwhile_is_not_overwritten_and_a_deleted_one_is_written_again(tmp_path):
    path = tmp_path / "annotations.json"
    ds = Dataset.open(path, lock=True)
    try:
        _add(ds, "ours")
        path.write_text('{"images": [], "annotations": [], "categories": []}')  # someone else's new file
        with pytest.raises(ConflictError):
            ds.save()
        assert Dataset.open(path).annotations == {}
        ds.save(force=True)
        path.unlink()  # deleted by another program: nothing of theirs to lose
        _add(ds, "ours again")
        ds.save()
        assert len(Dataset.open(path).annotations) == 2
    finally:
        ds.close()


def test_our_own_saves_in_a_row_are_not_conflicts(tmp_path):
    ds = _saved(tmp_path)
    try:
        for i in range(5):
            _add(ds, f"more {i}")
            ds.save()
        assert ds.conflict_copy is None and not any(p.name.startswith("annotations.conflict") for p in tmp_path.iterdir())
    finally:
        ds.close()


def test_another_users_lock_file_is_honoured_or_replaced_when_stale(tmp_path, monkeypatch):
    """A lock file we may not open for writing (another user's): busy while flocked, replaced once stale."""
    target = tmp_path / "annotations.json"
    real_open = os.open

    def no_write(path, flags, *args):
        if os.fspath(path) == os.fspath(lock_path(target)) and flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args)

    held = WorkingFileLock.acquire(target)
    monkeypatch.setattr(lock.os, "open", no_write)
    with pytest.raises(LockBusy) as info:
        WorkingFileLock.acquire(target)
    assert info.value.holder.pid == os.getpid()
    held._finalizer()  # its holder is gone (descriptor closed, flock dropped), the file stays
    assert lock_path(target).exists()
    with WorkingFileLock.acquire(target) as mine:
        assert mine.held and mine.took_over is None  # removed and created afresh
