"""The record of image content digests (annotator/digests.py) and what the window makes of it."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from PIL import Image
from qt_fixtures import FakePredictor, fake_info

from annotator.data.digests import FILENAME, DigestIndex
from annotator.data.digests import file_stamp
from annotator.session.rows import ImageState


def _files(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img_{i:04d}.png"
        p.write_bytes(b"x" * (i + 1))
        paths.append(p)
    return paths


def test_recorded_digests_come_back_while_the_file_is_unchanged(tmp_path):
    index = DigestIndex(tmp_path / "cache" / FILENAME)
    a, b, c = _files(tmp_path / "imgs", 3)
    index.record(a, file_stamp(a), "d-a")
    index.record(b, file_stamp(b), "d-b")
    assert index.lookup([a, b, c]) == {a: "d-a", b: "d-b"}
    b.write_bytes(b"changed")  # another size: the digest no longer describes it
    st = os.stat(a)
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # same size, touched
    assert index.lookup([a, b, c]) == {}
    index.record(b, file_stamp(b), "d-b2")
    assert DigestIndex(index.path).lookup([b]) == {b: "d-b2"}  # persisted; a second process sees it


def test_relative_and_absolute_paths_are_the_same_file(tmp_path, monkeypatch):
    index = DigestIndex(tmp_path / FILENAME)
    (a,) = _files(tmp_path / "imgs", 1)
    index.record(a, file_stamp(a), "d")
    monkeypatch.chdir(tmp_path)
    rel = a.relative_to(tmp_path)
    assert index.lookup([rel]) == {rel: "d"}


def test_many_paths_at_once(tmp_path):
    index = DigestIndex(tmp_path / FILENAME)
    paths = _files(tmp_path / "imgs", 1203)  # more than SQLite binds in one statement
    for p in paths[::2]:
        index.record(p, file_stamp(p), p.name)
    found = index.lookup(paths)
    assert len(found) == 602 and all(found[p] == p.name for p in paths[::2])


def test_an_unreadable_record_is_replaced_and_errors_are_not_raised(tmp_path, caplog):
    path = tmp_path / FILENAME
    path.write_bytes(b"this is not an SQLite file " * 100)
    index = DigestIndex(path)
    (a,) = _files(tmp_path / "imgs", 1)
    assert index.lookup([a]) == {}
    index.record(a, file_stamp(a), "d")
    assert index.lookup([a]) == {a: "d"}
    assert "starting a new one" in caplog.text
    # a record that cannot be written at all (its folder is a file): a warning, no exception
    blocked = DigestIndex(tmp_path / "imgs" / "img_0000.png" / FILENAME)
    blocked.record(a, file_stamp(a), "d")
    assert blocked.lookup([a]) == {}


def test_threads_record_at_once(tmp_path):
    index = DigestIndex(tmp_path / FILENAME)
    paths = _files(tmp_path / "imgs", 40)
    threads = [threading.Thread(target=lambda ps=paths[i::4]: [index.record(p, file_stamp(p), p.name) for p in ps])
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(index.lookup(paths)) == 40


@pytest.mark.gui
def test_a_pre_encoded_folder_shows_as_ready_before_any_image_is_visited(qtbot, make_window, tmp_path):
    """``sam-annotator encode`` fills the cache; the window lists those images as ready, and only those."""
    from annotator.commands import encode as cmd_encode

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (40 + i, 60, 3), np.uint8)).save(folder / f"{i:02d}.png")
    paths = sorted(folder.glob("*.png"))
    pre = fake_info(FakePredictor(), tmp_path / "cache")
    summary = cmd_encode.encode_folder(paths[:3] + paths[4:], pre.model, pre.cache)  # not 03.png
    assert summary.encoded == 4
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(paths[4])  # changed since it was encoded

    pred = FakePredictor(delay=0.5)  # slow: the scan answers first
    w = make_window(folder, fake_info(pred, tmp_path / "cache"))
    s = w.session
    qtbot.waitUntil(lambda: s.image_row(1).state == ImageState.READY and s.image_row(2).state == ImageState.READY,
                    timeout=10_000)
    assert pred.encoded == []  # nothing encoded for that: they were found in the cache
    assert s.image_row(3).state != ImageState.READY and s.image_row(4).state != ImageState.READY
    # another model: those embeddings are not its own, so the rows are no longer ready
    with qtbot.waitSignal(s.modelChanged, timeout=10_000):
        w.use_model(fake_info(FakePredictor(), tmp_path / "other-cache"))
    qtbot.waitUntil(lambda: s.embedding is not None, timeout=10_000)
    assert s.image_row(2).state != ImageState.READY
