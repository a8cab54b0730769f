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
ids = st.integers(-1, 5) | scalars | st.lists(st.integers(0, 2), max_size=2)  # (unhashable ids crashed once)
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


# -- the batched check of counts strings (inspect_coco's fast path) refuses exactly what the one-by-one check does


def _one_by_one(counts: str, pixels: int) -> bool:
    try:
        runs = coco._counts_from_string(counts)
    except SegmentationError:
        return False
    return int(runs.sum()) == pixels


def _number(v: int) -> str:
    """One run length (or delta) in pycocotools' string encoding."""
    out = ""
    more = True
    while more:
        c = v & 0x1F
        v >>= 5
        more = v != -1 if c & 0x10 else v != 0  # as pycocotools' rleToString
        if more:
            c |= 0x20
        out += chr(c + 48)
    return out


counts_strings = (
    valid_rles().map(lambda seg: seg["counts"] if isinstance(seg.get("counts"), str) else "")
    | st.text(alphabet=[chr(c) for c in range(48, 112)], max_size=12)
    | st.text(max_size=6)
    | st.sampled_from(["PPPPPPP1", "PPPPPP1", "1PPPPPPP0", "PPPPPPPP0", "Ooooooo1", "oooooo1"])  # 6 to 9 characters
    | st.lists(st.integers(-(2**36), 2**36) | st.sampled_from([0, 1, 2**32 - 1, 2**32, -1, 2**34]),
               max_size=6).map(lambda vs: "".join(_number(v) for v in vs))
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(st.tuples(counts_strings, st.integers(0, 40) | st.sampled_from([2**32 - 1, 2**32, 2**33])),
                      max_size=12),
       batch=st.sampled_from([1, 7, 1 << 20]))
def test_batched_counts_check_agrees_with_the_one_by_one_check(items, batch):
    strings = [s for s, _ in items]
    pixels = [p for _, p in items]
    want = [_one_by_one(s, p) for s, p in items]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(coco, "_BATCH_CHARS", batch)
        assert coco.valid_counts_strings(strings, pixels).tolist() == want


def test_the_number_encoder_of_these_tests_is_pycocotools_own():
    runs = [5, 0, 2**20, 7, 3, 2**31, 1]
    rle = coco.mask_utils.frPyObjects({"size": [1, sum(runs)], "counts": runs}, 1, sum(runs))
    deltas = runs[:3] + [runs[i] - runs[i - 2] for i in range(3, len(runs))]
    assert "".join(_number(v) for v in deltas) == rle["counts"].decode()


def test_batched_counts_check_on_real_masks_with_their_true_totals():
    rng = np.random.default_rng(3)
    strings, pixels = [], []
    for k in range(300):
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        strings.append(coco.encode_mask(rng.random((h, w)) < rng.random())["counts"])
        pixels.append(h * w + (k % 7 == 0))  # every seventh total is off by one
    got = coco.valid_counts_strings(strings, pixels).tolist()
    assert got == [k % 7 != 0 for k in range(300)]


def test_areas_and_boxes_of_many_masks_at_once_match_one_by_one():
    rng = np.random.default_rng(4)
    rles = [coco.encode_mask(rng.random((9, 13)) < 0.1 * (k % 5)) for k in range(600)]  # > 255: in chunks
    areas, boxes = coco.rle_areas_and_bboxes(rles)
    assert areas == [coco.rle_area(r) for r in rles]
    assert boxes == [coco.rle_bbox(r) for r in rles]
    assert all(type(a) is float for a in areas) and all(type(v) is float for b in boxes for v in b)
    assert coco.rle_areas_and_bboxes([]) == ([], [])
