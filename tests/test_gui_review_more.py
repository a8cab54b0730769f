"""Segment everything and what is already there: no duplicates, undo brings a finished review back,
and proposals that ``sam-annotator auto`` stored are reviewed without being computed again."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import Qt
from qt_fixtures import FakePredictor, fake_info, key
from test_gui_everything import FakeGenerator, _ready, _review

from annotator.data.proposals import GeneratorParams, ProposalStore, StoredProposals, proposals_path

pytestmark = pytest.mark.gui

CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier


@pytest.fixture
def window(make_window, image_folder, tmp_path):
    def make(gen):
        w = make_window(image_folder, fake_info(FakePredictor(), tmp_path / "cache"))
        w.session.everything.make_generator = gen
        return w

    return make


def _boxes(s):
    return sorted(tuple(a.bbox) for a in s.dataset.annotations.values())


def test_a_second_segment_everything_never_accepts_the_same_objects_again(qtbot, window):
    gen = FakeGenerator(n=4)
    w = window(gen)
    s, ev = w.session, w.session.everything
    _ready(qtbot, w)
    key(qtbot, w, Qt.Key.Key_E, CTRL)
    _review(qtbot, w)
    key(qtbot, w, Qt.Key.Key_Return, SHIFT)  # accept all four
    assert len(s.dataset.annotations) == 4 and not ev.reviewing
    first = _boxes(s)

    # again on the same image: every proposal matches an annotation, nothing is offered (the last run's
    # proposals are shown again, not computed again: same image, model and options)
    key(qtbot, w, Qt.Key.Key_E, CTRL)
    assert gen.runs == 1 and not ev.running
    assert not ev.reviewing and ev.last_result is not None and len(ev.last_result.proposals) == 4
    key(qtbot, w, Qt.Key.Key_Return, SHIFT)  # Accept All with nothing under review
    assert _boxes(s) == first  # no exact duplicate, no near duplicate

    # one annotation removed: only its proposal is offered, and Accept All adds just that one
    s.undo_stack.undo()  # the four go
    assert s.dataset.annotations == {}
    s.undo_stack.redo()
    ann = min(s.dataset.annotations.values(), key=lambda a: a.id)
    s.delete_annotation(ann.id)
    assert len(s.dataset.annotations) == 3
    key(qtbot, w, Qt.Key.Key_E, CTRL)
    review = _review(qtbot, w)
    assert len(review.open()) == 1 and len(review.annotated) == 3
    key(qtbot, w, Qt.Key.Key_Return, SHIFT)
    assert _boxes(s) == first


def test_undo_after_accept_all_restores_the_review(qtbot, window):
    gen = FakeGenerator(n=4)
    w = window(gen)
    s, ev = w.session, w.session.everything
    _ready(qtbot, w)
    key(qtbot, w, Qt.Key.Key_E, CTRL)
    review = _review(qtbot, w)
    review_token = review.token
    key(qtbot, w, Qt.Key.Key_Return, SHIFT)
    assert len(s.dataset.annotations) == 4 and not ev.reviewing

    key(qtbot, w, Qt.Key.Key_Z, CTRL)  # undo: the annotations go, the four proposals are under review again
    assert s.dataset.annotations == {}
    assert ev.reviewing and ev.review.token == review_token and len(ev.review.open()) == 4
    assert w.canvas.proposal_count == 4 and w.review_bar.isVisible()
    assert gen.runs == 1  # nothing was computed again

    key(qtbot, w, Qt.Key.Key_Z, CTRL | SHIFT)  # redo: accepted again, the review ends as it did
    assert len(s.dataset.annotations) == 4 and not ev.reviewing
    key(qtbot, w, Qt.Key.Key_Z, CTRL)
    assert ev.reviewing and len(ev.review.open()) == 4


def test_stored_proposals_are_reviewed_without_computing(qtbot, window, image_folder):
    import numpy as np

    from annotator.data import coco

    gen = FakeGenerator(n=4)
    w = window(gen)
    s, ev = w.session, w.session.everything
    _ready(qtbot, w)
    loaded = s.images.loaded
    h, w_ = loaded.height, loaded.width
    m = np.zeros((h, w_), bool)
    m[100:200, 150:300] = True
    record = {"segmentation": coco.encode_mask(m), "area": int(m.sum()), "bbox": [150, 100, 150, 100],
              "predicted_iou": 0.93, "stability_score": 0.96, "point_coords": [[200.0, 150.0]],
              "crop_box": [0, 0, w_, h]}
    name = s.dataset.relative_name(s.current_path)
    ProposalStore(proposals_path(s.dataset.path), create=True).put(StoredProposals(
        name, loaded.digest, (h, w_), "vit_t", "test", GeneratorParams(), 1.0, time.time(), (record,)))
    said = []
    ev.statusMessage.connect(lambda text, _ms: said.append(text))
    key(qtbot, w, Qt.Key.Key_E, CTRL)
    review = _review(qtbot, w)
    assert gen.runs == 0  # read, not computed
    assert ev.last_result.stored and len(review.open()) == 1
    assert any("from sam-annotator auto" in t for t in said), said
    key(qtbot, w, Qt.Key.Key_Return, SHIFT)
    (ann,) = s.dataset.annotations.values()
    assert ann.bbox == [150.0, 100.0, 150.0, 100.0] and int(ann.area) == 15000
