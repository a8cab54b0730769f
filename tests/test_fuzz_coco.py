"""Fuzzing the COCO loader: any input gives a clean load or a DatasetError.

pycocotools' C code trusts its input (run lengths past the buffer, strings cut
mid-number, huge polygon coordinates); a crash here would take the whole test
process down, which is exactly what these tests are for. Bounded: a few
hundred examples each, no deadline per example, a few seconds in total.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotator.data import coco
from annotator.data.coco import SegmentationError
from annotator.data.document import Dataset, DatasetError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-3, 12)
    | st.sampled_from([0, 1, 2**31, 2**32, 2**53, 2**64, -(2**63)])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10,
)
ids = st.integers(-1, 5) | scalars
sizes = st.integers(-1, 9) | st.sampled_from([10**5, 2**31, 10**12]) | scalars


@st.composite
def valid_rles(draw):
    """Real compressed RLE of a random small mask (to reach clean loads), maybe damaged."""
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    bits = draw(st.lists(st.booleans(), min_size=h * w, max_size=h * w))
    rle = coco.encode_mask(np.array(bits, dtype=bool).reshape(h, w))
    damage = draw(st.sampled_from(["none", "none", "truncate", "append", "swap", "size", "list"]))
    counts = rle["counts"]
    if damage == "truncate":
        counts = counts[: draw(st.integers(0, max(0, len(counts) - 1)))]
    elif damage == "append":
        counts += draw(st.text(alphabet="0123456789:;<=>?@ABOPQRSo_`", min_size=1, max_size=4))
    elif damage == "swap" and counts:
        i = draw(st.integers(0, len(counts) - 1))
        counts = counts[:i] + draw(st.characters(min_codepoint=32, max_codepoint=130)) + counts[i + 1 :]
    elif damage == "size":
        rle["size"] = draw(st.lists(sizes, max_size=3))
    elif damage == "list":
        counts = draw(st.lists(st.integers(-2, 40) | st.sampled_from([2**32, 2**40]), max_size=6))
    return {"size": rle["size"], "counts": counts}


polygons = st.lists(
    st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-20, 20), max_size=10), max_size=3
)
segmentations = valid_rles() | polygons | st.lists(st.integers(-5, 10), max_size=8) | json_values


def _obj(required, optional=None):
    return st.fixed_dictionaries(required, optional=optional or {})


images = _obj(
    {"id": ids, "file_name": st.sampled_from(["a.png", "b.png", "a.png", ""]) | scalars, "width": sizes, "height": sizes},
    {"license": json_values},
)
categories = _obj({"id": ids, "name": st.sampled_from(["c", "d"]) | scalars}, {"color": json_values})
annotations = _obj(
    {"id": ids, "image_id": ids, "category_id": ids, "segmentation": segmentations},
    {"iscrowd": scalars, "area": scalars, "bbox": json_values, "score": json_values},
)
coco_like = _obj(
    {"images": st.lists(images, max_size=3), "annotations": st.lists(annotations, max_size=4)},
    {"categories": st.lists(categories, max_size=3), "info": json_values, "other": json_values},
)


@st.composite
def nearly_valid(draw):
    """A valid file whose sizes match, so that segmentations get decoded."""
    rles = draw(st.lists(valid_rles(), min_size=1, max_size=3))
    imgs, anns = [], []
    for i, rle in enumerate(rles):
        size = rle["size"]
        if isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size):
            h, w = size
        else:
            h, w = 3, 3
        imgs.append({"id": i + 1, "file_name": f"{i}.png", "width": w, "height": h})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "segmentation": rle})
    data = {"images": imgs, "annotations": anns, "categories": [{"id": 1, "name": "c"}]}
    if draw(st.booleans()):
        key = draw(st.sampled_from(["id", "image_id", "category_id", "iscrowd", "bbox", "area"]))
        draw(st.sampled_from(anns))[key] = draw(scalars)
    return data


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _open_checked(folder, raw: bytes):
    path = folder / "annotations.json"
    path.write_bytes(raw)
    try:
        ds = Dataset.open(path)
    except DatasetError as exc:
        assert str(exc) and exc.problems
        assert path.read_bytes() == raw  # never written on load
        return None
    # a clean load is internally consistent and writes a valid file
    for ann in ds.annotations.values():
        m = ann.mask()
        assert m.shape == ann.size == (ds.images[ann.image_id].height, ds.images[ann.image_id].width)
        assert ann.area == float(m.sum())
    out = json.loads(ds.to_json())
    assert coco.validate_coco(out) == []
    return ds


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=coco_like | json_values)
def test_fuzz_structures(fuzz_dir, data):
    _open_checked(fuzz_dir, json.dumps(data).encode())


@FUZZ
@given(data=nearly_valid())
def test_fuzz_nearly_valid_files(fuzz_dir, data):
    _open_checked(fuzz_dir, json.dumps(data).encode())


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=80) | st.text(max_size=80).map(str.encode))
def test_fuzz_raw_bytes(fuzz_dir, raw):
    _open_checked(fuzz_dir, raw)


@FUZZ
@given(seg=segmentations | st.binary(max_size=12).map(lambda b: {"size": [2, 3], "counts": b}),
       h=st.integers(1, 8), w=st.integers(1, 8))  # fmt: skip
def test_fuzz_segmentation_decoding(seg, h, w):
    try:
        rle = coco.to_compressed_rle(seg, h, w)
    except SegmentationError as exc:
        assert str(exc)
        return
    assert rle["size"] == [h, w] and isinstance(rle["counts"], str)
    m = coco.decode_rle(rle, h, w)
    assert m.shape == (h, w)
    assert coco.rle_area(rle) == float(m.sum())
    assert coco.encode_mask(m) == coco.encode_mask(coco.decode_rle(seg, h, w))
    x, y, bw, bh = coco.rle_bbox(rle)
    assert all(math.isfinite(v) for v in (x, y, bw, bh)) and 0 <= x + bw <= w and 0 <= y + bh <= h
