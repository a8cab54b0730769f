"""The once-per-session backup survives a clock that is (or was) wrong, and a kill at any step of a save.

* A backup made while the clock is behind the stamps of older backups (a
  clock that was set forward, then corrected; a dead CMOS battery) must not
  be pruned as "the oldest" the moment it is written.
* ``kill -9`` at each step of the first save of a session (while the backup
  is being written, between the backup and the write, between the write and
  the rename, right after the rename) leaves the working file whole (the old
  version or the new one), any backup whole, and a folder the next session
  opens and saves normally (taking over the dead process's lock).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from annotator.data import atomic
from annotator.data.atomic import backup_once
from annotator.data.document import Dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _new_session(monkeypatch):
    monkeypatch.setattr(atomic, "_backed_up", set())


def test_a_backup_stamped_before_existing_ones_is_kept(tmp_path):
    p = tmp_path / "annotations.json"
    p.write_bytes(b"the user's work")
    future = [tmp_path / f"annotations.json.2099010{d}-120000.bak" for d in range(atomic.KEEP_BACKUPS)]
    for n, f in enumerate(future):
        f.write_bytes(b"old %d" % n)
    backup = backup_once(p)
    assert backup is not None and backup.exists(), "the backup of this session was deleted as soon as it was made"
    assert backup.read_bytes() == b"the user's work"
    left = sorted(tmp_path.glob("annotations.json.*.bak"))
    assert len(left) == atomic.KEEP_BACKUPS and backup in left
    assert future[0] not in left  # the oldest of the others made room


def test_pruning_still_keeps_the_newest_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "KEEP_BACKUPS", 3)
    p = tmp_path / "a.json"
    p.write_bytes(b"now")
    for day in range(1, 6):
        (tmp_path / f"a.json.2020010{day}-120000.bak").write_bytes(b"old %d" % day)
    backup = backup_once(p)
    left = sorted(x.name for x in tmp_path.glob("a.json.*.bak"))
    assert left == ["a.json.20200104-120000.bak", "a.json.20200105-120000.bak", backup.name]


# -- kill -9 at each step of a save ---------------------------------------------------------------

# A session that opens the folder, adds an annotation and saves; `os.replace` and `os.fsync` are wrapped
# to SIGKILL the process at the chosen call (the backup's fsync, the backup's rename, the working file's
# fsync, its rename, or right after it).
_SAVER = r"""
import os, signal, sys
import numpy as np
from annotator.data.document import Dataset

path, step = sys.argv[1], sys.argv[2]
calls = {"fsync": 0, "replace": 0}
real_fsync, real_replace = os.fsync, os.replace

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def fsync(fd):
    calls["fsync"] += 1
    if step == "backup-fsync" and calls["fsync"] == 1:
        die()
    if step == "file-fsync" and calls["fsync"] == 3:  # 1 backup file, 2 folder, 3 working file
        die()
    return real_fsync(fd)

def replace(src, dst):
    calls["replace"] += 1
    if step == "backup-rename" and calls["replace"] == 1:
        die()
    if step == "file-rename" and calls["replace"] == 2:
        die()
    real_replace(src, dst)
    if step == "after-rename" and calls["replace"] == 2:
        die()

ds = Dataset.open(path, lock=True)
assert ds.locked
rec = ds.ensure_image("a.png", 6, 4)
cat = ds.category_by_name("thing") or ds.add_category("thing")
ds.add_annotation(ds.make_annotation(rec.id, cat.id, np.ones((4, 6), bool), by="killed session"))
os.fsync, os.replace = fsync, replace
ds.save()
print("not killed", flush=True)
"""


def _first_version(path: Path) -> bytes:
    ds = Dataset(path)
    rec = ds.ensure_image("a.png", 6, 4)
    cat = ds.add_category("thing")
    ds.add_annotation(ds.make_annotation(rec.id, cat.id, np.eye(4, 6, dtype=bool), by="first session"))
    ds.save()
    ds.close()
    return path.read_bytes()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
@pytest.mark.parametrize("step", ["backup-fsync", "backup-rename", "file-fsync", "file-rename", "after-rename"])
def test_kill_at_each_step_of_the_first_save_loses_nothing(tmp_path, step):
    path = tmp_path / "annotations.json"
    old = _first_version(path)
    proc = subprocess.run([sys.executable, "-c", _SAVER, str(path), step], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr

    now = path.read_bytes()
    renamed = step == "after-rename"
    if renamed:
        assert now != old and [a["by"] for a in json.loads(now)["annotations"]] == ["first session", "killed session"]
    else:
        assert now == old, "the working file changed although the save never reached its rename"
    for backup in tmp_path.glob("annotations.json.*.bak"):  # whole, or not there at all
        assert backup.read_bytes() == old
    if step not in ("backup-fsync", "backup-rename"):
        assert len(list(tmp_path.glob("annotations.json.*.bak"))) == 1

    # the next session: takes the dead one's lock over, reads a whole file, saves over it
    ds = Dataset.open(path, lock=True)
    try:
        assert ds.locked and not ds.read_only
        assert len(ds.annotations) == (2 if renamed else 1)
        rec = ds.image_by_name("a.png")
        ds.add_annotation(ds.make_annotation(rec.id, 1, np.ones((4, 6), bool), by="next session"))
        ds.save()
    finally:
        ds.close()
    assert json.loads(path.read_text())["annotations"][-1]["by"] == "next session"
