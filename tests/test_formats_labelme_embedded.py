"""labelme images that exist only inside the JSON (``imageData``): the plan holds a reference, not the bytes.

labelme embeds the image by default, so a folder of 1,000 labelme files holds
~3 GB of images in its JSON. The plan keeps the JSON file's path and the
bytes' digest (:class:`~annotator.data.formats.plan.EmbeddedImage`); the image
is read from the JSON again when it is written, and a JSON file changed in
between is reported, never written. Real photos (skimage) encoded as labelme does.
"""

from __future__ import annotations

import base64
import dataclasses
import gc
import io
import json
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator.data.document import Dataset
from annotator.data.formats.importing import (
    ImportCancelled,
    apply_plan,
    read_labels,
    remove_written,
    write_embedded,
)
from annotator.data.formats.plan import EmbeddedChanged, EmbeddedImage


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _labelme(path: Path, image_name: str, data: bytes, label: str = "thing") -> None:
    h, w = Image.open(io.BytesIO(data)).size[::-1]
    box = [[w * 0.2, h * 0.2], [w * 0.8, h * 0.2], [w * 0.8, h * 0.8], [w * 0.2, h * 0.8]]
    doc = {"version": "5.4.1", "flags": {}, "imagePath": image_name, "imageHeight": h, "imageWidth": w,
           "shapes": [{"label": label, "points": box, "group_id": None, "shape_type": "polygon", "flags": {}}],
           "imageData": base64.b64encode(data).decode("ascii")}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def _folder(root: Path, photos, n: int) -> dict:
    """``n`` labelme files, each embedding a different real photo (PNG); name -> its bytes."""
    names = sorted(photos)
    out = {}
    for i in range(n):
        pixels = photos[names[i % len(names)]]
        pixels = np.ascontiguousarray(np.roll(pixels, i, axis=1))  # each one different
        data = _png(pixels)
        _labelme(root / f"img{i:02d}.json", f"img{i:02d}.png", data)
        out[f"img{i:02d}.png"] = data
    return out


def _bytes_inside(obj, seen=None) -> list:
    """Every bytes-like value reachable through the plan's dataclasses, lists and dicts."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return [obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [b for f in dataclasses.fields(obj) for b in _bytes_inside(getattr(obj, f.name), seen)]
    if isinstance(obj, dict):
        return [b for v in obj.values() for b in _bytes_inside(v, seen)]
    if isinstance(obj, (list, tuple)):
        return [b for v in obj for b in _bytes_inside(v, seen)]
    return []


def test_the_plan_holds_a_reference_to_each_embedded_image_not_its_bytes(tmp_path, photos):
    root = tmp_path / "lm"
    images = _folder(root, photos, 12)
    total = sum(len(d) for d in images.values())
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        plan = read_labels(root, "labelme")
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(plan.images) == 12 and total > 3_000_000  # 12 photos, ~0.35 MB each as PNG
    # the masks (compressed RLE) and report lines remain; the ~4 MB of images do not
    assert held < total / 20, f"the plan holds {held} bytes for {total} bytes of embedded images"
    assert [b for b in _bytes_inside(plan) if len(b) > 1000] == []  # (RLE counts are str)
    for img in plan.images:
        assert isinstance(img.data, EmbeddedImage) and img.data.source == root / img.path.with_suffix(".json").name
        assert img.data.size == len(images[img.path.name]) and img.data.read() == images[img.path.name]
        assert not img.path.exists()  # nothing written by reading


def test_a_json_changed_after_reading_is_reported_and_its_image_not_written(tmp_path, photos):
    root = tmp_path / "lm"
    images = _folder(root, photos, 3)
    plan = read_labels(root, "labelme")
    # img01.json now embeds another picture; img02.json is gone
    _labelme(root / "img01.json", "img01.png", _png(photos["coffee"]))
    (root / "img02.json").unlink()
    with pytest.raises(EmbeddedChanged, match="img01.json changed since it was read: its 'imageData' is another"):
        plan.images[1].data.read()
    ds = Dataset.open(tmp_path / "work.json")
    changes, report = apply_plan(ds, plan)
    assert (root / "img00.png").read_bytes() == images["img00.png"]
    assert not (root / "img01.png").exists() and not (root / "img02.png").exists()
    assert f"img01.json: {root / 'img01.json'} changed since it was read: its 'imageData' is another image now; " \
           "not imported" in report
    assert f"img02.json: {root / 'img02.json'} cannot be read again (No such file or directory); " \
           "not imported" in report
    assert [ds.images[i].file_name for i in changes.images] == ["lm/img00.png"] and len(changes.annotations) == 1


def test_write_embedded_then_apply_adds_what_apply_alone_adds(tmp_path, photos):
    root = tmp_path / "lm"
    images = _folder(root, photos, 3)
    (root / "img02.png").write_bytes(images["img02.png"])  # already there, the same bytes: counts as written before
    plan = read_labels(root, "labelme", images=root / "nowhere")
    (root / "img02.png").unlink()
    (root / "img02.png").write_bytes(images["img02.png"])
    plan.images[2].data  # still a reference
    writes = write_embedded(plan)
    assert [p.name for p, _ in writes.written] == ["img00.png", "img01.png"]  # created by this call
    assert all((root / n).read_bytes() == d for n, d in images.items())
    ds = Dataset.open(tmp_path / "work.json")
    changes, report = apply_plan(ds, writes.plan, embedded_written=True)
    assert len(changes.images) == 3 and len(changes.annotations) == 3 and report == writes.plan.report
    # what write_embedded wrote, and only that, can be removed again (a file changed since is left alone)
    (root / "img01.png").write_bytes(b"edited by the user")
    assert remove_written(writes.written) == []
    assert not (root / "img00.png").exists() and (root / "img01.png").read_bytes() == b"edited by the user"
    assert (root / "img02.png").read_bytes() == images["img02.png"]


def test_a_cancelled_write_deletes_what_it_wrote(tmp_path, photos):
    root = tmp_path / "lm"
    _folder(root, photos, 4)
    plan = read_labels(root, "labelme")
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append((done, total))
        if done == 2:
            cancel.set()

    made: list = []
    with pytest.raises(ImportCancelled):
        write_embedded(plan, progress, cancel, made)
    assert seen == [(1, 4), (2, 4)] and len(made) == 2
    assert sorted(p.name for p in root.iterdir()) == [f"img{i:02d}.json" for i in range(4)]


@pytest.mark.parametrize("json_name, image_name, fmt", [("anim.json", "anim.gif", "GIF"),
                                                        ("hidden.json", ".hidden.png", "PNG")])
def test_an_embedded_image_the_image_list_would_not_show_is_not_written(tmp_path, json_name, image_name, fmt):
    """Found in review: an embedded GIF (or a hidden name) was written and listed, then gone from the image
    list at the next open (the folder lists only the usual image types, hidden files not)."""
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(out, format=fmt)
    _labelme(tmp_path / json_name, image_name, out.getvalue())
    plan = read_labels(tmp_path, "labelme")
    assert plan.images == []
    assert any("the image list does not show" in line for line in plan.report), plan.report
    assert not (tmp_path / image_name).exists()
