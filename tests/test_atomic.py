"""annotator.data.atomic: failures at every step leave the old file and no debris."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from annotator.data import atomic
from annotator.data.atomic import atomic_write_bytes, atomic_write_text, backup_once


def _debris(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_new_and_replace(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_text(p, "first é\n")
    assert p.read_bytes() == "first é\n".encode()
    atomic_write_bytes(p, b"second")
    assert p.read_bytes() == b"second"
    assert _debris(tmp_path) == []


def test_new_file_mode_follows_umask_and_existing_mode_is_kept(tmp_path):
    p = tmp_path / "a.json"
    old_umask = os.umask(0o022)
    try:
        atomic_write_bytes(p, b"x")
    finally:
        os.umask(old_umask)
    assert p.stat().st_mode & 0o777 == 0o644
    p.chmod(0o600)
    atomic_write_bytes(p, b"y")
    assert p.stat().st_mode & 0o777 == 0o600


def test_symlink_is_followed_and_kept(tmp_path):
    real = tmp_path / "real.json"
    real.write_bytes(b"old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink()
    assert real.read_bytes() == b"new"


def _fail_after_partial_write(monkeypatch, err=errno.ENOSPC):
    real_write = os.write
    calls = []

    def write(fd, data):
        if not calls:
            calls.append(1)
            return real_write(fd, bytes(data[: max(1, len(data) // 2)]))  # a short write...
        raise OSError(err, os.strerror(err))  # ...then the disk is full

    monkeypatch.setattr(atomic.os, "write", write)


def _fail(monkeypatch, name, err):
    def boom(*args, **kwargs):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(atomic.os, name, boom)


@pytest.mark.parametrize(
    "inject,err",
    [
        ("partial_write", errno.ENOSPC),
        ("fsync", errno.EIO),
        ("replace", errno.EACCES),
        ("open", errno.EROFS),
    ],
)
def test_failure_mid_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch, inject, err):
    p = tmp_path / "annotations.json"
    p.write_bytes(b'{"old": true}')
    if inject == "partial_write":
        _fail_after_partial_write(monkeypatch, err)
    else:
        _fail(monkeypatch, inject, err)
    with pytest.raises(OSError) as info:
        atomic_write_bytes(p, b'{"new": true}' * 1000)
    assert info.value.errno == err
    monkeypatch.undo()
    assert p.read_bytes() == b'{"old": true}'
    assert _debris(tmp_path) == []
    assert sorted(x.name for x in tmp_path.iterdir()) == ["annotations.json"]


def test_short_writes_are_completed(tmp_path, monkeypatch):
    real_write = os.write
    monkeypatch.setattr(atomic.os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))
    payload = bytes(range(256)) * 10
    atomic_write_bytes(tmp_path / "x", payload)
    assert (tmp_path / "x").read_bytes() == payload


def test_read_only_folder_raises_with_errno(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "a.json").write_bytes(b"old")
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running with privileges that write anywhere (root)")
        with pytest.raises(OSError) as info:
            atomic_write_bytes(folder / "a.json", b"new")
        assert info.value.errno in (errno.EACCES, errno.EROFS, errno.EPERM)
        assert (folder / "a.json").read_bytes() == b"old"
    finally:
        folder.chmod(0o755)


def test_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(tmp_path / "nope" / "a.json", b"x")


_WRITER = r"""
import sys
from annotator.data.atomic import atomic_write_bytes
path = sys.argv[1]
payloads = [b"A" * 3_000_000, b"B" * 2_000_000]
print("ready", flush=True)
i = 0
while True:
    atomic_write_bytes(path, payloads[i % 2])
    i += 1
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_during_writes_leaves_a_whole_file(tmp_path):
    """Kill a process that rewrites the file in a loop: the file is always whole."""
    p = tmp_path / "annotations.json"
    p.write_bytes(b"A" * 3_000_000)
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    for delay in (0.05, 0.13, 0.31):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(p)], env=env, stdout=subprocess.PIPE)
        try:
            assert proc.stdout.readline().strip() == b"ready"
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            proc.stdout.close()
        data = p.read_bytes()
        assert data in (b"A" * 3_000_000, b"B" * 2_000_000)


