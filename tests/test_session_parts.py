"""Each part of the session built alone, without a window, with the fake predictor (fast, no weights).

The parts talk to real services (the decoder, encoder and job threads) run on
:class:`qt_fixtures.FakePredictor`; what a part asks of the others (the current
image, a place to put accepted masks) is given by :class:`StubImage` or by the
real part. Waits are on signals or on deterministic idle barriers, never on
fixed sleeps.
"""

from __future__ import annotations

import ast
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QUndoStack
from qt_fixtures import FakePredictor, fake_info

from annotator import render
from annotator.data import coco
from annotator.data.prompts import PromptState
from annotator.session.rows import ImageState

pytestmark = pytest.mark.gui


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


class StubImage:
    """The current image as the parts ask for it (what ImageNavigator provides), made at once on this thread."""

    def __init__(self, path: Path, predictor: FakePredictor, info) -> None:
        from annotator.data.imageio import load_image
        from annotator.workers.loader import prepare_image

        pixels = load_image(path)
        self.current_path = path
        self.loaded = prepare_image(path, pixels)
        self.embedding = predictor.encode(pixels)
        self.model_info = info


class Recorder:
    """An accept listener: records ``(accepted, applied)``."""

    def __init__(self) -> None:
        self.calls = []

    def on_accept(self, accepted, applied: bool) -> None:
        self.calls.append((accepted, applied))


class Squares:
    """A segment-everything generator: ``n`` squares of side 60 at (40 + 100 i, 40)."""

    def __init__(self, n: int = 4) -> None:
        self.n = n

    def __call__(self, model, options):
        return self

    def generate(self, image, embedding=None, progress=None, cancel=None):
        h, w = image.shape[:2]
        out = []
        for i in range(self.n):
            m = np.zeros((h, w), bool)
            m[40:100, 40 + 100 * i:100 + 100 * i] = True
            out.append({"segmentation": coco.encode_mask(m), "area": int(m.sum()), "bbox": [40 + 100 * i, 40, 60, 60],
                        "predicted_iou": 0.95, "stability_score": 0.97})
        return out


def decoder_barrier(qtbot, decoder, timeout=10_000) -> None:
    """Send a task through the decoder thread and wait for it: every result sent before it has been delivered."""
    sent = []
    with qtbot.waitSignal(decoder.taskDone, timeout=timeout, check_params_cb=lambda tid, _: tid in sent):
        sent.append(decoder.run_task(int))


