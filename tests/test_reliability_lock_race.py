"""Several processes opening one folder at the same instant: exactly one gets to write.

Real processes, released together (each waits for a "go" file to appear), so
that they race through :meth:`WorkingFileLock.acquire`: on a fresh folder
(the lock file created by ``link``), and on a folder whose lock was left by a
process killed with SIGKILL (the stale lock taken over: ``flock``, then the
inode check). In both, exactly one process holds the lock, every other one
opens read-only naming that one, and the winner's save is the file on disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX processes")

ROOT = Path(__file__).resolve().parents[1]
RACERS = 6

_RACER = r"""
import os, sys, time
from pathlib import Path
from annotator.data.document import Dataset
path, go = sys.argv[1], Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
ds = Dataset.open(path, lock=True)
if ds.read_only:
    print("read-only", ds.lock_holder.pid if ds.lock_holder else -1, flush=True)
else:
    ds.add_category(f"by {os.getpid()}")
    ds.save()
    print("locked", os.getpid(), flush=True)
sys.stdin.readline()  # hold it until every racer has reported
ds.close()
"""

_HOLDER = r"""
import sys
from annotator.data.document import Dataset
ds = Dataset.open(sys.argv[1], lock=True)
print("locked" if ds.locked else "not locked", flush=True)
sys.stdin.readline()
"""


def _spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _race(path: Path, go: Path):
    procs = [_spawn(_RACER, str(path), str(go)) for _ in range(RACERS)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        go.touch()
        results = [p.stdout.readline().split() for p in procs]
    finally:
        for p in procs:
            try:
                p.stdin.write("\n")
                p.stdin.flush()
            except BrokenPipeError:
                pass
        for p in procs:
            p.wait(timeout=60)
            p.stdin.close()
            p.stdout.close()
    return results


def _check(results, path: Path, taking_over: bool = False) -> None:
    winners = [int(r[1]) for r in results if r[0] == "locked"]
    assert len(winners) == 1, results
    assert all(r[0] == "read-only" for r in results if r[0] != "locked"), results
    # each loser names the winner (a fresh lock file is linked in with its record written); when taking over a
    # stale lock, -1 (holder unknown, never the dead process) only if the winner was kept off the CPU for
    # lock._REREAD_SECONDS between taking the lock and writing its record
    named = (winners[0], -1) if taking_over else (winners[0],)
    assert all(int(r[1]) in named for r in results if r[0] != "locked"), results
    names = [c["name"] for c in json.loads(path.read_text())["categories"]]
    assert names == [f"by {winners[0]}"]


def test_racing_on_a_fresh_folder(tmp_path):
    path = tmp_path / "annotations.json"
    _check(_race(path, tmp_path / "go"), path)


def test_racing_to_take_over_a_killed_sessions_lock(tmp_path):
    path = tmp_path / "annotations.json"
    holder = _spawn(_HOLDER, str(path))
    try:
        assert holder.stdout.readline().strip() == "locked"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
        holder.stdin.close()
        holder.stdout.close()
    lock_file = tmp_path / ".annotations.json.lock"
    assert lock_file.exists()  # left behind by the killed process: stale
    _check(_race(path, tmp_path / "go"), path, taking_over=True)


def test_a_busy_lock_whose_record_stays_stale_names_no_one_rather_than_a_dead_process(tmp_path, monkeypatch):
    """The record of a busy lock that still names a dead process (its taker has not rewritten it yet) is read
    again for a moment; if it stays stale the holder is unknown, never the dead process."""
    import dataclasses

    from annotator.data import lock as lockmod

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=60)
    path = tmp_path / "annotations.json"
    held = lockmod.WorkingFileLock.acquire(path)  # the flock is ours, through another open file
    try:
        lockmod._write_record(held._fd, dataclasses.replace(held.holder, pid=dead.pid))
        monkeypatch.setattr(lockmod, "_REREAD_SECONDS", 0.05)
        with pytest.raises(lockmod.LockBusy) as busy:
            lockmod.WorkingFileLock.acquire(path)
        assert busy.value.holder is None and "cannot be read" in str(busy.value)
        lockmod._write_record(held._fd, held.holder)  # written meanwhile: named
        with pytest.raises(lockmod.LockBusy) as busy:
            lockmod.WorkingFileLock.acquire(path)
        assert busy.value.holder == held.holder
    finally:
        held.release()
