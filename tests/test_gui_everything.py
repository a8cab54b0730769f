"""Segment everything in the window: background run with progress and Cancel, review, accept, undo.

The first tests use a fake generator (deterministic squares, a gate to hold
a run) for the window's logic; the last two run the real
:class:`sam_core.AutomaticMaskGenerator` with MobileSAM on a real photo, with
``session.everything.options`` lowered to a coarse grid to stay quick.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
from PySide6.QtCore import Qt
from qt_fixtures import FakePredictor, click_image, close_window, drag_image, fake_info, key

from annotator.data import coco

from annotator.workers import base as workers

pytestmark = pytest.mark.gui

LEFT = Qt.MouseButton.LeftButton
CTRL = Qt.KeyboardModifier.ControlModifier


class FakeGenerator:
    """Squares of side 60 at (40 + 100 i, 40 + 100 j); a ``gate`` holds the run until set; honours cancel."""

    def __init__(self, n: int = 4, gate: threading.Event | None = None) -> None:
        self.n = n
        self.gate = gate
        self.runs = 0

    def __call__(self, model, options):  # the controller's make_generator(model, options)
        self.options = options
        return self

    def generate(self, image, embedding=None, progress=None, cancel=None):
        from sam_core.amg import Cancelled

        self.runs += 1
        h, w = image.shape[:2]
        assert embedding is not None and tuple(embedding.original_size) == (h, w)
        total = 1 + self.n
        progress(0, total)
        progress(1, total)
        out = []
        for i in range(self.n):
            while self.gate is not None and not self.gate.wait(0.01):
                if cancel.is_set():
                    raise Cancelled()
            if cancel.is_set():
                raise Cancelled()
            x, y = 40 + 100 * (i % 4), 40 + 100 * (i // 4)
            m = np.zeros((h, w), bool)
            m[y:y + 60, x:x + 60] = True
            out.append({
                "segmentation": coco.encode_mask(m), "area": int(m.sum()), "bbox": [x, y, 60, 60],
                "predicted_iou": 0.95 - 0.01 * i, "stability_score": 0.97, "point_coords": [[x + 30, y + 30]],
                "crop_box": [0, 0, w, h],
            })
            progress(2 + i, total)
        return out


def _ready(qtbot, w, timeout=10_000):
    qtbot.waitUntil(lambda: w.session.embedding is not None, timeout=timeout)


def _review(qtbot, w, timeout=30_000):
    qtbot.waitUntil(lambda: w.session.everything.reviewing, timeout=timeout)
    return w.session.everything.review


@pytest.fixture
def fake_window(make_window, image_folder, tmp_path):
    def make(gen: FakeGenerator):
        w = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache"))
        w.session.everything.make_generator = gen
        return w

    return make


def test_review_toggle_accept_in_one_undo_step(qtbot, fake_window):
    gen = FakeGenerator(n=4)
    w = fake_window(gen)
    s, ev = w.session, w.session.everything
    _ready(qtbot, w)
    assert w.toolbar.widgetForAction(w.actions_by_name["segment_everything"]).text() == "Segment Everything"
    key(qtbot, w, Qt.Key.Key_E, CTRL)
    review = _review(qtbot, w)
    assert gen.runs == 1 and not ev.running and not w.everything_progress.isVisible()
    assert len(review.open()) == 4 and w.canvas.proposal_count == 4
    assert w.review_bar.isVisible() and not w.strip.isVisible()
    assert "4 proposals" in w.review_bar.label.text()
    # proposals are outlines: the inside of a square is transparent
    item = w.canvas.overlays.proposal_items[0]
    img = item.pixmap().toImage()
    assert img.pixelColor(img.width() // 2, img.height() // 2).alpha() == 0

    click_image(qtbot, w, 70, 70)  # inside the first square: selects it, no SAM prompt
    click_image(qtbot, w, 170, 70)
    assert review.selected == {0, 1} and s.prompt.empty and s.undo_stack.count() == 0
    img = w.canvas.overlays.proposal_items[0].pixmap().toImage()
    assert img.pixelColor(img.width() // 2, img.height() // 2).alpha() > 0  # selected: filled
    click_image(qtbot, w, 170, 70)  # toggles back
    click_image(qtbot, w, 300, 300)  # nowhere
    assert review.selected == {0}
    drag_image(qtbot, w, 130, 30, 350, 110)  # a box around squares 1 and 2
    assert review.selected == {0, 1, 2}
    assert w.review_bar.accept_selected_button.isEnabled()

    cat = s.dataset.categories[s.category_id]
    key(qtbot, w, Qt.Key.Key_Return)  # accept the selected: one step
    anns = list(s.dataset.annotations.values())
    assert len(anns) == 3 and {a.category_id for a in anns} == {cat.id}
    assert all(a.extra["stability_score"] == 0.97 and "predicted_iou" in a.extra for a in anns)
    assert sorted(int(a.area) for a in anns) == [3600] * 3
    assert ev.reviewing and len(review.open()) == 1 and w.canvas.proposal_count == 1
    assert w.annotations.list.count() == 3
    qtbot.waitUntil(lambda: len(w.canvas.overlays.annotation_items) == 3)
    assert s.undo_stack.count() == 1 and "3 proposals" in s.undo_stack.undoText()

    key(qtbot, w, Qt.Key.Key_Z, CTRL)  # one undo removes all three; they are proposals again
    assert s.dataset.annotations == {} and len(review.open()) == 4 and w.canvas.proposal_count == 4
    key(qtbot, w, Qt.Key.Key_Z, CTRL | Qt.KeyboardModifier.ShiftModifier)
    assert len(s.dataset.annotations) == 3 and len(review.open()) == 1

    key(qtbot, w, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)  # accept all (the one left)
    assert len(s.dataset.annotations) == 4 and not ev.reviewing
    assert w.canvas.proposal_count == 0 and w.strip.isVisible() and not w.review_bar.isVisible()
    click_image(qtbot, w, 256, 256)  # out of review, clicks prompt SAM again
    assert len(s.prompt.points) == 1


def test_esc_rejects_and_the_image_change_ends_the_review(qtbot, fake_window):
    w = fake_window(FakeGenerator(n=3))
    s, ev = w.session, w.session.everything
    _ready(qtbot, w)
    w.actions_by_name["segment_everything"].trigger()
    _review(qtbot, w)
    key(qtbot, w, Qt.Key.Key_Escape)
    assert not ev.reviewing and w.canvas.proposal_count == 0 and s.dataset.annotations == {}
    w.actions_by_name["segment_everything"].trigger()
    _review(qtbot, w)
    key(qtbot, w, Qt.Key.Key_D)
    assert not ev.reviewing and w.canvas.proposal_count == 0 and s.index == 1


def test_cancel_stops_the_run_and_a_stale_result_is_dropped(qtbot, fake_window):
    gate = threading.Event()
    gen = FakeGenerator(n=3, gate=gate)
    w = fake_window(gen)
    ev = w.session.everything
    _ready(qtbot, w)
    key(qtbot, w, Qt.Key.Key_E, CTRL)
    assert ev.running and w.everything_progress.isVisible()
    assert not w.actions_by_name["segment_everything"].isEnabled()
    qtbot.waitUntil(lambda: w.everything_progress.bar.maximum() == 4, timeout=10_000)  # progress arrives
    thread = next(t for t in workers.THREADS if t.objectName() == "sam-everything")
    qtbot.mouseClick(w.everything_progress.cancel_button, LEFT)
    assert not ev.running and not w.everything_progress.isVisible()
    qtbot.waitUntil(lambda: not ev.jobs.busy, timeout=10_000)  # the job has stopped, not just been forgotten
    assert not ev.reviewing and w.actions_by_name["segment_everything"].isEnabled()

    # a run whose image the user leaves is dropped, even when it completes
    key(qtbot, w, Qt.Key.Key_E, CTRL)
    assert ev.running
    key(qtbot, w, Qt.Key.Key_D)
    assert not ev.running
    gate.set()
    # not busy: the job thread's jobDone was handled, so its result (sent before it) was delivered and dropped
    qtbot.waitUntil(lambda: not ev.jobs.busy, timeout=10_000)
    assert not ev.reviewing and w.canvas.proposal_count == 0
    close_window(w)
    assert not thread.isRunning()


def test_leaving_an_image_under_review_keeps_its_proposals_for_ctrl_e_and_says_so(qtbot, fake_window, tmp_path):
    """Found in the real window: one arrow key during a review (90 s of segment everything on a 2-core CPU)
    dropped the proposals without a word, the status bar kept saying "44 proposals ...: Enter accepts", and
    Ctrl+E back on the image ran the whole job again. Now leaving says what happened, and Ctrl+E on the same
    image (same model, same options) shows the proposals again at once, less those accepted meanwhile."""
    gen = FakeGenerator(n=4)
    w = fake_window(gen)
    s, ev = w.session, w.session.everything
    bar = w.statusBar()
    _ready(qtbot, w)
    key(qtbot, w, Qt.Key.Key_E, CTRL)
    review = _review(qtbot, w)
    click_image(qtbot, w, 70, 70)
    key(qtbot, w, Qt.Key.Key_Return)  # one accepted
    assert len(s.dataset.annotations) == 1 and len(review.open()) == 3

    key(qtbot, w, Qt.Key.Key_D)  # leave the image: the review ends, and the status bar says so
    assert not ev.reviewing and s.index == 1
    msg = bar.currentMessage()
    assert "Enter accepts" not in msg and "3 proposals" in msg and "01_astronaut.jpg" in msg, msg

    key(qtbot, w, Qt.Key.Key_A)
    _ready(qtbot, w)
    key(qtbot, w, Qt.Key.Key_E, CTRL)
    review = _review(qtbot, w)
    assert gen.runs == 1  # not computed again
    assert len(review.open()) == 3 and w.canvas.proposal_count == 3  # the accepted one is hidden
    assert "3 proposals" in bar.currentMessage()

    # another image's run is its own: Ctrl+E there runs the generator
    key(qtbot, w, Qt.Key.Key_D)
    _ready(qtbot, w)
    key(qtbot, w, Qt.Key.Key_E, CTRL)
    _review(qtbot, w)
    assert gen.runs == 2

    # other options: computed again
    key(qtbot, w, Qt.Key.Key_A)
    _ready(qtbot, w)
    ev.options = replace(ev.options, pred_iou_thresh=ev.options.pred_iou_thresh + 0.01)
    key(qtbot, w, Qt.Key.Key_E, CTRL)
    _review(qtbot, w)
    assert gen.runs == 3

    # another model: the review ends saying so, and promises no reopening (they are the old model's)
    with qtbot.waitSignal(s.modelChanged, timeout=30_000):
        w.use_model(fake_info(FakePredictor(), tmp_path / "cache2"))
    assert not ev.reviewing
    msg = bar.currentMessage()
    assert "model changed" in msg and "runs again" in msg and "shows them again" not in msg, msg
    _ready(qtbot, w)
    key(qtbot, w, Qt.Key.Key_E, CTRL)
    _review(qtbot, w)
    assert gen.runs == 4


# --------------------------------------------------------------------------------------
# the real generator, MobileSAM
# --------------------------------------------------------------------------------------


@pytest.mark.weights
@pytest.mark.slow
def test_real_photo_accept_two_proposals_and_undo_one(qtbot, make_window, image_folder, mobilesam_info):
    w = make_window(image_folder, mobilesam_info())
    s, ev = w.session, w.session.everything
    ev.options = replace(ev.options, points_per_side=8)  # 64 points: one batch
    _ready(qtbot, w, timeout=180_000)
    progress = []
    ev.progress.connect(lambda done, total, text: progress.append((done, total)))
    key(qtbot, w, Qt.Key.Key_E, CTRL)
    review = _review(qtbot, w, timeout=300_000)
    props = review.open()
    assert len(props) >= 2
    assert all(p.predicted_iou > 0.88 and p.stability_score >= 0.95 for p in props)
    assert progress and progress[-1][0] == progress[-1][1]
    print(f"\nsegment everything (8x8 points, astronaut 512x512): {len(props)} proposals in "
          f"{ev.last_result.seconds:.1f} s")

    def click_inside(p):
        m = coco.decode_rle(p.segmentation, 512, 512)
        target = review.at  # the smallest proposal under the point must be p
        ys, xs = np.nonzero(m)
        for y, x in zip(ys[:: max(1, len(ys) // 200)], xs[:: max(1, len(xs) // 200)]):
            if target(float(x), float(y)) is p:
                click_image(qtbot, w, float(x), float(y))
                return
        pytest.skip("no point picks this proposal alone")

    first, second = sorted(props, key=lambda p: p.area)[:2]
    click_inside(first)
    key(qtbot, w, Qt.Key.Key_Return)
    click_inside(second)
    key(qtbot, w, Qt.Key.Key_Return)
    anns = list(s.dataset.annotations.values())
    assert len(anns) == 2
    assert {a.segmentation["counts"] for a in anns} == {first.segmentation["counts"], second.segmentation["counts"]}
    key(qtbot, w, Qt.Key.Key_Z, CTRL)  # undo the second accept only
    (left,) = s.dataset.annotations.values()
    assert left.segmentation["counts"] == first.segmentation["counts"]
    assert left.extra["predicted_iou"] == round(first.predicted_iou, 4)


@pytest.mark.weights
@pytest.mark.slow
def test_real_run_cancel_leaves_no_thread_running(qtbot, make_window, image_folder, mobilesam_info):
    w = make_window(image_folder, mobilesam_info())
    ev = w.session.everything
    ev.options = replace(ev.options, points_per_side=32, points_per_batch=16)  # 64 batches: long enough to cancel
    _ready(qtbot, w, timeout=180_000)
    seen = []
    ev.progress.connect(lambda done, total, text: seen.append(done))
    key(qtbot, w, Qt.Key.Key_E, CTRL)
    qtbot.waitUntil(lambda: any(d >= 1 for d in seen), timeout=120_000)
    key(qtbot, w, Qt.Key.Key_Escape)  # Esc cancels a run
    assert not ev.running
    qtbot.waitUntil(lambda: not ev.jobs.busy, timeout=120_000)  # it stops at its next batch
    assert not ev.reviewing and max(seen) < 65
    thread = next(t for t in workers.THREADS if t.objectName() == "sam-everything")
    close_window(w)
    assert not thread.isRunning()
    assert not any(t.isRunning() for t in workers.THREADS)
