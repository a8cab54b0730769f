"""``sam-annotator import``: end to end, the backup of an existing working file, exit codes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from annotator.cli import main as cli_main
from annotator.commands import importer
from annotator.data.document import Dataset
from annotator.data.export import export_dataset
from test_formats_common import real_dataset


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = importer.main(argv)
    return code, out.getvalue(), err.getvalue()


def test_import_creates_a_working_file_and_backs_up_an_existing_one(tmp_path):
    ds, _ = real_dataset(tmp_path)
    export_dataset(ds, tmp_path / "images", "labelme")  # JSON next to the images
    target = tmp_path / "images" / "imported.json"
    code, stdout, stderr = _run([str(tmp_path / "images"), "--format", "labelme", "-o", str(target)])
    assert code == 0, stderr
    assert stderr.splitlines() == [
        "warning: annotations.json: a COCO file, not labelme; skipped (import it with the coco format)"
    ]
    assert stdout.strip() == (
        f"imported into {target}: 3 images (3 new), 27 annotations, 12 new categories, 1 problems reported"
    )
    first = Dataset.open(target)
    assert len(first.annotations) == 27 and first.image_by_name("arc/arc.png") is not None
    before = target.read_bytes()
    # again, from YOLO this time, into the same file: added to, and the old file kept aside
    export_dataset(ds, tmp_path / "yolo", "yolo-seg", copy_images=False)
    # (a new process, as a user runs it: backups are made once per process and file)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "annotator", "import", str(tmp_path / "yolo"), "--format", "yolo-seg", "-o", str(target),
         "--images", str(tmp_path / "images")],
        cwd=root, env=dict(os.environ, PYTHONPATH=str(root)), capture_output=True, text=True,
    )  # fmt: skip
    code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    assert code == 0, stderr
    assert "(the previous version was backed up as imported.json." in stdout
    backups = list(target.parent.glob("imported.json.*.bak"))
    assert len(backups) == 1 and backups[0].read_bytes() == before
    assert all("not added again" in line for line in stderr.splitlines())
    after = Dataset.open(target)
    assert set(first.annotations) <= set(after.annotations)  # nothing dropped


def test_nothing_to_import_writes_nothing_and_exits_1(tmp_path):
    root = tmp_path / "ds"
    (root / "labels").mkdir(parents=True)
    (root / "images").mkdir()
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(root / "images" / "a.png")
    (root / "labels" / "a.txt").write_text("0 0.1 0.1\n")
    (root / "data.yaml").write_text("names: [cat]\n")
    target = tmp_path / "annotations.json"
    code, stdout, stderr = _run([str(root), "--format", "yolo-seg", "-o", str(target)])
    assert code == 1 and stdout == ""
    assert stderr.splitlines() == [
        "warning: labels/a.txt line 1: 1 points; a polygon needs at least 3; line skipped",
        f"error: nothing could be imported from {root}; {target} was not written",
    ]
    assert not target.exists()


def test_bad_sources_targets_and_usage(tmp_path):
    code, _, stderr = _run([str(tmp_path / "nope"), "--format", "voc", "-o", str(tmp_path / "a.json")])
    assert code == 1 and stderr.startswith("error: ") and "no such folder" in stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{ nope")
    code, _, stderr = _run([str(tmp_path), "--format", "labelme", "-o", str(bad)])
    assert code == 1 and "the working file cannot be used, so nothing was imported" in stderr and "malformed JSON" in stderr
    assert bad.read_text() == "{ nope"
    code, _, stderr = _run([str(tmp_path), "--format", "pascal", "-o", str(bad)])
    assert code == 2 and "invalid choice" in stderr
    code, _, stderr = _run([str(tmp_path), "--format", "coco"])
    assert code == 2 and "-o" in stderr
    code, _, stderr = _run([str(tmp_path), "--format", "voc", "-o", str(tmp_path / "x.json"), "--images", str(tmp_path / "no")])
    assert code == 1 and "--images" in stderr
    code, stdout, _ = _run(["--help"])
    assert code == 0 and "yolo-seg" in stdout


def test_cli_dispatch_and_console_entry(tmp_path):
    ds, _ = real_dataset(tmp_path)
    (tmp_path / "c").mkdir()
    export_dataset(ds, tmp_path / "c" / "coco.json", "coco-rle")
    target = tmp_path / "images" / "via_cli.json"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert cli_main(["import", str(tmp_path / "c" / "coco.json"), "--format", "coco", "-o", str(target)]) == 0
    root = Path(__file__).resolve().parents[1]
    target2 = tmp_path / "images" / "via_process.json"
    proc = subprocess.run(
        [sys.executable, "-m", "annotator", "import", str(tmp_path / "c" / "coco.json"), "--format", "coco", "-o", str(target2)],
        cwd=root, env=dict(os.environ, PYTHONPATH=str(root)), capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    one, two = json.loads(target.read_text()), json.loads(target2.read_text())
    assert one["annotations"] == two["annotations"] and len(one["annotations"]) == 27