def square(size=(512, 512), box=(100, 100, 200, 200)) -> np.ndarray:
    m = np.zeros(size, bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture
def fake() -> FakePredictor:
    return FakePredictor()


@pytest.fixture
def paths(image_folder):
    from annotator.data.imageio import list_images

    return list_images(image_folder)


@pytest.fixture
def decoder(qtbot, fake):
    from annotator.workers.decoder import DecoderService

    service = DecoderService()
    service.set_model(fake)
    yield service
    assert service.shutdown(60_000)


@pytest.fixture
def stub(paths, fake, tmp_path) -> StubImage:
    return StubImage(paths[0], fake, fake_info(fake, tmp_path / "cache"))


@pytest.fixture
def edits(decoder, stub, tmp_path, image_folder):
    """DocumentEdits over a new document of ``image_folder`` (autosave on), with the stub as current image."""
    from annotator.data.document import Dataset
    from annotator.session.document_edits import DocumentEdits
    from annotator.session.style import OverlayStyle

    part = DocumentEdits(decoder, QUndoStack(), stub, OverlayStyle())
    part.set_dataset(Dataset(tmp_path / "work.json", image_dir=image_folder))
    yield part
    part.close()


@pytest.fixture
def pipeline(decoder, edits, stub):
    from annotator.session.accepting import AcceptPipeline
    from annotator.session.gate import ActionGate
    from annotator.session.style import OverlayStyle

    return AcceptPipeline(decoder, edits, edits.undo_stack, ActionGate(), OverlayStyle(), stub)


# --------------------------------------------------------------------------------------
# the navigator
# --------------------------------------------------------------------------------------


@pytest.fixture
def make_navigator(qtbot, fake, tmp_path):
    from annotator.session.navigation import ImageNavigator
    from annotator.workers.encoder import EncoderService

    made = []

    def make(**kw):
        nav = ImageNavigator(EncoderService(), **kw)
        made.append(nav)
        with qtbot.waitSignal(nav.modelChanged, timeout=30_000):
            nav.use_model(fake_info(fake, tmp_path / "cache"))
        return nav

    yield make
    for nav in made:
        nav.stop()
        assert nav.encoder.shutdown(60_000)


def test_navigator_shows_the_current_image_and_drops_results_for_any_other(qtbot, make_navigator, paths, fake):
    from annotator.workers.messages import EmbeddingResult

    nav = make_navigator(prefetch_delay_ms=60_000)
    nav.set_folder(paths[0].parent, paths)
    shown, arrived = [], []
    nav.imageShown.connect(shown.append)
    nav.embeddingArrived.connect(arrived.append)
    with qtbot.waitSignal(nav.embeddingArrived, timeout=10_000):
        nav.show(0)
    assert nav.current_path == paths[0] and nav.loaded.path == paths[0]
    assert shown[-1][0].width() == 512 and nav.embedding.original_size == (512, 512)
    assert nav.image_row(0).state == ImageState.READY and nav.prefetch_pending
    # a result under another id is never taken for the current image's
    emb = nav.embedding
    nav.encoder.embeddingReady.emit(nav.encoder.new_id(), EmbeddingResult(paths[1], "not an embedding", "encoded", 0))
    assert nav.embedding is emb

    # leave chelsea while it is being encoded, for coffee: chelsea's embedding, when it comes, is dropped
    fake.gate = threading.Event()
    nav.clear()
    nav.show(1)
    qtbot.waitUntil(lambda: nav.loaded is not None, timeout=10_000)
    nav.clear()
    nav.show(2)
    assert nav.embedding is None and nav.current_path == paths[2]
    fake.gate.set()
    qtbot.waitUntil(lambda: nav.embedding is not None and not nav.encoder.busy, timeout=10_000)
    assert nav.embedding.original_size == (400, 600)
    assert [r.path for r in arrived] == [paths[0], paths[2]]
    assert nav.image_row(1).state == ImageState.READY  # (its embedding is in the cache all the same)


def test_prefetch_waits_for_its_delay(qtbot, make_navigator, paths, fake):
    nav = make_navigator(prefetch_delay_ms=60_000)
    nav.set_folder(paths[0].parent, paths)
    nav.show(0)
    qtbot.waitUntil(lambda: nav.embedding is not None and not nav.encoder.busy, timeout=10_000)
    # nothing queued or running, the prefetch still waiting for its delay: image 2 is not touched yet
    assert nav.prefetch_pending and not nav.encoder_idle
    assert len(fake.encoded) == 1 and nav.image_row(1).state == ImageState.UNKNOWN


@pytest.mark.parametrize("answering", [2, None])
def test_prefetch_waits_for_a_click_being_answered_but_not_for_ever(qtbot, make_navigator, paths, fake,
                                                                   answering):
    """With no delay, the prefetch asks whether a click is being answered each time it is due: it waits
    while one is (``answering`` times), and at most PREFETCH_MAX_DEFERRALS times (5) when clicks never stop."""
    from annotator.session.navigation import PREFETCH_MAX_DEFERRALS

    calls = answering + 1 if answering is not None else PREFETCH_MAX_DEFERRALS + 1
    asked = []

    def clicks_busy():
        asked.append(nav.current_path)
        return answering is None or len(asked) <= answering

    nav = make_navigator(prefetch_delay_ms=0, clicks_busy=clicks_busy)
    nav.set_folder(paths[0].parent, paths)
    nav.show(0)
    qtbot.waitUntil(lambda: nav.image_row(1).state == ImageState.READY, timeout=10_000)
    assert len(asked) == calls and len(fake.encoded) == 2
    # on the next image (prefetched: at once) the count starts again
    nav.clear()
    nav.show(1)
    assert nav.embedding is not None
    qtbot.waitUntil(lambda: nav.image_row(2).state == ImageState.READY, timeout=10_000)
    if answering is None:
        assert len(asked) == 2 * calls
    assert len(fake.encoded) == 3


# --------------------------------------------------------------------------------------
# prompting
# --------------------------------------------------------------------------------------


def _prompting(decoder, stub, opacity=0.5):
    from annotator.session.prompting import Prompting
    from annotator.session.style import OverlayStyle

    style = OverlayStyle(opacity)
    return Prompting(decoder, QUndoStack(), stub, style, lambda: (10, 200, 30)), style


def _alpha_at_centre(image) -> int:
    return image.pixelColor(image.width() // 2, image.height() // 2).alpha()


def test_prompting_click_candidates_opacity_undo(qtbot, decoder, stub):
    pr, style = _prompting(decoder, stub, 0.5)
    # the mask is drawn first, the strip's rows (thumbnails) come after it
    with qtbot.waitSignals([pr.candidateOverlayChanged, pr.candidatesChanged], order="strict", timeout=10_000,
                           check_params_cbs=[lambda im: im is not None, lambda rows, sel: bool(rows)]):
        assert pr.add_point(256, 256, 1)
    assert pr.current and pr.prompt.points == ((256.0, 256.0),) and len(pr.result.overlays) == 3
    assert pr.result.complete and [r.rank for r in pr.candidate_rows()] == [1, 2, 3]
    assert all(r.thumb is not None for r in pr.candidate_rows())
    assert _alpha_at_centre(pr.result.overlays[0]) == round(255 * 0.5)
    # the style is the one owner of the opacity: a change draws the candidates again with it
    first = pr.result
    with qtbot.waitSignals([pr.candidateOverlayChanged, pr.candidatesChanged], order="strict", timeout=10_000):
        assert style.set_opacity(0.2)
    assert pr.result is not first and _alpha_at_centre(pr.result.overlays[0]) == round(255 * 0.2)
    # a point outside the image is ignored (not even an undo step)
    assert not pr.add_point(-5, 10, 1) and not pr.add_point(10, 600, 1) and pr.undo_stack.count() == 1
    # undo and redo go through the PromptCommand
    pr.undo_stack.undo()
    assert pr.prompt.empty and pr.result is None
    with qtbot.waitSignal(pr.candidateOverlayChanged, timeout=10_000, check_params_cb=lambda im: im is not None):
        pr.undo_stack.redo()
    assert pr.prompt.points == ((256.0, 256.0),)


def test_prompting_accept_waits_for_the_mask_of_the_prompt(qtbot, decoder, stub):
    pr, _ = _prompting(decoder, stub)
    assert pr.take_for_accept() is None  # nothing to accept
    with qtbot.waitSignal(pr.acceptReady, timeout=10_000):
        pr.add_point(256, 256, 1)
        assert pr.take_for_accept() is None  # still being decoded: accepted once on display
    chosen = pr.take_for_accept()
    assert chosen.prompt is pr.prompt and chosen.index == 0 and chosen.score == pytest.approx(0.9)


def test_prompting_draws_the_mask_before_the_rest_and_what_is_done_meanwhile_applies(qtbot, decoder, stub, monkeypatch):
    """The first paint does not wait for the strip: the chosen candidate's overlay comes first, the other overlays
    and the thumbnails after it (held here); a pick, an accept and a refining click made in between apply to the
    candidates on display."""
    from annotator.workers import decoder as decoder_module

    gate = threading.Event()
    rest = decoder_module.complete

    def held(job, first):
        assert gate.wait(30), "test gate never opened"
        return rest(job, first)

    monkeypatch.setattr(decoder_module, "complete", held)
    pr, _ = _prompting(decoder, stub)
    rows, shown = [], []
    pr.candidatesChanged.connect(lambda r, sel: rows.append((len(r), sel)))
    pr.candidateOverlayChanged.connect(shown.append)
    try:
        with qtbot.waitSignal(pr.candidateOverlayChanged, timeout=10_000, check_params_cb=lambda im: im is not None):
            pr.add_point(256, 256, 1)
        early = pr.displayed
        assert not early.complete and early.thumbs == () and early.areas == ()
        assert early.overlays[0] is not None and early.overlays[1] is None and early.overlays[2] is None
        assert early.previews[0] is not None and early.previews[1] is None and early.previews[2] is None
        assert shown == [early.overlays[0]] and rows == [] and pr.result is None and not pr.current
        # a pick of a candidate the decoder has not drawn yet: drawn here at once, so what is shown is what is picked
        pr.select_candidate(1)
        assert len(shown) == 2 and shown[1] is not None and shown[1] is not early.overlays[0]
        chosen = pr.take_for_accept()  # an accept takes what is on display, without waiting for the strip
        assert chosen is not None and chosen.candidates is early.candidates and chosen.index == 1
        with qtbot.waitSignal(pr.candidatesChanged, timeout=10_000):
            gate.set()
    finally:
        gate.set()
    full = pr.result
    assert full.complete and full.candidates is early.candidates and full.overlays[0] is early.overlays[0]
    assert all(p is not None for p in full.previews) and 0 < full.areas[0] < full.areas[1] < full.areas[2]
    assert pr.selected == 1 and rows == [(3, 1)] and shown == [early.overlays[0], shown[1], full.overlays[1]]
    assert shown[1] == full.overlays[1] and shown[1].placement == full.overlays[1].placement  # the same picture
    assert all(r.thumb is not None for r in pr.candidate_rows())
    # the next click refines from the candidate picked (its low-res logits are the mask input)
    first = pr.prompt
    with qtbot.waitSignal(pr.candidatesChanged, timeout=10_000):
        pr.add_point(270, 256, 1)
    np.testing.assert_array_equal(pr.prompt.mask_input, full.candidates.low_res_logits[1])
    assert pr.prompt is not first and pr.result.complete and pr.result.prompt is pr.prompt


def test_prompting_refines_from_the_candidate_drawn_before_the_rest(qtbot, decoder, stub, monkeypatch):
    """A click made while the rest of the candidates is being drawn refines from the one on display."""
    from annotator.workers import decoder as decoder_module

    gate = threading.Event()
    rest = decoder_module.complete
    monkeypatch.setattr(decoder_module, "complete", lambda job, first: gate.wait(30) and rest(job, first))
    pr, _ = _prompting(decoder, stub)
    try:
        with qtbot.waitSignal(pr.candidateOverlayChanged, timeout=10_000, check_params_cb=lambda im: im is not None):
            pr.add_point(256, 256, 1)
        early = pr.displayed
        pr.cycle_candidate(1)  # Tab, before the strip is filled
        pr.add_point(270, 256, 1)
        np.testing.assert_array_equal(pr.prompt.mask_input, early.candidates.low_res_logits[1])
        gate.set()
        qtbot.waitUntil(lambda: pr.result is not None and pr.result.prompt is pr.prompt, timeout=10_000)
    finally:
        gate.set()
    assert pr.result.complete and pr.selected == 0


def test_prompting_reset_drops_a_decode_on_its_way(qtbot, decoder, stub):
    pr, _ = _prompting(decoder, stub)
    shown = []
    pr.candidateOverlayChanged.connect(shown.append)
    pr.add_point(256, 256, 1)  # its decode is in flight...
    pr.reset()  # ...when the user leaves the image
    decoder_barrier(qtbot, decoder)
    assert pr.prompt.empty and pr.result is None and all(s is None for s in shown)


# --------------------------------------------------------------------------------------
# document edits
# --------------------------------------------------------------------------------------


def test_edits_categories_and_the_current_one_with_undo(qtbot, edits):
    ds, stack = edits.dataset, edits.undo_stack
    assert [r.name for r in edits.category_rows()] == ["object"] and not edits.dirty
    assert edits.add_category("tree", (10, 200, 10))
    tree = ds.category_by_name("tree")
    assert edits.category_id == tree.id and edits.category_color() == (10, 200, 10)
    assert not edits.add_category(" tree ") and not edits.rename_category(tree.id, "object")
    assert edits.rename_category(tree.id, "oak")
    edits.delete_category(tree.id, reassign_to=None)
    assert tree.id not in ds.categories and edits.category_id == min(ds.categories)
    stack.undo()
    assert ds.categories[tree.id].name == "oak"
    stack.undo()
    assert ds.categories[tree.id].name == "tree"


def test_edits_replace_an_annotation_in_one_undo_step(qtbot, edits, stub):
    from annotator.data.document import Dataset

    ds, stack = edits.dataset, edits.undo_stack
    rec = ds.ensure_image(ds.relative_name(stub.current_path), 512, 512)
    cat = edits.category_id
    small = ds.make_annotation(rec.id, cat, square(box=(100, 100, 150, 150)))
    edits.apply_add_annotations([small])
    assert edits.dataset.path.exists() and not edits.dirty  # accepted and deleted things are saved at once
    with qtbot.waitSignal(edits.layer.changed, timeout=10_000):
        edits.annotation_overlays()  # its patch is decoded in the background
    (_, _, rect), = edits.annotation_overlays()
    big = replace(ds.make_annotation(rec.id, cat, square(box=(50, 60, 250, 300))), id=small.id)
    assert edits.replace_annotation(big, "Brush")
    assert stack.count() == 1 and stack.undoText() == "Brush" and ds.annotations[small.id].area == 200 * 240
    assert not edits.dirty and [a.area for a in Dataset.open(ds.path).annotations.values()] == [200 * 240]
    with qtbot.waitSignal(edits.layer.changed, timeout=10_000):  # the old patch is not drawn again
        assert edits.annotation_overlays() == []
    (_, _, new_rect), = edits.annotation_overlays()
    assert new_rect != rect and new_rect[2] > rect[2]
    stack.undo()
    assert ds.annotations[small.id].area == 50 * 50 and not edits.dirty
    stack.redo()
    assert ds.annotations[small.id].area == 200 * 240


def test_edits_save_failure_keeps_the_work_and_says_so(qtbot, edits, stub, monkeypatch):
    ds = edits.dataset
    rec = ds.ensure_image(ds.relative_name(stub.current_path), 512, 512)

    def fail(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ds, "save", fail)
    with qtbot.waitSignal(edits.saveFailed) as failed:
        edits.apply_add_annotations([ds.make_annotation(rec.id, edits.category_id, square())])
    assert "No space left on device" in failed.args[0] and edits.dirty and len(ds.annotations) == 1


# --------------------------------------------------------------------------------------
# the accept pipeline
# --------------------------------------------------------------------------------------


def test_pipeline_candidate_holds_user_actions_until_it_is_in_the_document(qtbot, pipeline, edits, stub, fake):
    listener = Recorder()
    pipeline.listeners.append(listener)
    ds, stack, gate = edits.dataset, edits.undo_stack, pipeline.gate
    cands = fake.decode(stub.embedding, points=np.array([[256.0, 256.0]]), labels=np.array([1]))
    prompt = PromptState().with_point(256, 256, 1, None)
    assert pipeline.accept_candidate(stub.current_path, 512, 512, prompt, cands, 1)
    assert pipeline.accepting and gate.busy
    later = []
    assert gate.call(later.append, "a user action") is None and later == []  # it waits...
    qtbot.waitUntil(lambda: not pipeline.accepting, timeout=10_000)
    assert later == ["a user action"]  # ...and runs once the annotation is in
    (ann,) = ds.annotations.values()
    np.testing.assert_array_equal(ann.mask(), cands.mask(1))
    assert ann.extra == {"predicted_iou": pytest.approx(0.8), "model": "fake",
                         "sam_prompt": {"points": [[256.0, 256.0]], "labels": [1], "candidate": 1}} and not edits.dirty
    assert edits.annotation_overlays() and stack.undoText() == "Accept object"
    (accepted, applied), = listener.calls
    assert applied and accepted.prompt is prompt and accepted.review is None and accepted.image == stub.current_path
    stack.undo()
    assert ds.annotations == {} and listener.calls[-1] == (accepted, False)


def test_pipeline_proposals_are_one_undo_step(qtbot, pipeline, edits, stub):
    from annotator.session.accepting import ReadyMask

    listener = Recorder()
    pipeline.listeners.append(listener)
    ds, stack = edits.dataset, edits.undo_stack
    masks = [square(box=(10, 10, 50, 50)), square(box=(300, 300, 380, 350))]
    ready = [(i, ReadyMask(coco.encode_mask(m), render.patch_of(m), {"source": "test"})) for i, m in enumerate(masks)]
    assert pipeline.accept_proposals(stub.current_path, 512, 512, 7, ready) == 2
    assert not pipeline.gate.busy and stack.count() == 1 and stack.undoText() == "Accept 2 proposals as object"
    assert sorted(a.area for a in ds.annotations.values()) == [40 * 40, 80 * 50]
    assert len(edits.annotation_overlays()) == 2  # drawn at once, from the patches they came with
    (accepted, applied), = listener.calls
    assert applied and accepted.review == 7 and accepted.proposals == (0, 1) and accepted.prompt is None
    stack.undo()
    assert ds.annotations == {} and listener.calls[-1] == (accepted, False)


# --------------------------------------------------------------------------------------
# the segment-everything review
# --------------------------------------------------------------------------------------


@pytest.fixture
def review(qtbot, pipeline, edits, stub):
    from annotator.session.review import EverythingController
    from annotator.session.style import OverlayStyle

    ev = EverythingController(stub, pipeline, pipeline.gate, OverlayStyle(), edits.category_color)
    pipeline.listeners.append(ev)
    ev.make_generator = Squares(4)
    yield ev
    assert ev.shutdown(60_000)


def _open_review(qtbot, ev):
    with qtbot.waitSignal(ev.reviewChanged, timeout=10_000):
        assert ev.start()
    assert len(ev.review.open()) == 4


def test_review_alone_select_accept_undo(qtbot, review, edits):
    ev, stack = review, edits.undo_stack
    _open_review(qtbot, ev)
    assert ev.toggle_at(70, 70) == 0 and ev.toggle_at(170, 70) == 1 and ev.toggle_at(5, 5) is None
    assert ev.counts() == (2, 4)
    assert ev.accept_selected() == 2
    assert len(edits.dataset.annotations) == 2 and stack.count() == 1 and ev.counts() == (0, 2)
    stack.undo()  # the proposals are back under review
    assert edits.dataset.annotations == {} and ev.counts() == (0, 4)
    stack.redo()
    assert ev.accept_all() == 2 and not ev.reviewing and len(edits.dataset.annotations) == 4


def test_every_review_entry_point_waits_while_an_accept_is_finished(qtbot, review, edits):
    ev, gate = review, review.gate
    _open_review(qtbot, ev)
    gate.hold()  # an accept is being finished
    ev.toggle_at(70, 70)
    ev.select_inside((130, 30, 350, 110))
    ev.accept_selected()
    ev.reject_all()
    assert gate.waiting == 4 and ev.counts() == (0, 4) and edits.dataset.annotations == {}
    gate.release()  # in order: square 0 toggled, 1 and 2 boxed, the three accepted, the last one rejected
    assert len(edits.dataset.annotations) == 3 and not ev.reviewing and edits.undo_stack.count() == 1

    gate.hold()
    assert ev.start() is None and not ev.running  # a new run waits too
    with qtbot.waitSignal(ev.reviewChanged, timeout=10_000):
        gate.release()
    gate.hold()
    assert ev.accept_all() is None and ev.reviewing
    gate.release()
    assert len(edits.dataset.annotations) == 7 and not ev.reviewing


# --------------------------------------------------------------------------------------
# the whole session, without a window
# --------------------------------------------------------------------------------------


def test_a_session_without_a_window_with_its_services_given(qtbot, image_folder, tmp_path, monkeypatch, fake):
    from annotator.session.session import Session
    from annotator.workers.decoder import DecoderService
    from annotator.workers.encoder import EncoderService
    from annotator.workers.jobs import JobService

    encoder, decoder, jobs = EncoderService(), DecoderService(), JobService("sam-everything")
    s = Session(encoder=encoder, decoder=decoder, everything_jobs=jobs)
    assert s.encoder is encoder and s.decoder is decoder and s.everything.jobs is jobs
    s.everything.make_generator = Squares(2)
    gate = threading.Event()
    real = render.finish_mask  # the accept's last step on the decoder thread

    def slow_finish(*args):
        assert gate.wait(30)
        return real(*args)

    monkeypatch.setattr(render, "finish_mask", slow_finish)
    try:
        with qtbot.waitSignal(s.modelChanged, timeout=30_000):
            s.use_model(fake_info(fake, tmp_path / "cache"))
        s.open_folder(image_folder)
        qtbot.waitUntil(lambda: s.embedding is not None, timeout=10_000)
        with qtbot.waitSignal(s.candidateOverlayChanged, timeout=10_000, check_params_cb=lambda im: im is not None):
            s.add_point(256, 256, 1)
        s.accept()
        assert s.accepting
        s.everything.start()  # the window's Ctrl+E goes straight to the review's controller: it waits too
        assert not s.everything.running and s.gate.waiting == 1
        with qtbot.waitSignal(s.everything.reviewChanged, timeout=10_000):
            gate.set()
        assert len(s.dataset.annotations) == 1 and s.prompt.empty
        s.accept()  # Enter in a review: the selected proposals (none yet)
        s.add_point(170, 70, 1)  # a click toggles the proposal under it
        s.accept()
        assert len(s.dataset.annotations) == 2 and s.undo_stack.count() == 3  # point, accept, proposals
        assert s.opacity == s.style.opacity and s.edits.layer.opacity == s.style.opacity
        s.set_opacity(0.1)
        assert s.edits.layer.opacity == pytest.approx(0.1)
    finally:
        gate.set()
        s.flush()
        assert s.shutdown(60_000)  # every thread joined (the gui marker's leak check counts them too)


# --------------------------------------------------------------------------------------
# structure
# --------------------------------------------------------------------------------------


def _session_imports() -> dict:
    """``{module: {session modules it imports}}``, counting every import (TYPE_CHECKING and function-level too)."""
    import annotator.session as package

    folder = Path(package.__file__).parent
    names = {f.stem for f in folder.glob("*.py")} - {"__init__"}
    graph = {}
    for name in names:
        deps = set()
        for node in ast.walk(ast.parse((folder / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "annotator.session":
                    deps |= {a.name for a in node.names}
                elif node.module.startswith("annotator.session."):
                    deps.add(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[2] for a in node.names if a.name.startswith("annotator.session.")}
        graph[name] = deps - {name}
    return graph


def test_session_modules_import_each_other_one_way():
    graph = _session_imports()
    assert graph["undo"] == set()  # commands reach their targets through protocols only
    assert not any("session" in deps for name, deps in graph.items())  # the facade is imported by nobody here
    done, visiting = set(), []

    def visit(name):
        assert name not in visiting, f"import cycle: {' -> '.join(visiting + [name])}"
        if name in done:
            return
        visiting.append(name)
        for dep in sorted(graph[name]):
            visit(dep)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_a_background_patch_decode_never_overwrites_a_patch_put_since(qtbot):
    """An annotation edited (its new patch put) while the layer's background decode of the old mask was in flight
    keeps the new patch when the decode's result arrives."""
    from pathlib import Path
    from types import SimpleNamespace

    import numpy as np
    from PySide6.QtCore import QObject, Signal

    from annotator import render
    from annotator.session.annotation_layer import AnnotationLayer
    from annotator.session.style import OverlayStyle

    class Decoder(QObject):
        taskDone = Signal(int, object)

        def run_task(self, fn, *args, **kwargs):
            self.call = (fn, args)
            return 7

    decoder = Decoder()
    layer = AnnotationLayer(decoder, SimpleNamespace(current_path=Path("a.png"), showing=True), OverlayStyle())
    ann = SimpleNamespace(id=1, segmentation={"size": [8, 8], "counts": "0"}, size=(8, 8), category_id=1)
    layer.request([ann], {1: SimpleNamespace(color=(255, 0, 0))})
    new = render.MaskPatch(np.ones((4, 4), bool), (0.0, 0.0, 4.0, 4.0))
    layer.put(1, new)  # the edit lands first
    old = render.MaskPatch(np.zeros((4, 4), bool), (0.0, 0.0, 8.0, 8.0))
    decoder.taskDone.emit(7, {1: (old, (255, 0, 0), None)})
    assert layer.patch(1) is new
