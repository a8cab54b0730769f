"""Issue 15, classes 1 and 5: every document that loads can be saved; names always fit; leftovers go.

* A property (Hypothesis): any working file the loader accepts saves and
  reloads equal; odd Unicode (lone surrogates, NUL, bidi controls, emoji) in
  every string field and in file names, deep nesting and huge or out-of-range
  numbers in extra fields. What it does not accept gets a DatasetError.
* Any failure on the save path is one SaveError (an OSError), the document
  stays dirty and usable, and save_copy keeps the work elsewhere.
* Temporary, backup, lock and conflict names fit NAME_MAX whatever the working
  file is called; our stale temporary files (and only those) go on the next open.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from annotator.data import atomic, coco
from annotator.data.atomic import remove_stale_temps
from annotator.data.document import Dataset, DatasetError
from annotator.data.files import fit_name, name_max
from annotator.data.imageio import list_images
from annotator.data.lock import lock_path
from annotator.data.workfile import SaveError, conflict_path

PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(autouse=True)
def _new_session(monkeypatch):
    """Each test is a fresh session for the once-per-session backups."""
    monkeypatch.setattr(atomic, "_backed_up", set())


# ---------------------------------------------------------------------------------------------
# strategies: odd strings and extras, as JSON text
# ---------------------------------------------------------------------------------------------

odd_chars = st.one_of(
    st.characters(),
    st.integers(0xD800, 0xDFFF).map(chr),  # lone surrogates: "\udcff" in a file, non-UTF-8 file names
    st.sampled_from(["\x00", "\u202e", "\ufeff", "\U0001f600", "\n", '"', "\\", "/", ".."]),
)
odd_text = st.lists(odd_chars, max_size=8).map("".join)

# numbers written as literals into the JSON text: out of float range, NaN, long integers
SPECIAL_NUMBERS = ["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1" + "0" * 400, "-123456789012345678901234567890"]
special = st.integers(0, len(SPECIAL_NUMBERS) - 1).map(lambda i: f"__NUM{i}__")

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | odd_text | special


def nested(depth: int):
    value = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


extras = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3), max_leaves=8
) | st.integers(1, 64).map(nested)  # as deep as the loader keeps
too_deep = st.sampled_from([65, 200]).map(nested)  # refused, with the place named


@st.composite
def documents(draw):
    n_images = draw(st.integers(1, 3))
    images = []
    for i in range(n_images):
        name = draw(odd_text.filter(bool)) + f"_{i}.png"  # distinct
        images.append({"id": i + 1, "file_name": name, "width": 6, "height": 4,
                       **draw(st.dictionaries(odd_text.filter(lambda k: k not in ("id", "file_name", "width", "height")),
                                              extras, max_size=2))})
    categories = [{"id": 1, "name": draw(odd_text.filter(bool)), "supercategory": draw(odd_text),
                   **draw(st.dictionaries(st.sampled_from(["note", "x"]), extras, max_size=2))}]
    annotations = []
    for a in range(draw(st.integers(0, 3))):
        mask = np.array(draw(st.lists(st.booleans(), min_size=24, max_size=24))).reshape(4, 6)
        annotations.append({"id": a + 1, "image_id": draw(st.integers(1, n_images)), "category_id": 1,
                            "segmentation": coco.encode_mask(mask), "iscrowd": 0,
                            **draw(st.dictionaries(st.sampled_from(["predicted_iou", "model", "é"]), extras, max_size=2))})
    doc = {"info": draw(extras), "licenses": draw(st.lists(extras, max_size=2)), "images": images,
           "annotations": annotations, "categories": categories}
    doc.update(draw(st.dictionaries(st.sampled_from(["extra_top", "\udcff", "🙂"]), extras | too_deep, max_size=2)))
    text = json.dumps(doc, ensure_ascii=True)  # lone surrogates become \udXXX escapes, as another tool may write
    for i, literal in enumerate(SPECIAL_NUMBERS):
        text = text.replace(f'"__NUM{i}__"', literal)
    return text


@PROPERTY
@given(text=documents())
def test_any_document_the_loader_accepts_saves_and_reloads_equal(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("doc")
    path = folder / "annotations.json"
    path.write_text(text, encoding="utf-8")
    try:
        first = Dataset.open(path)
    except DatasetError as exc:  # refused at load, with our message: fine
        assert str(exc).startswith(str(path))
        return
    before = first.to_coco()
    first.add_category("added")  # make it dirty, as a user would
    first.save()
    assert not first.dirty
    again = Dataset.open(path)
    assert again.to_coco() == first.to_coco()
    before["categories"] = again.to_coco()["categories"][:-1]
    assert {k: v for k, v in again.to_coco().items() if k != "categories"} == {
        k: v for k, v in before.items() if k != "categories"
    }
    json.loads(path.read_bytes().decode("utf-8"))  # strict UTF-8 JSON on disk


def _doc_text(**extra) -> str:
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 2, "height": 2}], "annotations": [],
           "categories": [{"id": 1, "name": "c"}]}
    doc.update(extra)
    return json.dumps(doc)


def test_an_integer_too_long_for_python_gives_our_message(tmp_path):
    p = tmp_path / "annotations.json"
    p.write_text(_doc_text().replace('"annotations": []', '"annotations": [], "n": ' + "9" * 5000))
    with pytest.raises(DatasetError, match="integer with thousands of digits"):
        Dataset.open(p)


def test_extra_fields_nested_too_deep_are_refused_with_the_place(tmp_path):
    p = tmp_path / "annotations.json"
    p.write_text(_doc_text(deep=nested(200)))
    with pytest.raises(DatasetError, match=r"top level\['deep'\].*nested more than 64 levels"):
        Dataset.open(p)


def test_out_of_range_numbers_are_read_as_null_and_noted(tmp_path):
    p = tmp_path / "annotations.json"
    p.write_text(_doc_text(score="__X__").replace('"__X__"', "1e400"))
    ds = Dataset.open(p)
    assert ds.extra["score"] is None
    assert ds.load_notes and "1 number(s)" in ds.load_notes[0]


def test_a_file_name_with_nul_is_refused_at_load(tmp_path):
    p = tmp_path / "annotations.json"
    p.write_text(_doc_text().replace('"a.png"', '"a\\u0000.png"'))
    with pytest.raises(DatasetError, match="NUL"):
        Dataset.open(p)


# ---------------------------------------------------------------------------------------------
# the example of the issue: an image whose file name is not UTF-8
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="needs a file system that stores any bytes")
def test_an_image_name_that_is_not_utf8_is_kept_and_saved(tmp_path):
    raw_name = os.fsencode(str(tmp_path)) + b"/caf\xe9 \xff.png"
    fd = os.open(raw_name, os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(os.fsdecode(raw_name), format="PNG")
    (path,) = list_images(tmp_path)
    ds = Dataset.open(tmp_path / "annotations.json")
    rec = ds.ensure_image(ds.relative_name(path), 6, 4)
    cat = ds.add_category("thing")
    ds.add_annotation(ds.make_annotation(rec.id, cat.id, np.ones((4, 6), bool)))
    ds.save()  # raised UnicodeEncodeError (not an OSError) before: every later save was lost

    again = Dataset.open(tmp_path / "annotations.json")
    (rec2,) = again.images.values()
    assert os.fsencode(again.image_path(rec2)) == raw_name  # the same bytes on disk
    assert again.check_image_sizes() == []
    from pycocotools.coco import COCO  # what a trainer would read

    api = COCO(str(tmp_path / "annotations.json"))
    assert os.path.exists(os.path.join(str(tmp_path), api.imgs[rec2.id]["file_name"]))


# ---------------------------------------------------------------------------------------------
# every failure is a SaveError, the document stays dirty and usable
# ---------------------------------------------------------------------------------------------


def _small_doc(tmp_path) -> Dataset:
    ds = Dataset.open(tmp_path / "annotations.json")
    rec = ds.ensure_image("a.png", 6, 4)
    cat = ds.add_category("thing")
    ds.add_annotation(ds.make_annotation(rec.id, cat.id, np.eye(4, 6, dtype=bool)))
    return ds


@pytest.mark.parametrize("failure", ["runtime", "unencodable", "recursion", "oserror"])
def test_any_exception_while_saving_is_a_save_error_and_the_document_stays_dirty(tmp_path, monkeypatch, failure):
    ds = _small_doc(tmp_path)
    ds.save()
    ds.add_category("second")
    on_disk = (tmp_path / "annotations.json").read_bytes()
    if failure == "runtime":
        monkeypatch.setattr("annotator.data.workfile.atomic_write_bytes",
                            lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    elif failure == "unencodable":
        ds.images[1].extra["x"] = object()
    elif failure == "recursion":
        ds.extra["deep"] = nested(5000)
    else:
        monkeypatch.setattr("annotator.data.workfile.atomic_write_bytes",
                            lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(SaveError) as info:
        ds.save()
    assert isinstance(info.value, OSError) and info.value.strerror  # the window shows exc.strerror
    assert ds.dirty
    assert (tmp_path / "annotations.json").read_bytes() == on_disk
    if failure == "oserror":
        assert info.value.errno == errno.ENOSPC and "disk is full" in info.value.strerror
    # still usable: undo the cause, edit, save
    monkeypatch.undo()
    monkeypatch.setattr(atomic, "_backed_up", set())
    ds.images[1].extra.pop("x", None)
    ds.extra.pop("deep", None)
    ds.add_category("third")
    ds.save()
    assert not ds.dirty and Dataset.open(tmp_path / "annotations.json").category_by_name("third")


def test_save_copy_keeps_the_work_elsewhere_and_leaves_the_document_dirty(tmp_path):
    ds = _small_doc(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    copy = ds.save_copy(tmp_path / "elsewhere" / "copy.json")
    assert ds.dirty and ds.path == tmp_path / "annotations.json"
    other = Dataset.open(copy)
    assert other.images[1].file_name == "../a.png"  # relative to the copy's folder
    assert len(other.annotations) == 1
    with pytest.raises(SaveError, match="working file itself"):
        ds.save_copy(tmp_path / "annotations.json")


# ---------------------------------------------------------------------------------------------
# names within NAME_MAX; leftovers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [240, 255])
def test_a_long_working_file_name_saves_in_every_later_session(tmp_path, monkeypatch, length):
    limit = name_max(tmp_path)
    name = "a" * (min(length, limit) - len(".json")) + ".json"
    path = tmp_path / name
    for session in range(3):
        monkeypatch.setattr(atomic, "_backed_up", set())
        ds = Dataset.open(path, lock=True)
        ds.add_category(f"session {session}")
        ds.save()  # failed with ENAMETOOLONG for the temporary or the backup name before
        ds.close()
    assert len(Dataset.open(path).categories) == 3
    names = os.listdir(tmp_path)
    assert all(len(os.fsencode(n)) <= limit for n in names)
    assert sum(n.endswith(".bak") for n in names) == 2  # sessions 2 and 3 backed up the file first
    assert not any(n.endswith(".tmp") or n.endswith(".lock") for n in names)
    for derived in (lock_path(path), conflict_path(path)):
        assert len(os.fsencode(derived.name)) <= limit


def test_fit_name_keeps_short_names_and_shortens_long_ones_distinctly():
    assert fit_name("annotations.json", 18) == "annotations.json"
    a, b = fit_name("é" * 200 + "1", 18), fit_name("é" * 200 + "2", 18)
    assert a != b and len(os.fsencode(a)) + 18 <= 255 and a.startswith("é")


_KILLED_WRITER = r"""
import sys
from annotator.data.atomic import atomic_write_bytes
print("ready", flush=True)
while True:
    atomic_write_bytes(sys.argv[1], b'{"images": [], "annotations": [], "categories": []}' + b" " * 20_000_000)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_temporary_files_left_by_a_killed_save_are_removed_on_the_next_open(tmp_path):
    path = tmp_path / "annotations.json"
    Dataset.open(path).save()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    leftovers: list = []
    for attempt in range(20):  # kill it until one kill lands in the middle of a write
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path)], env=env, stdout=subprocess.PIPE)
        try:
            assert proc.stdout.readline().strip() == b"ready"
            deadline = time.monotonic() + 30
            while not leftovers and time.monotonic() < deadline:
                leftovers = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            proc.stdout.close()
        leftovers = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
        if leftovers:
            break
    assert leftovers, "no kill landed during a write"
    theirs = tmp_path / ".other.json.0123456789ab.tmp"
    theirs.write_bytes(b"someone else's")
    young = tmp_path / ".annotations.json.aaaaaaaaaaaa.tmp"
    young.write_bytes(b"being written right now")
    old = time.time() - 3600
    for n in leftovers + [theirs.name]:
        os.utime(tmp_path / n, (old, old))

    ds = Dataset.open(path, lock=True)
    try:
        remaining = sorted(n for n in os.listdir(tmp_path) if n.endswith(".tmp"))
        assert remaining == sorted([theirs.name, young.name])  # only ours, only old ones went
    finally:
        ds.close()


def test_remove_stale_temps_leaves_a_fifo_with_our_name_alone(tmp_path):
    fifo = tmp_path / ".annotations.json.0123456789ab.tmp"
    os.mkfifo(fifo)
    old = time.time() - 3600
    os.utime(fifo, (old, old))
    assert remove_stale_temps(tmp_path / "annotations.json") == []
    assert fifo.exists()