def test_backup_once_per_path_and_session(tmp_path):
    p = tmp_path / "annotations.json"
    p.write_bytes(b"version 1")
    backup = backup_once(p)
    assert backup is not None and backup.parent == tmp_path
    assert backup.name.startswith("annotations.json.") and backup.name.endswith(".bak")
    assert backup.read_bytes() == b"version 1"
    p.write_bytes(b"version 2")
    assert backup_once(p) is None  # only before the first write of the session
    assert backup.read_bytes() == b"version 1"


def test_backup_once_of_missing_file_marks_it_done(tmp_path):
    p = tmp_path / "new.json"
    assert backup_once(p) is None
    p.write_bytes(b"written by us this session")
    assert backup_once(p) is None  # our own first write is not backed up again
    assert sorted(x.name for x in tmp_path.iterdir()) == ["new.json"]


def test_backup_failure_propagates_and_is_retried(tmp_path, monkeypatch):
    p = tmp_path / "a.json"
    p.write_bytes(b"precious")
    _fail(monkeypatch, "fsync", errno.ENOSPC)
    with pytest.raises(OSError):
        backup_once(p)
    monkeypatch.undo()
    assert _debris(tmp_path) == []
    backup = backup_once(p)  # not marked done by the failed attempt
    assert backup is not None and backup.read_bytes() == b"precious"


def test_old_backups_are_pruned(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "KEEP_BACKUPS", 3)
    p = tmp_path / "a.json"
    p.write_bytes(b"now")
    for day in range(1, 6):
        (tmp_path / f"a.json.2020010{day}-120000.bak").write_bytes(b"old %d" % day)
    (tmp_path / "other.json.20200101-120000.bak").write_bytes(b"not ours")
    backup = backup_once(p)
    left = sorted(x.name for x in tmp_path.glob("a.json.*.bak"))
    assert len(left) == 3 and backup.name in left
    assert "a.json.20200105-120000.bak" in left and "a.json.20200101-120000.bak" not in left
    assert (tmp_path / "other.json.20200101-120000.bak").exists()


def test_an_export_backs_up_a_file_this_process_already_backed_up_or_wrote(tmp_path, monkeypatch):
    """Found in review: a file once used as this process's working file (backed up once, then written) was
    later replaced by an export with no backup at all, since backup_once had already seen it."""
    from annotator.data.replacing import replacing

    monkeypatch.setattr(atomic, "_backed_up", set())
    path = tmp_path / "annotations.json"
    path.write_text("first")
    assert backup_once(path) is not None  # the working file's first save
    atomic_write_text(path, "the working file")
    assert backup_once(path) is None  # later saves: not again
    with replacing(path) as bak:  # an export over it, later in the same process
        assert bak is not None and bak.read_text() == "the working file"
        atomic_write_text(path, "exported")
    with replacing(path) as bak2:
        assert bak2 is not None and bak2 != bak and bak2.read_text() == "exported"


def test_a_long_backup_of_one_file_does_not_hold_up_another_files(tmp_path, monkeypatch):
    """Found in review: backup_once copied under its global lock, so an export backing up a large file on its
    thread held up every save (backup_once) of the working file on the GUI thread."""
    import threading

    monkeypatch.setattr(atomic, "_backed_up", set())
    big, small = tmp_path / "big.json", tmp_path / "small.json"
    big.write_text("big")
    small.write_text("small")
    reading, release = threading.Event(), threading.Event()
    read = atomic.read_regular

    def slow_read(path, limit):
        if Path(path).name == "big.json":
            reading.set()
            assert release.wait(30)
        return read(path, limit)

    monkeypatch.setattr(atomic, "read_regular", slow_read)
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("big", backup_once(big, every_time=True)))
    worker.start()
    try:
        assert reading.wait(30)  # the big copy is under way (and blocked)
        got = backup_once(small)  # returns while it is: not behind the lock
        assert got is not None and got.read_text() == "small"
    finally:
        release.set()
        worker.join(30)
    assert result["big"].read_text() == "big"
