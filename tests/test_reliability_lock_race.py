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


def _check(results, path: Path) -> None:
    winners = [int(r[1]) for r in results if r[0] == "locked"]
    assert len(winners) == 1, results
    assert all(r[0] == "read-only" and int(r[1]) == winners[0] for r in results if r[0] != "locked"), results
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
    _check(_race(path, tmp_path / "go"), path)
