"""labelme JSON: files labelme's own ``LabelFile`` loads and rasterises like ours, round trips, hostile input.

labelme is run in a child process: importing it loads PyQt5 (and onnxruntime),
which must not share a process with this suite's PySide6.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from annotator.data import coco
from annotator.data.document import Dataset
from annotator.data.export import export_dataset
from annotator.data.formats.importing import ImportFailed, import_labels, read_labels
from annotator.data.formats.labelme import LABELME_VERSION
from test_formats_common import filled, has_holes, iou, masks_by_image, real_dataset

_LABELME = textwrap.dedent(
    """
    import json, sys, io
    import numpy as np
    from PIL import Image
    from labelme import LabelFile
    from labelme.utils import shape_to_mask, shapes_to_label

    mode, out, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    arrays, meta = {}, []
    for f, path in enumerate(files):
        lf = LabelFile(path)  # raises on anything labelme cannot load
        w, h = Image.open(io.BytesIO(lf.image_data)).size
        labels = []
        if mode == "shapes":  # each shape with labelme's rasteriser, grouped by (label, group_id)
            groups = {}
            for i, s in enumerate(lf.shapes):
                key = (s["label"], s["group_id"] if s["group_id"] is not None else ("shape", i))
                m = shape_to_mask((h, w), s["points"], s["shape_type"])
                if key in groups:
                    groups[key] = groups[key] | m
                else:
                    groups[key] = m
                    labels.append(s["label"])
            masks = list(groups.values())
        else:  # labelme's own instance map (shapes must not overlap)
            names = {"_background_": 0}
            for s in lf.shapes:
                names.setdefault(s["label"], len(names))
            cls, ins = shapes_to_label((h, w), lf.shapes, names)
            masks = [ins == k for k in range(1, int(ins.max()) + 1)]
            inverse = {v: k for k, v in names.items()}
            labels = [inverse[int(np.bincount(cls[m]).argmax())] for m in masks]
        for k, m in enumerate(masks):
            arrays[f"{f}_{k}"] = m
        meta.append({"image_path": lf.image_path, "labels": labels, "size": [w, h]})
    np.savez_compressed(out + ".npz", **arrays)
    with open(out + ".json", "w") as fh:
        json.dump(meta, fh)
    """
)


def labelme_masks(files, tmp_path: Path, mode: str = "shapes"):
    """Load ``files`` with labelme itself; returns one ``(meta, [masks])`` per file."""
    pytest.importorskip("labelme")  # only to skip cleanly where it is missing; it runs in the child
    out = tmp_path / "labelme-result"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run(
        [sys.executable, "-c", _LABELME, mode, str(out), *map(str, files)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads(Path(str(out) + ".json").read_text())
    with np.load(str(out) + ".npz") as arrays:
        return [(m, [arrays[f"{f}_{k}"] for k in range(len(m["labels"]))]) for f, m in enumerate(meta)]


def test_labelme_loads_every_exported_file_and_rasterises_it_like_the_masks(tmp_path):
    ds, originals = real_dataset(tmp_path)
    out = tmp_path / "labelme"
    warnings = export_dataset(ds, out, "labelme")
    files = [out / "voc.json", out / "arc" / "arc.json", out / "empty.json"]
    assert sorted(p for p in out.rglob("*.json") if not p.name.startswith(".")) == sorted(files)
    for path in files:
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert doc["version"] == LABELME_VERSION and doc["imageData"] is None and doc["flags"] == {}
        assert not os.path.isabs(doc["imagePath"])
        assert (path.parent / doc["imagePath"]).resolve().is_file()
    assert json.loads((out / "arc" / "arc.json").read_text())["imagePath"] == "../../images/arc/arc.png"

    results = labelme_masks(files, tmp_path)
    worst = 1.0
    for (meta, masks), name in zip(results, ("voc.jpg", "arc/arc.png", "empty.png")):
        rec = ds.image_by_name(name)
        src = ds.annotations_for(rec.id)
        assert meta["size"] == [rec.width, rec.height]  # labelme checked imageWidth/imageHeight against the image
        assert meta["labels"] == [ds.categories[a.category_id].name for a in src]
        for a, mask in zip(src, masks):
            score = iou(mask, filled(originals[a.id]))
            worst = min(worst, score)
            assert score >= 0.98, (a.id, score)
    assert worst >= 0.999  # measured: labelme fills exactly the traced outlines
    holed = [aid for aid, m in originals.items() if has_holes(m)]
    assert all(any(w.startswith(f"annotation {aid} (") and "holes" in w for w in warnings) for aid in holed)
    parts = [s for s in json.loads((out / "voc.json").read_text())["shapes"] if s["group_id"] is not None]
    assert parts and len({s["group_id"] for s in parts}) < len(parts)  # several parts share one group


def test_round_trip_through_labelme(tmp_path):
    ds, originals = real_dataset(tmp_path)
    out = tmp_path / "images"  # next to the images, as labelme keeps them
    export_dataset(ds, out, "labelme")
    back = Dataset(tmp_path / "images" / "back.json")
    changes, report = import_labels(back, out, "labelme")
    assert report == ["annotations.json: a COCO file, not labelme; skipped (import it with the coco format)"]
    assert len(changes.annotations) == 27 and len(changes.images) == 3
    for name in ("voc.jpg", "arc/arc.png"):
        src = ds.annotations_for(ds.image_by_name(name).id)
        got = masks_by_image(back, name)
        assert [n for n, _ in got] == [ds.categories[a.category_id].name for a in src]
        for a, (_, mask) in zip(src, got):
            assert iou(mask, filled(originals[a.id])) >= 0.98
    assert masks_by_image(back, "empty.png") == []


def _b64png(mask: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _shape(label, points, kind="polygon", group_id=None, **extra):
    return {"label": label, "points": points, "group_id": group_id, "shape_type": kind, "flags": {}, **extra}


def _labelme_file(path: Path, image: str, shapes, w=40, h=30, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image, "imageData": None,
           "imageHeight": h, "imageWidth": w, **extra}  # fmt: skip
    path.write_text(json.dumps(doc), encoding="utf-8")


def test_import_rasterises_every_shape_type_as_labelme_does(tmp_path):
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "a.png")
    crop = np.zeros((6, 5), bool)
    crop[1:5, 1:4] = True
    shapes = [
        _shape("tri", [[2.3, 1.7], [12.6, 2.2], [6.1, 9.8]]),
        _shape("box", [[15, 2], [20.5, 6.2]], "rectangle"),
        _shape("disc", [[30, 6], [33.2, 8.1]], "circle"),
        _shape("turned", [[3, 20], [8, 15], [12, 19], [7, 24]], "oriented_rectangle"),
        _shape("blob", [[25, 20], [29, 25]], "mask", mask=_b64png(crop)),
        _shape("two", [[15, 15], [18, 15], [18, 18]], group_id=4),
        _shape("two", [[15, 22], [18, 22], [18, 26]], group_id=4),
    ]
    _labelme_file(tmp_path / "a.json", "a.png", shapes)
    ((meta, theirs),) = labelme_masks([tmp_path / "a.json"], tmp_path, mode="instances")
    ds = Dataset(tmp_path / "annotations.json")
    _, report = import_labels(ds, tmp_path / "a.json", "labelme")
    assert report == []
    ours = masks_by_image(ds, "a.png")
    assert [n for n, _ in ours] == meta["labels"] == ["tri", "box", "disc", "turned", "blob", "two"]
    for (_, mine), labelmes in zip(ours, theirs):
        np.testing.assert_array_equal(mine, labelmes)


def test_hostile_labelme_folder_reports_every_problem_and_imports_the_rest(tmp_path):
    root = tmp_path / "lm"
    for name in ("a.png", "b.png", "c.png", "d.png", "f.png"):
        root.mkdir(exist_ok=True)
        Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(root / name)
    tri = [[2, 2], [12, 2], [6, 10]]
    _labelme_file(root / "a.json", "a.png", [
        _shape("cat", tri),
        _shape("cat", [[1, 1], [5, 5]]),
        _shape("cat", [[1, float("nan")], [5, 5], [3, 8]]),
        _shape("dog", [[-5, 20], [50, 20], [20, 35]]),
        _shape("cat", [[1, 1], [5, 5]], "line"),
        _shape("", tri),
        _shape("cat", [[1, 1], [5, 5], [9, 9]]),
        _shape("cat", "nope"),
        _shape("cat", tri, "hexagon"),
        _shape("cat", tri, "rectangle"),
        _shape("cat", [[20, 15], [1e7, 15]], "circle"),
    ])  # fmt: skip
    _labelme_file(root / "b.json", "b.png", [_shape("cat", tri)], w=41)
    _labelme_file(root / "sub" / "dup.json", "../a.png", [_shape("cat", tri)])
    _labelme_file(root / "e.json", "missing.png", [_shape("cat", tri)])
    _labelme_file(root / "f.json", "f.png", [])
    (root / "g.json").write_text('{"shapes": [', encoding="utf-8")
    (root / "h.json").write_text('{"something": "else"}', encoding="utf-8")
    ds = Dataset(root / "annotations.json")
    changes, report = import_labels(ds, root, "labelme")
    assert report == [
        "a.json shape 2 ('cat'): polygon with 2 points (at least 3 needed); shape skipped",
        "a.json shape 3 ('cat'): a coordinate is NaN or infinite; shape skipped",
        "a.json shape 4 ('dog'): points outside the 40 x 30 image; clipped to it",
        "a.json shape 5 ('cat'): a line has no area; shape skipped",
        "a.json shape 6: empty or missing label; shape skipped",
        "a.json shape 7 ('cat'): the polygon has no area; shape skipped",
        "a.json shape 8 ('cat'): 'points' must be a list of [x, y] numbers; shape skipped",
        "a.json shape 9 ('cat'): unknown shape type 'hexagon'; shape skipped",
        "a.json shape 10 ('cat'): a rectangle needs 2 points, got 3; shape skipped",
        "a.json shape 11 ('cat'): points far outside the 40 x 30 image (more than its size beyond an edge); shape skipped",
        "b.json: imageWidth x imageHeight 41 x 30 disagree with the image, 40 x 30 (EXIF orientation applied); skipped",
        "e.json: image 'missing.png' not found; skipped",
        "g.json: malformed JSON at line 1, column 13 (Expecting value); skipped",
        "h.json: not a labelme file (no 'shapes' list); skipped",
        "sub/dup.json: its image '../a.png' is already labelled by a.json; skipped",
        "c.png: no labelme file refers to this image; not imported",
        "d.png: no labelme file refers to this image; not imported",
    ]
    a = masks_by_image(ds, "a.png")
    assert [n for n, _ in a] == ["cat", "dog"]
    assert a[1][1][21].all()  # wider than the image: clipped to its edges, kept
    assert masks_by_image(ds, "f.png") == []  # a file with no shapes: a negative
    assert sorted(r.file_name for r in ds.images.values()) == ["a.png", "f.png"]
    assert len(changes.annotations) == 2
    with pytest.raises(ImportFailed, match="no such file or folder"):
        read_labels(tmp_path / "nope", "labelme")


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelme-fuzz")
    Image.fromarray(np.zeros((17, 23, 3), np.uint8)).save(root / "a.png")
    return root


_coord = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-30, 60), st.integers(-30, 60))
_fuzz_shape = st.fixed_dictionaries(
    {
        "label": st.one_of(st.sampled_from(["cat", "dog", "", " "]), st.integers()),
        "points": st.one_of(st.lists(st.lists(_coord, min_size=2, max_size=2), max_size=6), st.text(max_size=3)),
        "shape_type": st.sampled_from(["polygon", "rectangle", "circle", "line", "point", "mask", "blob", None]),
        "group_id": st.one_of(st.none(), st.integers(0, 2), st.booleans()),
    }
)


@settings(max_examples=150, deadline=None)
@given(shapes=st.lists(_fuzz_shape, max_size=5))
@example(shapes=[  # found by this test: the shoelace products overflowed (a RuntimeWarning, an error here)
    {"label": "cat", "points": [[0.0, 0.0], [0.0, 3.3457687799904143e189], [5.373034579118364e118, 0.0]],
     "shape_type": "polygon", "group_id": None},
])
def test_fuzzed_shapes_import_or_are_reported_never_crash(fuzz_root, shapes):
    (fuzz_root / "a.json").write_text(json.dumps({"shapes": shapes, "imagePath": "a.png", "imageData": None}))
    plan = read_labels(fuzz_root / "a.json", "labelme")
    for image in plan.images:
        for ann in image.annotations:
            assert ann.rle["size"] == [17, 23]
    kept = {int(r.split(" shape ")[1].split(" ")[0].rstrip(":")) for r in plan.report if "shape skipped" in r}
    imported = sum(len(i.annotations) for i in plan.images)
    assert len(kept) <= len(shapes) and (imported > 0) == (len(kept) < len(shapes))


def test_files_from_other_machines_and_versions_import_with_their_images(tmp_path):
    """What real labelme folders hold: the image only inside the JSON (``imageData``, labelme's
    "save image data"), an absolute Windows ``imagePath`` from the labeller's machine, a relative
    path with backslashes, and a labelme 3 file (no ``shape_type``, colours, no image size).

    Each imports with the mask labelme itself draws; the embedded image is written next to the
    JSON file (once: a second import finds it there and adds nothing).
    """
    from skimage import data as skdata

    root = tmp_path / "lm"
    root.mkdir()
    buf = io.BytesIO()
    Image.fromarray(skdata.chelsea()).save(buf, format="JPEG", quality=85)
    photo = buf.getvalue()
    h, w = skdata.chelsea().shape[:2]
    tri = [[40.5, 30.2], [200.7, 60.1], [90.3, 250.8]]
    _labelme_file(root / "a.json", "photos/chelsea.jpg", [_shape("cat", tri)], w=w, h=h,
                  imageData=base64.b64encode(photo).decode())  # fmt: skip
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(root / "b.png")
    _labelme_file(root / "b.json", "C:\\Users\\bob\\labels\\b.png", [_shape("dog", [[2, 2], [30, 4], [9, 25]])])
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(root / "c.png")
    v3 = {"flags": {}, "lineColor": [0, 255, 0, 128], "fillColor": [255, 0, 0, 128], "imagePath": "..\\lm\\c.png",
          "imageData": None, "shapes": [{"label": "dog", "line_color": None, "fill_color": None,
                                         "points": [[3, 3], [20, 3], [20, 20], [3, 20]]}]}  # fmt: skip
    (root / "c.json").write_text(json.dumps(v3), encoding="utf-8")
    # labelme 6 reads a.json's image from imageData; it cannot load b.json (it looks for lm/C:/Users/...)
    # nor c.json ("shape_type is required"), so it is given the same shapes in files it loads
    _labelme_file(tmp_path / "ref" / "b.json", "../lm/b.png", [_shape("dog", [[2, 2], [30, 4], [9, 25]])])
    _labelme_file(tmp_path / "ref" / "c.json", "../lm/c.png", [_shape("dog", v3["shapes"][0]["points"])])
    theirs = labelme_masks([root / "a.json", tmp_path / "ref" / "b.json", tmp_path / "ref" / "c.json"], tmp_path)

    ds = Dataset(tmp_path / "annotations.json")
    changes, report = import_labels(ds, root, "labelme")
    assert report == [
        "a.json: image 'photos/chelsea.jpg' not found; the image embedded in the file ('imageData') "
        "is written to chelsea.jpg on import",
        "b.json: image 'C:\\Users\\bob\\labels\\b.png' not found; using b.png next to the JSON file",
    ]
    assert (root / "chelsea.jpg").read_bytes() == photo  # the embedded bytes, unchanged
    assert sorted(r.file_name for r in ds.images.values()) == ["lm/b.png", "lm/c.png", "lm/chelsea.jpg"]
    assert (ds.image_by_name("lm/chelsea.jpg").width, ds.image_by_name("lm/chelsea.jpg").height) == (w, h)
    for name, (meta, masks) in zip(("lm/chelsea.jpg", "lm/b.png", "lm/c.png"), theirs):
        ours = masks_by_image(ds, name)
        assert [n for n, _ in ours] == meta["labels"]
        for (_, mine), labelmes in zip(ours, masks):
            np.testing.assert_array_equal(mine, labelmes)
    assert len(changes.annotations) == 3

    again, report = import_labels(ds, root, "labelme")
    assert again.annotations == [] and again.images == []
    assert report[0] == "a.json: image 'photos/chelsea.jpg' not found; using chelsea.jpg next to the JSON file"
    assert (root / "chelsea.jpg").read_bytes() == photo


def test_embedded_image_is_never_written_over_a_file_and_bad_image_data_is_reported(tmp_path):
    root = tmp_path / "lm"
    root.mkdir()
    tri = [[2, 2], [30, 4], [9, 25]]
    png = io.BytesIO()
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(png, format="PNG")
    _labelme_file(root / "a.json", "a", [_shape("cat", tri)], imageData=base64.b64encode(png.getvalue()).decode())
    (root / "a.png").write_bytes(b"not mine")  # where the embedded PNG would go: another file
    _labelme_file(root / "b.json", "b.png", [_shape("cat", tri)], imageData="bm90IGFuIGltYWdl")
    _labelme_file(root / "c.json", "", [_shape("cat", tri)], imageData=base64.b64encode(png.getvalue()).decode())
    plan = read_labels(root, "labelme")
    assert plan.report == [
        "a.json: image 'a' not found, and a.png is another file; skipped",
        "b.json: 'imageData' is not a base64-encoded image (UnidentifiedImageError); not used",
        "b.json: image 'b.png' not found; skipped",
        "c.json: no 'imagePath'; the image embedded in the file ('imageData') is written to c.png on import",
        "a.png: no labelme file refers to this image; not imported",
    ]
    assert [i.path for i in plan.images] == [root / "c.png"] and plan.images[0].data.read() == png.getvalue()
    assert (root / "a.png").read_bytes() == b"not mine"


def test_export_import_export_writes_the_same_files(tmp_path):
    """A labelme round trip is a fixed point: group ids are numbered per image, not by annotation id
    (which the import renumbers), so the second export equals the first byte for byte."""
    ds, _ = real_dataset(tmp_path)
    first, second = tmp_path / "first", tmp_path / "second"
    export_dataset(ds, first, "labelme")
    back = Dataset(tmp_path / "images" / "back.json")
    import_labels(back, first, "labelme")
    assert [r.file_name for r in back.images.values()] != [r.file_name for r in ds.images.values()]  # renumbered
    export_dataset(back, second, "labelme")
    names = sorted(p.relative_to(first) for p in first.rglob("*.json") if not p.name.startswith("."))
    assert names == sorted(p.relative_to(second) for p in second.rglob("*.json") if not p.name.startswith("."))
    assert len(names) == 3
    for name in names:
        assert (first / name).read_text() == (second / name).read_text(), name
    groups = [s["group_id"] for s in json.loads((first / "voc.json").read_text())["shapes"]]
    used = sorted({g for g in groups if g is not None})
    assert used == list(range(1, len(used) + 1)) and len(used) >= 2


def test_x_anylabeling_rectangles_and_rotated_boxes_import_as_labelme_draws_them(tmp_path):
    """X-AnyLabeling writes labelme JSON, but a rectangle as its 4 corners and a rotated box as
    ``shape_type: "rotation"`` (with a ``direction``); labelme 6 refuses both. They import as the
    masks labelme draws for the same rectangle (2 corners) and oriented rectangle."""
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "a.png")
    corners = [[15.0, 2.0], [20.5, 2.0], [20.5, 6.2], [15.0, 6.2]]
    turned = [[3, 20], [8, 15], [12, 19], [7, 24]]
    _labelme_file(tmp_path / "x" / "a.json", "../a.png", [
        _shape("box", corners, "rectangle"),
        _shape("turned", turned, "rotation", direction=0.785),
    ])  # fmt: skip
    _labelme_file(tmp_path / "ref" / "a.json", "../a.png", [
        _shape("box", [corners[0], corners[2]], "rectangle"),
        _shape("turned", turned, "oriented_rectangle"),
    ])  # fmt: skip
    ((meta, theirs),) = labelme_masks([tmp_path / "ref" / "a.json"], tmp_path)
    plan = read_labels(tmp_path / "x" / "a.json", "labelme")
    assert plan.report == []
    ours = plan.images[0].annotations
    assert [a.category for a in ours] == meta["labels"] == ["box", "turned"]
    for mine, labelmes in zip(ours, theirs):
        np.testing.assert_array_equal(coco.decode_rle(mine.rle, 30, 40), labelmes)
