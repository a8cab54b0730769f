"""The launch smoke check CI runs: ``SAM_ANNOTATOR_SMOKE_TEST=1 sam-annotator``.

The real application in a subprocess (offscreen Qt): it must come up, load
the default model (weights found in the cache and verified, model built),
print one ready line and exit 0; exit 1 with the reason when the model cannot
load; exit 2 when it is not ready in time. The cache is a temporary folder
that already holds the MobileSAM weights, so nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.gui]

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 400  # seconds: a busy 2-core machine


def _run(tmp_path: Path, args=(), **env_extra) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        SAM_ANNOTATOR_SMOKE_TEST="1",
        SAM_ANNOTATOR_LOG_DIR=str(tmp_path / "logs"),
        SAM_ANNOTATOR_SETTINGS=str(tmp_path / "settings.ini"),
        SAM_ANNOTATOR_CACHE=str(tmp_path / "cache"),
    )
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "annotator", *args], capture_output=True, text=True, env=env, timeout=TIMEOUT
    )


@pytest.mark.weights
def test_launch_loads_the_default_model_prints_ready_and_exits_0(tmp_path, mobilesam_checkpoint):
    target = tmp_path / "cache" / "checkpoints" / Path(mobilesam_checkpoint).name
    target.parent.mkdir(parents=True)
    shutil.copyfile(mobilesam_checkpoint, target)
    out = _run(tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "sam-annotator: ready (model vit_t on cpu)"
    assert (tmp_path / "logs" / "sam-annotator.log").is_file()  # logging was set up


def test_launch_with_unusable_weights_says_why_and_exits_1(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00not a checkpoint" * 100)
    out = _run(tmp_path, ["--checkpoint", str(bad), "--device", "cpu"])
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-3000:]
    assert "could not be loaded" in out.stdout and "bad.pt" in out.stdout


def test_launch_that_is_not_ready_in_time_exits_2(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00")
    out = _run(tmp_path, ["--checkpoint", str(bad), "--device", "cpu"], SAM_ANNOTATOR_SMOKE_TIMEOUT="0.001")
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-3000:]
    assert "not ready after" in out.stdout
