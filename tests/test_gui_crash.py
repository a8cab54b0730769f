"""Crash safety for real: run the application, accept annotations, SIGKILL it, start it again.

The app runs in a subprocess (offscreen Qt) through :func:`annotator.ui.app.main`,
steered by ``tests/gui_driver.py``. It is killed the moment it reports its
last accept, while it is already prefetching the next image. Restarted on the
same folder, it must show every accepted annotation, from a file that loads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from annotator.data.document import Dataset

pytestmark = [pytest.mark.gui, pytest.mark.weights, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "gui_driver.py"
TIMEOUT = 400  # seconds: model load + three encodes on a busy 2-core machine


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        PYTHONPATH=os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        SAM_ANNOTATOR_LOG_DIR=str(tmp_path / "logs"),
        SAM_ANNOTATOR_CACHE=str(tmp_path / "cache"),
    )
    return env


def _app_args(folder: Path, checkpoint: Path) -> list:
    return [str(folder), "--checkpoint", str(checkpoint), "--device", "cpu"]


def test_sigkill_after_accept_loses_nothing(image_folder, mobilesam_checkpoint, tmp_path):
    env = _env(tmp_path)
    args = _app_args(image_folder, Path(mobilesam_checkpoint))
    proc = subprocess.Popen(
        [sys.executable, str(DRIVER), "annotate", "--", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    accepted, log = [], []
    deadline = time.monotonic() + TIMEOUT
    try:
        for line in proc.stdout:
            log.append(line)
            if line.startswith("ACCEPTED "):
                accepted.append(int(line.split()[1]))
            if line.startswith("DONE"):
                os.kill(proc.pid, signal.SIGKILL)  # at once: no chance to save on the way out
                break
            assert time.monotonic() < deadline, "".join(log[-30:])
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "".join(log[-30:])
    assert len(accepted) == 3, "".join(log[-30:])

    # the file on disk loads and holds every accepted annotation
    ds = Dataset.open(image_folder / "annotations.json")
    assert sorted(ds.annotations) == sorted(accepted)
    assert {ds.images[a.image_id].file_name for a in ds.annotations.values()} == {"01_astronaut.jpg", "02_chelsea.png"}

    # and the restarted app shows them
    out = subprocess.run(
        [sys.executable, str(DRIVER), "report", "--", *args],
        capture_output=True, text=True, env=env, timeout=TIMEOUT,
    )
    report = next((line for line in out.stdout.splitlines() if line.startswith("REPORT ")), None)
    assert report is not None, out.stdout[-3000:] + out.stderr[-3000:]
    data = json.loads(report[len("REPORT "):])
    assert sorted(int(k) for k in data["annotations"]) == sorted(accepted)
    assert not data["title"].startswith("*")
    assert out.returncode == 0, out.stderr[-3000:]
