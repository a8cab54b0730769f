"""``sam-annotator export``: RLE and polygon COCO files, hole warnings, bad input."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from annotator.commands import export as cmd_export

from annotator.data import coco
from annotator.cli import main as cli_main
from annotator.data.document import Dataset

H, W = 60, 80


def _ring():
    yy, xx = np.mgrid[0:H, 0:W]
    d2 = (yy - 30) ** 2 + (xx - 40) ** 2
    return (d2 < 20**2) & (d2 >= 8**2)


def _square():
    m = np.zeros((H, W), bool)
    m[5:25, 50:75] = True
    return m


@pytest.fixture
def working_file(tmp_path):
    """A working file with one ring (a hole), one square and one empty mask."""
    ds = Dataset.open(tmp_path / "images" / "annotations.json")
    (tmp_path / "images").mkdir()
    ds.ensure_image("a.png", W, H)
    ds.add_category("donut")
    ds.add_category("box")
    for cat, m in ((1, _ring()), (2, _square()), (2, np.zeros((H, W), bool))):
        ds.add_annotation(ds.make_annotation(1, cat, m, predicted_iou=0.9))
    ds.save()
    return ds.path


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cmd_export.main(argv)
    return code, out.getvalue(), err.getvalue()


def _load_coco(path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_polygon_export_warns_about_holes_and_is_valid(working_file, tmp_path):
    out = tmp_path / "export" / "polys.json"
    out.parent.mkdir()
    code, stdout, stderr = _run([str(working_file), "--format", "coco-polygon", "-o", str(out), "--tolerance", "0"])
    assert code == 0, stderr
    assert "annotation 1" in stderr and "holes" in stderr and "'donut'" in stderr
    assert "annotation 2 " not in stderr  # the square has no hole
    assert "annotation 3" in stderr and "empty" in stderr
    assert "wrote" in stdout

    data = json.loads(out.read_text(encoding="utf-8"))
    assert coco.validate_coco(data) == []
    assert [a["id"] for a in data["annotations"]] == [1, 2]
    assert all(isinstance(a["segmentation"], list) for a in data["annotations"])
    assert data["images"][0]["file_name"] == "../images/a.png"  # relative to the output's folder
    assert data["annotations"][0]["predicted_iou"] == 0.9
    gt = _load_coco(out)
    ring = gt.annToMask(gt.loadAnns([1])[0]).astype(bool)
    square = gt.annToMask(gt.loadAnns([2])[0]).astype(bool)
    np.testing.assert_array_equal(square, _square())  # exact with tolerance 0
    filled = _ring() | ((np.mgrid[0:H, 0:W][0] - 30) ** 2 + (np.mgrid[0:H, 0:W][1] - 40) ** 2 < 8**2)
    np.testing.assert_array_equal(ring, filled)  # the hole is filled, as warned
    assert coco.self_evaluation_ap(data) == pytest.approx(1.0)


def test_rle_export_is_lossless(working_file, tmp_path):
    out = tmp_path / "rle.json"
    code, _, stderr = _run([str(working_file), "-o", str(out)])
    assert code == 0, stderr
    assert "holes" not in stderr  # RLE keeps holes: nothing to warn about
    data = json.loads(out.read_text(encoding="utf-8"))
    assert coco.validate_coco(data) == []
    gt = _load_coco(out)
    np.testing.assert_array_equal(gt.annToMask(gt.loadAnns([1])[0]).astype(bool), _ring())
    assert data["images"][0]["file_name"] == "images/a.png"
    assert len(data["annotations"]) == 3


def test_default_tolerance_simplifies(working_file, tmp_path):
    exact, simple = tmp_path / "exact.json", tmp_path / "simple.json"
    assert _run([str(working_file), "--format", "coco-polygon", "-o", str(exact), "--tolerance", "0"])[0] == 0
    assert _run([str(working_file), "--format", "coco-polygon", "-o", str(simple)])[0] == 0
    n_exact = len(json.loads(exact.read_text())["annotations"][0]["segmentation"][0])
    n_simple = len(json.loads(simple.read_text())["annotations"][0]["segmentation"][0])
    assert n_simple < n_exact


@pytest.mark.parametrize(
    "content,match",
    [
        (b"{ nope", "malformed JSON at line 1"),
        (b'{"images": [], "annotations": [{"id": 1, "image_id": 4, "category_id": 1, "segmentation": []}],'
         b' "categories": [{"id": 1, "name": "c"}]}', "image_id 4 is not in 'images'"),  # fmt: skip
    ],
)
def test_bad_input_exits_non_zero_with_a_message(tmp_path, content, match):
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    out = tmp_path / "out.json"
    code, _, stderr = _run([str(bad), "-o", str(out)])
    assert code == 1
    assert "error:" in stderr and "bad.json" in stderr
    assert __import__("re").search(match, stderr)
    assert not out.exists()


def test_missing_input_and_usage_errors(tmp_path):
    code, _, stderr = _run([str(tmp_path / "nope.json"), "-o", str(tmp_path / "o.json")])
    assert code == 1 and "no such annotation file" in stderr
    code, _, stderr = _run([str(tmp_path / "x.json")])  # -o missing
    assert code == 2 and "-o" in stderr
    code, _, stderr = _run([str(tmp_path / "x.json"), "-o", "o.json", "--format", "yolo"])
    assert code == 2 and "invalid choice" in stderr
    code, _, stderr = _run([str(tmp_path / "x.json"), "-o", "o.json", "--tolerance", "-1"])
    assert code == 2 and "tolerance" in stderr
    code, stdout, _ = _run(["--help"])
    assert code == 0 and "coco-polygon" in stdout


def test_polygon_export_never_overwrites_the_working_file(working_file):
    before = working_file.read_bytes()
    code, _, stderr = _run([str(working_file), "--format", "coco-polygon", "-o", str(working_file)])
    assert code == 1 and "refusing" in stderr
    assert working_file.read_bytes() == before


def test_unwritable_output_is_reported(working_file, tmp_path):
    code, _, stderr = _run([str(working_file), "-o", str(tmp_path / "no" / "such" / "dir.json")])
    assert code == 1 and "cannot write" in stderr


def test_cli_dispatch_and_console_entry(working_file, tmp_path):
    out = tmp_path / "via_cli.json"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        assert cli_main(["export", str(working_file), "--format", "coco-polygon", "-o", str(out)]) == 0
    assert "holes" in err.getvalue()
    # and as a separate process, the way a user runs it
    root = Path(__file__).resolve().parents[1]
    out2 = tmp_path / "via_process.json"
    proc = subprocess.run(
        [sys.executable, "-m", "annotator", "export", str(working_file), "--format", "coco-polygon", "-o", str(out2)],
        cwd=root, env=dict(os.environ, PYTHONPATH=str(root)), capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "annotation 1" in proc.stderr and "holes" in proc.stderr
    assert json.loads(out2.read_text()) == json.loads(out.read_text())


@pytest.mark.parametrize(
    "fmt,extra,expected",
    [
        ("yolo-seg", ["--copy-images"], ["data.yaml", "images/a.png", "labels/a.txt"]),
        ("voc", ["--voc-border", "1"], ["Annotations/a.xml", "ImageSets/Main/train.txt", "ImageSets/Main/trainval.txt",
                                        "ImageSets/Segmentation/train.txt", "ImageSets/Segmentation/trainval.txt",
                                        "SegmentationClass/a.png", "SegmentationObject/a.png", "class_names.txt"]),
        ("labelme", [], ["a.json"]),
        ("masks", [], ["a/1.png", "a/2.png", "masks.csv"]),
        ("masks", ["--masks-per-image"], ["a.png", "masks.csv"]),
    ],
)  # fmt: skip
def test_folder_formats_from_the_command_line(working_file, tmp_path, fmt, extra, expected):
    from PIL import Image

    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(working_file.parent / "a.png")
    out = tmp_path / "out" / fmt
    code, stdout, stderr = _run([str(working_file), "--format", fmt, "-o", str(out), *extra])
    assert code == 0, stderr
    assert stdout.strip() == f"wrote {out}: 1 images, 3 annotations, {fmt}"
    assert "annotation 3" in stderr and "empty" in stderr  # the empty mask is left out, said once
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert written == expected
    if fmt in ("yolo-seg", "labelme"):
        assert "annotation 1" in stderr and "holes" in stderr
    else:
        assert "holes" not in stderr  # pixels, not polygons: holes are kept


def test_folder_format_usage_errors(working_file, tmp_path):
    code, _, stderr = _run([str(working_file), "--format", "voc", "-o", str(tmp_path / "o"), "--voc-border", "-1"])
    assert code == 2 and "--voc-border" in stderr
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    code, _, stderr = _run([str(working_file), "--format", "yolo-seg", "-o", str(a_file)])
    assert code == 1 and f"error: {a_file} is a file; the yolo-seg export writes a folder" in stderr
    assert a_file.read_text() == "x"
