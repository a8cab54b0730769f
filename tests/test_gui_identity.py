"""Image identity in the window: a picture replaced by another of the same size under the same name (issue 15).

Its row in the image list is flagged (mark, colour, reason in the tooltip),
the annotations made on the old picture are marked for review in the
annotations panel, an accept on it is refused until the user keeps or
deletes them (bar above the image), and deleting is one undo step.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from PIL import Image
from PySide6.QtCore import Qt
from qt_fixtures import FakePredictor, click_image, close_window, fake_info, key

from annotator.ui.panels import REVIEW_MARK

pytestmark = pytest.mark.gui


def _accept_at(qtbot, w, x, y):
    from PySide6.QtWidgets import QApplication

    s = w.session
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5000)
    n = len(s.dataset.annotations)
    click_image(qtbot, w, x, y)
    qtbot.waitUntil(lambda: s.result is not None and s.result.prompt is s.prompt, timeout=10_000)
    key(qtbot, w, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not s.accepting, timeout=10_000)
    return len(s.dataset.annotations) - n


def _record(working, name):
    coco = json.loads(working.read_text())
    rec = next(i for i in coco["images"] if i["file_name"] == name)
    return rec, [a["id"] for a in coco["annotations"] if a["image_id"] == rec["id"]]


@pytest.fixture
def replaced(qtbot, make_window, image_folder, tmp_path, photos):
    """The folder after two accepts on 01_astronaut.jpg, which was then replaced by another 512 x 512 picture."""
    w = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache-a"))
    qtbot.waitUntil(lambda: w.session.embedding is not None, timeout=10_000)
    assert _accept_at(qtbot, w, 100, 100) == 1 and _accept_at(qtbot, w, 300, 300) == 1
    working = w.session.dataset.path
    image = image_folder / "01_astronaut.jpg"
    rec, ids = _record(working, image.name)
    assert rec["file_sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()  # recorded by the accept
    close_window(w)
    Image.fromarray(photos["coffee"]).resize((512, 512)).save(image, quality=90)  # same name, same size
    return image, working, ids


def test_a_replaced_picture_is_flagged_and_its_annotations_need_review(qtbot, make_window, replaced, tmp_path):
    image, working, ids = replaced
    w = make_window(image.parent, fake_info(FakePredictor(), tmp_path / "cache-b"))
    s = w.session
    qtbot.waitUntil(lambda: bool(s.image_row(0).review), timeout=10_000)
    model = w.images.model
    index = model.index(0)
    assert "another picture" in s.image_row(0).review
    assert model.data(index, Qt.ItemDataRole.DisplayRole).startswith(REVIEW_MARK)
    assert "another picture" in model.data(index, Qt.ItemDataRole.ToolTipRole)
    assert not s.image_row(1).review and not model.data(model.index(1)).startswith(REVIEW_MARK)
    qtbot.waitUntil(lambda: w.annotations.list.count() == 2, timeout=5000)
    assert [r.review for r in s.annotation_rows()] == [True, True]
    assert all(f"{REVIEW_MARK} review" in w.annotations.list.item(i).text() for i in range(2))
    bar = w.safety.identity_bar
    assert bar.isVisible() and "another picture" in bar.label.text()

    # never silently treated as valid: a new accept on it is refused, nothing is written
    qtbot.waitUntil(lambda: s.embedding is not None, timeout=10_000)
    before = working.read_bytes()
    _accept_at(qtbot, w, 200, 200)
    qtbot.waitUntil(lambda: "another picture" in w.statusBar().currentMessage(), timeout=10_000)
    assert sorted(s.dataset.annotations) == sorted(ids) and working.read_bytes() == before

    # delete them: one undo step; undo brings them back, still under review
    bar.delete_button.click()
    qtbot.waitUntil(lambda: not s.image_row(0).review, timeout=5000)
    assert _record(working, image.name)[1] == [] and not bar.isVisible()
    s.undo()
    qtbot.waitUntil(lambda: bool(s.image_row(0).review), timeout=5000)
    assert sorted(_record(working, image.name)[1]) == sorted(ids) and bar.isVisible()

    # keep them: the new picture's digest is recorded, and the image is like any other again
    bar.keep_button.click()
    qtbot.waitUntil(lambda: not s.image_row(0).review, timeout=5000)
    rec, kept = _record(working, image.name)
    assert rec["file_sha256"] == hashlib.sha256(image.read_bytes()).hexdigest() and sorted(kept) == sorted(ids)
    assert not s.dirty and not bar.isVisible() and not any(r.review for r in s.annotation_rows())
    new_digest = rec["file_sha256"]
    s.undo()  # keeping is one undo step too: the old digest and the flag come back
    qtbot.waitUntil(lambda: bool(s.image_row(0).review), timeout=5000)
    assert _record(working, image.name)[0]["file_sha256"] != new_digest and bar.isVisible()
    s.redo()
    qtbot.waitUntil(lambda: not s.image_row(0).review, timeout=5000)
    assert _record(working, image.name)[0]["file_sha256"] == new_digest and not bar.isVisible()
    assert _accept_at(qtbot, w, 200, 200) == 1

    checked = []
    s.identity.checked.connect(lambda: checked.append(True))
    assert w.open_folder(image.parent)  # reopened: nothing to review any more
    qtbot.waitUntil(lambda: bool(checked), timeout=10_000)
    assert not s.image_row(0).review


def test_the_loader_hashes_the_file_so_an_accept_never_does(tmp_path, monkeypatch):
    """The folder-open identity check may keep the background hasher busy for minutes; the accept must not wait for it."""
    from annotator.data import identity
    from annotator.workers.loader import LoaderWorker
    from annotator.workers.messages import LoadJob

    path = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), (10, 200, 30)).save(path)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    worker = LoaderWorker()
    job = LoadJob(1, path)
    worker.finish(job, worker.work(job))

    def no_hashing(*_args):
        raise AssertionError("hashed again")

    monkeypatch.setattr(identity.hashlib, "sha256", no_hashing)
    assert identity.file_sha256(path) == expected
