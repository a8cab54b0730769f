"""annotator.data.savecache: a save reuses unchanged records' lines, and is never stale.

Every check compares the cached text with a fresh full serialisation
(``dumps_coco(ds.to_coco())``, the format before the cache) after a change
made through each mutation path: the Dataset's methods, attribute assignment
on a record, and in-place changes of an image record's containers (an
annotation's are not changed in place: the contract VERIFY mode checks).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from annotator.data import savecache
from annotator.data.document import Annotation, Category, Dataset, ImageRecord, SaveError, dumps_coco
from annotator.data.savecache import LineCache

H, W = 24, 32


def _mask(seed):
    m = np.zeros((H, W), bool)
    rng = np.random.default_rng(seed)
    y, x = int(rng.integers(0, H - 5)), int(rng.integers(0, W - 5))
    m[y : y + 5, x : x + 4] = True
    return m


@pytest.fixture
def ds(tmp_path):
    ds = Dataset.open(tmp_path / "annotations.json")
    ds.add_category("cat")
    ds.add_category("dog")
    for i in range(3):
        rec = ds.ensure_image(f"img{i}.png", W, H)
        for j in range(4):
            ds.add_annotation(ds.make_annotation(rec.id, 1 + j % 2, _mask(10 * i + j), predicted_iou=0.5, model="vit_t"))
    ds.to_json()  # fill the cache
    yield ds
    ds.close()


def _fresh(ds, root=None):
    return dumps_coco(ds.to_coco(root))


def _check(ds):
    assert ds.to_json() == _fresh(ds)
    assert ds.to_json() == _fresh(ds)  # and again, from the cache just refilled


def test_cached_text_is_the_full_serialisation_byte_for_byte(ds, tmp_path):
    assert ds.to_json() == _fresh(ds)
    ds.extra["tool"] = {"name": "x", "list": [1, 2.5, None]}
    ds.info["year"] = 2026
    ds.save()
    assert ds.path.read_bytes() == _fresh(ds).encode("utf-8")
    reopened = Dataset.open(ds.path)
    assert reopened.to_json() == ds.to_json()


def test_every_dataset_method_that_changes_a_record(ds):
    a1 = min(ds.annotations)
    ds.set_annotation_category(a1, 2)
    _check(ds)
    old = ds.annotations[a1 + 1]
    new = dataclasses.replace(old, segmentation=ds.make_annotation(old.image_id, 1, _mask(99)).segmentation)
    ds.replace_annotation(new)
    _check(ds)
    gone = ds.remove_annotation(a1 + 2)
    _check(ds)
    ds.add_annotation(dataclasses.replace(old, id=a1 + 2))  # the removed id back, with other content
    _check(ds)
    ds.replace_annotation(gone)
    _check(ds)
    removed = ds.remove_category(2, reassign_to=1)
    _check(ds)
    ds.restore_category(removed)
    _check(ds)
    removed = ds.remove_category(1)
    _check(ds)
    ds.restore_category(removed)
    _check(ds)
    ds.rename_category(1, "kitten")
    ds.recolor_category(1, (1, 2, 3))
    _check(ds)
    ds.set_image_state(1, "done")
    _check(ds)
    ds.set_image_digest(2, "a" * 64)
    _check(ds)
    ds.set_image_digest(2, None)
    _check(ds)
    ds.ensure_image("img0.png", W, H, file_sha256="b" * 64)
    _check(ds)
    new_img = ds.ensure_image("new.png", W, H)
    _check(ds)
    ds.remove_image(new_img.id)
    _check(ds)
    ds.restore_image(new_img)
    _check(ds)


def test_direct_changes_of_records_are_seen(ds):
    ann = ds.annotations[min(ds.annotations)]
    rec = ds.images[1]
    other_rle = ds.make_annotation(1, 1, _mask(7)).segmentation
    changes = [
        lambda: setattr(ann, "category_id", 2),
        lambda: setattr(ann, "area", ann.area + 0.0),  # same value, new object: still right
        lambda: setattr(ann, "area", float(ann.area) + 1),
        lambda: setattr(ann, "bbox", [v + 1 for v in ann.bbox]),
        lambda: setattr(ann, "iscrowd", 1),
        lambda: setattr(ann, "iscrowd", True),  # written 1 either way
        lambda: setattr(ann, "segmentation", other_rle),
        lambda: setattr(ann, "extra", {**ann.extra, "predicted_iou": 1}),  # 0.5 -> 1
        lambda: setattr(ann, "extra", {**ann.extra, "predicted_iou": 1.0}),  # 1 == 1.0, written "1" / "1.0"
        lambda: setattr(ann, "extra", {**ann.extra, "predicted_iou": True}),  # 1.0 == True, written "true"
        lambda: setattr(ann, "extra", {**ann.extra, "predicted_iou": -0.0}),
        lambda: setattr(ann, "extra", {**ann.extra, "predicted_iou": 0.0}),  # -0.0 == 0.0, written otherwise
        lambda: setattr(ann, "extra", {**ann.extra, "np": np.float32(0.25)}),
        lambda: setattr(ann, "extra", {**ann.extra, "nan": float("nan")}),  # written as null
        lambda: setattr(ann, "id", ann.id),
        # image records: in place too (the Dataset changes their extra in place), deep, type-exact
        lambda: setattr(rec, "file_name", "renamed.png"),
        lambda: setattr(rec, "width", W),
        lambda: rec.extra.__setitem__("state", "skipped"),
        lambda: rec.extra.__setitem__("n", 1),
        lambda: rec.extra.__setitem__("n", 1.0),
        lambda: rec.extra.__setitem__("n", True),
        lambda: rec.extra.__setitem__("n", -0.0),
        lambda: rec.extra.__setitem__("n", 0.0),
        lambda: rec.extra.__setitem__("tags", ["a", ["b"]]),
        lambda: rec.extra["tags"][1].append("c"),
        lambda: rec.extra.update({"z": 1, "tags": rec.extra.pop("tags")}),  # key order
        lambda: rec.extra.__setitem__("np", np.int64(3)),  # not marshallable: never cached
        lambda: rec.extra.pop("np"),
        lambda: setattr(ds.categories[1], "name", "bird"),
    ]
    for change in changes:
        change()
        _check(ds)


def test_an_annotation_changed_in_place_is_caught_by_verify_mode(ds, monkeypatch):
    """The one thing the annotation lines rest on (see the module docstring); VERIFY checks it."""
    ann = ds.annotations[min(ds.annotations)]
    ann.extra["predicted_iou"] = 0.75  # in place: against the contract
    monkeypatch.setattr(savecache, "VERIFY", False)  # (the tests' conftest turns it on)
    assert ds.to_json() != _fresh(ds)  # (why the contract exists)
    monkeypatch.setattr(savecache, "VERIFY", True)
    with pytest.raises(savecache.StaleCacheError, match="changed in place"):
        ds.to_json()
    with pytest.raises(savecache.StaleCacheError):  # not a SaveError: the window would only report it
        ds.save()
    assert ds.dirty


def test_save_as_rebases_names_and_keeps_the_cache_right(ds, tmp_path):
    other = tmp_path / "sub" / "copy.json"
    other.parent.mkdir()
    assert ds.to_json(other.parent) == _fresh(ds, other.parent)
    ds.save(other)
    assert other.read_bytes() == _fresh(ds).encode("utf-8")
    assert ds.images[1].file_name == "../img0.png"
    _check(ds)


def test_unchanged_lines_are_reused_and_removed_records_dropped(ds):
    cache = ds._annotation_lines
    before = dict(zip(sorted(ds.annotations), cache.lines(ds.annotations[i] for i in sorted(ds.annotations))))
    first = min(ds.annotations)
    ds.set_annotation_category(first, 2)
    ds.remove_annotation(first + 1)
    after = dict(zip(sorted(ds.annotations), cache.lines(ds.annotations[i] for i in sorted(ds.annotations))))
    assert after[first] != before[first]
    assert all(after[i] is before[i] for i in after if i != first)  # the same objects: not serialised again
    assert len(cache) == len(ds.annotations)


def test_a_value_json_cannot_hold_fails_every_save_and_leaves_the_cache_usable(ds):
    ann = ds.annotations[min(ds.annotations)]
    good = ann.extra
    ann.extra = {**good, "bad": object()}
    with pytest.raises(TypeError):
        ds.to_json()
    with pytest.raises(SaveError, match="cannot be written as JSON"):
        ds.save()
    ann.extra = good
    _check(ds)


@pytest.mark.parametrize("record_type", [Annotation, ImageRecord])
def test_the_key_covers_every_field_of_the_record(record_type):
    """A field added to a record without adding it to its cache key fails here."""
    if record_type is Annotation:
        rec = Annotation(id=1, image_id=2, category_id=3, segmentation={"size": [H, W], "counts": "0"},
                         area=1.0, bbox=[0.0, 0.0, 1.0, 1.0], iscrowd=0, extra={"k": 1})
        cache = savecache.annotation_lines()
        other = {"segmentation": {"size": [H, W + 1], "counts": "0"}, "bbox": [0.0, 0.0, 1.0, 2.0], "extra": {"k": 2}}
    else:
        rec = ImageRecord(id=1, file_name="a.png", width=3, height=4, extra={"k": 1})
        cache = savecache.image_lines()
        other = {"file_name": "b.png", "extra": {"k": 2}}
    key = cache._key(rec)
    assert key is not None and cache._same(key, rec)
    for f in dataclasses.fields(record_type):
        value = other.get(f.name, getattr(rec, f.name) + 1 if isinstance(getattr(rec, f.name), (int, float)) else None)
        assert value is not None, f"no test value for {record_type.__name__}.{f.name}"
        changed = dataclasses.replace(rec, **{f.name: value})
        assert changed.to_json() != rec.to_json()
        assert not cache._same(key, changed), f"{record_type.__name__}.{f.name} is not in its cache key"


def test_dumps_item_is_json_dumps():
    for value in [{"a": 1, "b": [1.5, None, True], "c": "é\u2028"}, [], "x", 1e300, -0.0]:
        assert savecache.dumps_item(value) == json.dumps(value, ensure_ascii=False, allow_nan=False,
                                                         separators=(", ", ": "))
    with pytest.raises(ValueError):
        savecache.dumps_item(float("nan"))


def test_line_cache_without_a_fingerprint_serialises_every_time():
    cache: LineCache[Category] = LineCache(lambda c: None, lambda key, c: False)
    cat = Category(id=1, name="a", color=(1, 2, 3))
    first = cache.lines([cat])
    cat.name = "b"
    assert cache.lines([cat]) != first
    assert len(cache) == 0


def test_prepare_save_fills_the_line_caches_so_the_first_save_reuses_them(tmp_path):
    """The window calls prepare_save while a folder opens: the first autosave (the first accept) then
    serialises only what changed."""
    import json as _json

    path = tmp_path / "annotations.json"
    seg = [[1, 1, 4, 1, 4, 3]]
    path.write_text(_json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 6, "height": 4}],
        "categories": [{"id": 1, "name": "c"}],
        "annotations": [{"id": i, "image_id": 1, "category_id": 1, "segmentation": seg, "iscrowd": 0}
                        for i in range(1, 51)],
    }))  # fmt: skip
    ds = Dataset.open(path)
    assert len(ds._annotation_lines) == 0
    ds.prepare_save()
    assert len(ds._annotation_lines) == 50 and len(ds._image_lines) == 1
