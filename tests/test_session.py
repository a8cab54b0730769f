"""The window's logic with a fake predictor: fast, deterministic, no weights.

Drives the real MainWindow and Session (real threads, real cache, real
document) with :class:`qt_fixtures.FakePredictor` in place of SAM.
"""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
from PySide6.QtCore import Qt
from qt_fixtures import FakePredictor, click_image, close_window, drag_image, fake_info, key

from annotator.data.prompts import PromptState
from annotator.session.rows import ImageState

pytestmark = pytest.mark.gui


def _settled(qtbot, w):
    """Wait until an accept in flight is in the document."""
    qtbot.waitUntil(lambda: not w.session.accepting, timeout=30_000)


def _ready(qtbot, window, timeout=10_000):
    """Wait until the current image has its embedding."""
    qtbot.waitUntil(lambda: window.session.embedding is not None, timeout=timeout)


def _idle(qtbot, session, timeout=10_000):
    """A deterministic idle barrier: nothing is loading, encoding or queued, and a task sent through the
    decoder thread now has come back, so every result sent before it has been delivered (applied or dropped)."""
    qtbot.waitUntil(lambda: not session.encoder.busy, timeout=timeout)
    sent = []
    with qtbot.waitSignal(session.decoder.taskDone, timeout=timeout, check_params_cb=lambda tid, _: tid in sent):
        sent.append(session.decoder.run_task(int))


def _candidates(qtbot, window, timeout=10_000):
    qtbot.waitUntil(
        lambda: window.session.result is not None and window.session.result.prompt is window.session.prompt,
        timeout=timeout,
    )
    return window.session.result


@pytest.fixture
def fake_window(make_window, image_folder, tmp_path):
    def make(delay=0.0, folder=None, **kw):
        pred = FakePredictor(delay)
        w = make_window(folder or image_folder, fake_info(pred, tmp_path / "cache"), **kw)
        w.fake = pred
        return w

    return make


def test_click_gives_three_candidates_at_the_click(qtbot, fake_window):
    w = fake_window()
    _ready(qtbot, w)
    click_image(qtbot, w, 200, 150)
    res = _candidates(qtbot, w)
    (x, y), = w.session.prompt.points
    assert abs(x - 200) <= 1 / w.canvas.view_scale() and abs(y - 150) <= 1 / w.canvas.view_scale()
    assert w.session.prompt.labels == (1,)
    assert len(res.overlays) == 3 and list(res.candidates.scores) == sorted(res.candidates.scores, reverse=True)
    assert [b.isHidden() for b in w.strip.buttons] == [False, False, False]
    assert w.strip.selected() == 0
    # the preview is centred on the click
    m = res.previews[0]
    ys, xs = np.nonzero(m)
    sx, sy = m.shape[1] / 512, m.shape[0] / 512
    assert abs(xs.mean() / sx - 200) < 4 and abs(ys.mean() / sy - 150) < 4


def test_right_click_and_shift_click_are_background(qtbot, fake_window):
    w = fake_window()
    _ready(qtbot, w)
    click_image(qtbot, w, 100, 100)
    click_image(qtbot, w, 300, 300, Qt.MouseButton.RightButton)
    click_image(qtbot, w, 50, 400, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier)
    assert w.session.prompt.labels == (1, 0, 0)
    _candidates(qtbot, w)


def test_drag_draws_a_box_that_replaces_the_earlier_one(qtbot, fake_window):
    w = fake_window()
    _ready(qtbot, w)
    drag_image(qtbot, w, 100, 120, 300, 260)
    box = w.session.prompt.box
    tol = 1 / w.canvas.view_scale() + 1e-6
    assert box is not None and all(abs(a - b) <= tol for a, b in zip(box, (100, 120, 300, 260)))
    drag_image(qtbot, w, 400, 400, 350, 330)  # dragged up-left: corners ordered
    box = w.session.prompt.box
    assert all(abs(a - b) <= tol for a, b in zip(box, (350, 330, 400, 400)))
    assert w.session.prompt.points == ()
    _candidates(qtbot, w)


def test_tab_and_number_keys_pick_candidates_and_refine_from_the_choice(qtbot, fake_window):
    w = fake_window()
    _ready(qtbot, w)
    click_image(qtbot, w, 256, 256)
    res = _candidates(qtbot, w)
    overlay = w.canvas.overlays.candidate_item.pixmap().toImage()
    key(qtbot, w, Qt.Key.Key_Tab)
    assert w.session.selected == 1 and w.strip.selected() == 1
    assert w.canvas.overlays.candidate_item.pixmap().toImage() != overlay
    key(qtbot, w, Qt.Key.Key_Backtab, Qt.KeyboardModifier.ShiftModifier)
    assert w.session.selected == 0
    key(qtbot, w, Qt.Key.Key_3)
    assert w.session.selected == 2 and w.strip.selected() == 2
    key(qtbot, w, Qt.Key.Key_1)
    assert w.session.selected == 0
    w.strip.buttons[1].click()
    assert w.session.selected == 1
    # the next click refines from candidate 2
    click_image(qtbot, w, 300, 300)
    _candidates(qtbot, w)
    last = w.fake.decodes[-1]
    np.testing.assert_array_equal(last["mask_input"], res.candidates.low_res_logits[1])


def test_clicks_during_encoding_are_kept_and_answered(qtbot, fake_window):
    w = fake_window()
    _ready(qtbot, w)
    qtbot.waitUntil(lambda: w.session.encoder_idle)  # the prefetch of image 2 is done
    w.fake.gate = threading.Event()
    w.session.go_to(2)
    qtbot.waitUntil(lambda: w.session.loaded is not None and w.session.loaded.path.name == "03_coffee.jpg")
    assert w.session.embedding is None
    click_image(qtbot, w, 200, 150)
    click_image(qtbot, w, 100, 100, Qt.MouseButton.RightButton)
    assert len(w.session.prompt.points) == 2 and w.session.result is None
    w.fake.gate.set()
    res = _candidates(qtbot, w)
    assert res.prompt is w.session.prompt and len(res.prompt.points) == 2


def test_switching_images_mid_encode_shows_no_stale_mask(qtbot, fake_window):
    w = fake_window()
    _ready(qtbot, w)
    w.fake.gate = threading.Event()
    key(qtbot, w, Qt.Key.Key_D)  # -> chelsea, encoding blocked
    qtbot.waitUntil(lambda: w.session.loaded is not None and w.session.loaded.path.name == "02_chelsea.png")
    click_image(qtbot, w, 200, 150)
    key(qtbot, w, Qt.Key.Key_D)  # -> coffee before chelsea's embedding exists
    qtbot.waitUntil(lambda: w.session.loaded is not None and w.session.loaded.path.name == "03_coffee.jpg")
    assert w.session.prompt.empty
    w.fake.gate.set()
    _ready(qtbot, w)
    _idle(qtbot, w.session)  # chelsea's late embedding (and anything decoded for it) has arrived by now
    assert w.session.result is None and w.canvas.overlays.candidate_item.isVisible() is False
    # the embedding in use is coffee's, not chelsea's
    assert w.session.embedding.original_size == (400, 600)
    click_image(qtbot, w, 300, 200)
    res = _candidates(qtbot, w)
    assert res.candidates.original_size == (400, 600)


def test_enter_accepts_and_undo_redo(qtbot, fake_window):
    w = fake_window()
    _ready(qtbot, w)
    click_image(qtbot, w, 256, 256)
    _candidates(qtbot, w)
    key(qtbot, w, Qt.Key.Key_3)
    key(qtbot, w, Qt.Key.Key_Return)
    _settled(qtbot, w)
    ds = w.session.dataset
    assert len(ds.annotations) == 1
    (ann,) = ds.annotations.values()
    assert ann.extra["predicted_iou"] == pytest.approx(0.6, abs=1e-3)  # the third candidate
    assert w.session.prompt.empty and w.session.result is None
    assert w.annotations.list.count() == 1
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert len(ds.annotations) == 0
    assert len(w.session.prompt.points) == 1  # the prompt comes back with the accept undone
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert list(ds.annotations) == [ann.id]
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    key(qtbot, w, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert list(ds.annotations) == [ann.id]


def test_undo_covers_prompts_and_esc_clears(qtbot, fake_window):
    w = fake_window()
    _ready(qtbot, w)
    click_image(qtbot, w, 100, 100)
    click_image(qtbot, w, 200, 200)
    assert len(w.session.prompt.points) == 2
    key(qtbot, w, Qt.Key.Key_Escape)
    assert w.session.prompt.empty
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert len(w.session.prompt.points) == 2
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert len(w.session.prompt.points) == 1
    _candidates(qtbot, w)


def test_space_accepts_and_space_drag_pans(qtbot, fake_window):
    w = fake_window()
    _ready(qtbot, w)
    click_image(qtbot, w, 256, 256)
    _candidates(qtbot, w)
    w.canvas.setFocus()
    with qtbot.waitSignal(w.canvas.spaceReleased, timeout=5000):  # a release is an accept once no press follows
        qtbot.keyPress(w.canvas, Qt.Key.Key_Space)
        qtbot.keyRelease(w.canvas, Qt.Key.Key_Space)
    _settled(qtbot, w)
    assert len(w.session.dataset.annotations) == 1
    # Space held while dragging pans and accepts nothing
    click_image(qtbot, w, 100, 100)
    _candidates(qtbot, w)
    w.canvas.zoom_by(3)
    h0 = w.canvas.horizontalScrollBar().value()
    qtbot.keyPress(w.canvas, Qt.Key.Key_Space)
    drag_image(qtbot, w, 100, 100, 60, 100)
    qtbot.keyRelease(w.canvas, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: not w.canvas.pan.settling, timeout=5000)
    _settled(qtbot, w)
    assert len(w.session.dataset.annotations) == 1
    assert w.canvas.horizontalScrollBar().value() != h0
    assert len(w.session.prompt.points) == 1  # no point added by the pan


def test_navigation_keys_and_prefetch(qtbot, fake_window):
    w = fake_window()
    _ready(qtbot, w)
    s = w.session
    # after the first image, the next one is prefetched into the cache
    qtbot.waitUntil(lambda: s.image_row(1).state == ImageState.READY, timeout=10_000)
    n = len(w.fake.encoded)
    key(qtbot, w, Qt.Key.Key_Right)
    assert s.index == 1
    # prefetched: image and embedding are there at once, without a new encode
    assert s.loaded is not None and s.embedding is not None
    click_image(qtbot, w, 200, 150)
    _candidates(qtbot, w)
    qtbot.waitUntil(lambda: s.image_row(2).state == ImageState.READY, timeout=10_000)
    assert len(w.fake.encoded) == n + 1  # only the prefetch of image 3
    key(qtbot, w, Qt.Key.Key_A)
    assert s.index == 0 and s.embedding is not None
    key(qtbot, w, Qt.Key.Key_PageDown)
    key(qtbot, w, Qt.Key.Key_PageDown)
    assert s.index == 2
    key(qtbot, w, Qt.Key.Key_PageDown)  # at the end: stays
    assert s.index == 2
    key(qtbot, w, Qt.Key.Key_PageUp)
    assert s.index == 1


def test_annotations_panel_hide_delete_and_recategorise(qtbot, fake_window):
    w = fake_window()
    _ready(qtbot, w)
    s = w.session
    for x in (100, 400):
        click_image(qtbot, w, x, 256)
        _candidates(qtbot, w)
        key(qtbot, w, Qt.Key.Key_Return)
        _settled(qtbot, w)
    assert w.annotations.list.count() == 2
    assert len(w.canvas.overlays.annotation_items) == 2
    w.annotations.list.item(0).setCheckState(Qt.CheckState.Unchecked)  # hide
    assert len(w.canvas.overlays.annotation_items) == 1
    assert w.annotations.list.item(0).checkState() == Qt.CheckState.Unchecked
    w.annotations.list.item(0).setCheckState(Qt.CheckState.Checked)
    assert len(w.canvas.overlays.annotation_items) == 2
    w.annotations.list.setCurrentRow(1)
    aid = w.annotations.selected_id()
    assert s.selected_annotation == aid
    assert s.add_category("person")
    person = s.dataset.category_by_name("person")
    w.annotations.categoryChangeRequested.emit(aid, person.id)
    assert s.dataset.annotations[aid].category_id == person.id
    key(qtbot, w, Qt.Key.Key_Delete)
    assert aid not in s.dataset.annotations and w.annotations.list.count() == 1
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert s.dataset.annotations[aid].category_id == person.id
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert s.dataset.annotations[aid].category_id != person.id


def test_categories_quick_keys_add_rename_recolour_delete(qtbot, fake_window):
    w = fake_window()
    _ready(qtbot, w)
    s = w.session
    assert [r.name for r in s.category_rows()] == ["object"]  # from resources/default_categories.json
    assert s.add_category("person")
    key(qtbot, w, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert s.dataset.categories[s.category_id].name == "object"
    key(qtbot, w, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
    assert s.dataset.categories[s.category_id].name == "person"
    assert w.categories.current_id() == s.category_id
    click_image(qtbot, w, 256, 256)
    _candidates(qtbot, w)
    key(qtbot, w, Qt.Key.Key_Return)
    _settled(qtbot, w)
    (ann,) = s.dataset.annotations.values()
    assert s.dataset.categories[ann.category_id].name == "person"
    assert s.add_category("tree", (10, 200, 10))
    tree = s.dataset.category_by_name("tree")
    assert s.category_id == tree.id
    s.rename_category(tree.id, "oak")
    s.recolor_category(tree.id, (1, 2, 3))
    assert s.dataset.categories[tree.id].name == "oak" and s.dataset.categories[tree.id].color == (1, 2, 3)
    person = s.dataset.category_by_name("person")
    s.delete_category(person.id, reassign_to=tree.id)
    assert person.id not in s.dataset.categories and s.dataset.annotations[ann.id].category_id == tree.id
    s.undo()
    assert s.dataset.categories[person.id].name == "person" and s.dataset.annotations[ann.id].category_id == person.id
    s.delete_category(person.id, reassign_to=None)
    assert ann.id not in s.dataset.annotations
    s.undo()
    assert ann.id in s.dataset.annotations


def test_actions_during_an_accept_wait_for_it_in_order(qtbot, fake_window, monkeypatch):
    from annotator import render

    gate = threading.Event()
    real = render.finish_mask  # the accept's last step on the decoder thread

    def slow_finish(*args):
        assert gate.wait(30)
        return real(*args)

    monkeypatch.setattr(render, "finish_mask", slow_finish)
    w = fake_window()
    _ready(qtbot, w)
    s = w.session
    click_image(qtbot, w, 256, 256)
    _candidates(qtbot, w)
    key(qtbot, w, Qt.Key.Key_Return)
    assert s.accepting
    click_image(qtbot, w, 100, 100)  # a new prompt on the same image...
    key(qtbot, w, Qt.Key.Key_D)  # ...then the next image
    assert len(s.dataset.annotations) == 0 and len(s.prompt.points) == 1 and s.index == 0
    gate.set()
    _settled(qtbot, w)
    qtbot.waitUntil(lambda: s.index == 1)
    assert len(s.dataset.annotations) == 1
    (ann,) = s.dataset.annotations.values()
    assert s.dataset.images[ann.image_id].file_name == "01_astronaut.jpg"
    # the click was applied after the accept, on image 1, before moving on
    assert [c.text() for c in [s.undo_stack.command(i) for i in range(s.undo_stack.count())]][-2:] == [
        "Accept object", "Add foreground point"]


def test_prompt_undo_is_per_image(qtbot, fake_window):
    w = fake_window()
    _ready(qtbot, w)
    s = w.session
    click_image(qtbot, w, 256, 256)
    _candidates(qtbot, w)
    key(qtbot, w, Qt.Key.Key_Return)
    _settled(qtbot, w)
    click_image(qtbot, w, 100, 100)  # a prompt left behind on image 1
    key(qtbot, w, Qt.Key.Key_D)
    _ready(qtbot, w)
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    # the stale prompt step is skipped; the accept on image 1 is undone
    assert len(s.dataset.annotations) == 0
    assert s.index == 1 and s.prompt.empty


def test_autosave_after_accept_and_resume(qtbot, fake_window, image_folder):
    w = fake_window()
    _ready(qtbot, w)
    click_image(qtbot, w, 256, 256)
    _candidates(qtbot, w)
    key(qtbot, w, Qt.Key.Key_Return)
    _settled(qtbot, w)
    path = image_folder / "annotations.json"
    qtbot.waitUntil(path.exists, timeout=2000)  # autosaved within the debounce, without Ctrl+S
    data = json.loads(path.read_text())
    assert len(data["annotations"]) == 1 and data["images"][0]["file_name"] == "01_astronaut.jpg"
    mask = w.session.dataset.annotations[data["annotations"][0]["id"]].mask()
    assert "*" not in w.windowTitle()
    close_window(w)
    w2 = fake_window()
    assert len(w2.session.dataset.annotations) == 1
    qtbot.waitUntil(lambda: len(w2.canvas.overlays.annotation_items) == 1)
    np.testing.assert_array_equal(next(iter(w2.session.dataset.annotations.values())).mask(), mask)
    assert w2.images.model.data(w2.images.model.index(0)).endswith("(1)")


def test_a_bad_annotation_file_is_never_overwritten(qtbot, make_window, image_folder, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    bad = image_folder / "annotations.json"
    bad.write_text('{"images": [}')
    shown = []

    def fake_exec(box):
        shown.append(box.text() + box.detailedText())
        return 0  # the user closes the dialog (Cancel)

    monkeypatch.setattr(QMessageBox, "exec", fake_exec)
    from annotator.ui.main_window import MainWindow

    w = MainWindow()
    qtbot.addWidget(w)
    assert not w.open_folder(image_folder)
    assert shown and "malformed JSON" in shown[0]
    assert w.session.dataset is None
    close_window(w)
    assert bad.read_text() == '{"images": [}'


def test_save_failure_is_reported_and_state_stays_unsaved(qtbot, fake_window, image_folder, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warnings.append(a[2]))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)
    w = fake_window()
    _ready(qtbot, w)

    def fail(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(w.session.dataset, "save", fail)
    click_image(qtbot, w, 256, 256)
    _candidates(qtbot, w)
    key(qtbot, w, Qt.Key.Key_Return)
    _settled(qtbot, w)
    qtbot.waitUntil(lambda: bool(warnings), timeout=3000)
    assert "No space left on device" in warnings[0]
    assert w.session.dirty and w.windowTitle().startswith("*")
    assert "No space left" in w.statusBar().currentMessage()


def test_unusable_image_is_marked_and_skipped(qtbot, fake_window, image_folder):
    (image_folder / "00_broken.jpg").write_bytes(b"")
    w = fake_window()
    s = w.session
    qtbot.waitUntil(lambda: s.image_row(0).state == ImageState.ERROR, timeout=5000)
    assert "empty file" in s.image_row(0).message
    assert "00_broken.jpg" in w.statusBar().currentMessage()
    key(qtbot, w, Qt.Key.Key_D)
    _ready(qtbot, w)
    click_image(qtbot, w, 200, 200)
    _candidates(qtbot, w)


def test_help_lists_every_shortcut_from_the_table(qtbot, fake_window):
    from PySide6.QtGui import QKeySequence
    from PySide6.QtWidgets import QTextBrowser

    from annotator.ui import actions

    w = fake_window()
    key(qtbot, w, Qt.Key.Key_F1)
    qtbot.waitUntil(lambda: w.app_dialogs.help_dialog is not None and w.app_dialogs.help_dialog.isVisible())
    shown = w.app_dialogs.help_dialog.findChild(QTextBrowser, "helpText").toPlainText()
    for spec in actions.ACTIONS:
        for k in spec.keys:
            if spec.group:  # shown as a range: "Ctrl+1 … Ctrl+9"
                assert spec.group in shown
                continue
            assert actions.key_text(k) in shown, (spec.name, k)
        # the window's action has exactly the table's shortcuts
        got = [s.toString() for s in w.actions_by_name[spec.name].shortcuts()]
        assert got == [QKeySequence(k).toString() for k in spec.shortcuts + spec.aliases]
    for gesture, _ in actions.MOUSE:
        assert gesture in shown
    assert "Ctrl+1 … Ctrl+9" in shown
    assert actions.conflicts() == []
    w.app_dialogs.help_dialog.close()


def test_prompt_state_is_a_checked_value():
    p = PromptState().with_point(1, 2, 1, None).with_box((0, 0, 5, 5), None)
    args = p.decode_args()
    assert args["points"].shape == (1, 2) and args["labels"].tolist() == [1] and args["box"].tolist() == [0, 0, 5, 5]
    with pytest.raises(ValueError):
        PromptState(points=((1.0, 2.0),), labels=())
    with pytest.raises(ValueError):
        PromptState(points=((1.0, 2.0),), labels=(3,))


@pytest.mark.parametrize(
    "box, expected",
    [
        ((10, 10, 50, 60), (10, 10, 50, 60)),
        ((50, 60, 10, 10), (10, 10, 50, 60)),
        ((-100, -5, 1000, 70), (-0.5, -0.5, 99.5, 70)),
        ((10, 10, 11, 60), None),  # too thin
        ((float("nan"), 0, 5, 5), None),
        ((0, 0, float("inf"), 5), None),
    ],
)
def test_clamp_box(box, expected):
    from annotator.data.prompts import clamp_box

    assert clamp_box(box, 100, 80) == expected


def test_closing_saves_and_joins_threads(qtbot, fake_window, image_folder):
    from annotator.workers import base as workers

    w = fake_window(delay=0.3)
    _ready(qtbot, w)
    click_image(qtbot, w, 256, 256)
    _candidates(qtbot, w)
    w.session.accept()
    _settled(qtbot, w)
    threads = [t for t in workers.THREADS if t.isRunning()]
    assert {t.objectName() for t in threads} >= {"sam-encoder", "sam-decoder"}
    close_window(w)
    assert not any(t.isRunning() for t in threads)
    assert json.loads((image_folder / "annotations.json").read_text())["annotations"]
    assert os.path.getsize(image_folder / "annotations.json") > 0


def test_binding_reference_leaks_cannot_crash_the_app():
    """PySide6 6.12.0 drops a reference to None on every void call (and to True on every emit);
    on Python < 3.12 that aborts the process after a few thousand calls unless annotator.qtcompat steps in."""
    import sys

    from PySide6.QtCore import QObject, Signal

    from annotator import qtcompat

    class Emitter(QObject):
        changed = Signal(bool)

    e = Emitter()
    got = []
    e.changed.connect(got.append)
    for _ in range(20_000):
        e.setObjectName("x")
        e.changed.emit(True)
    got.clear()
    if qtcompat.LEAKS and sys.version_info < (3, 12):
        assert sys.getrefcount(None) > qtcompat.EXTRA_REFERENCES // 2
        assert sys.getrefcount(True) > qtcompat.EXTRA_REFERENCES // 2


def test_wheel_zooms_around_the_cursor_and_clicks_stay_exact(qtbot, fake_window):
    from PySide6.QtCore import QPoint, QPointF
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    w = fake_window()
    _ready(qtbot, w)
    c = w.canvas
    s0 = c.view_scale()
    for _ in range(4):
        key(qtbot, w, Qt.Key.Key_Plus)  # zoom in around the centre until the image overflows the view
    anchor = (300.0, 200.0)
    c.centerOn(*anchor)
    pos = c.viewport_pos(*anchor) + QPointF(25, -15)
    anchor = c.image_at(pos)
    s1 = c.view_scale()
    for _ in range(3):
        ev = QWheelEvent(pos, c.viewport().mapToGlobal(pos), QPoint(0, 0), QPoint(0, 120),
                         Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
        QApplication.sendEvent(c.viewport(), ev)
    assert c.view_scale() > s1 * 1.5
    x, y = c.image_at(pos)
    assert abs(x - anchor[0]) < 1 and abs(y - anchor[1]) < 1  # the point under the cursor stays put
    # at this zoom a click lands within one screen pixel of its image position
    click_image(qtbot, w, 310.25, 205.75)
    (px, py), = w.session.prompt.points
    tol = 1 / c.view_scale()
    assert abs(px - 310.25) <= tol and abs(py - 205.75) <= tol
    # middle-drag pans
    h0, v0 = c.horizontalScrollBar().value(), c.verticalScrollBar().value()
    qtbot.mousePress(c.viewport(), Qt.MouseButton.MiddleButton, pos=pos.toPoint())
    qtbot.mouseMove(c.viewport(), pos.toPoint() + QPoint(-40, -30))
    qtbot.mouseRelease(c.viewport(), Qt.MouseButton.MiddleButton, pos=pos.toPoint() + QPoint(-40, -30))
    assert (c.horizontalScrollBar().value(), c.verticalScrollBar().value()) != (h0, v0)
    assert len(w.session.prompt.points) == 1
    key(qtbot, w, Qt.Key.Key_F)  # fit again
    assert c.view_scale() == pytest.approx(s0, rel=1e-6)


def test_bad_prompt_input_is_ignored(qtbot, fake_window):
    w = fake_window()
    _ready(qtbot, w)
    s = w.session
    for x, y in ((float("nan"), 10.0), (10.0, float("inf")), (-5.0, 10.0), (10.0, 600.0), (512.0, 3.0)):
        s.add_point(x, y, 1)
    s.set_box(10, 10, 10.5, 200)  # degenerate
    s.set_box(float("nan"), 0, 50, 50)
    assert s.prompt.empty and s.undo_stack.count() == 0
    s.set_box(-100, -100, 50, 40)  # clamped to the image
    assert s.prompt.box == (-0.5, -0.5, 50.0, 40.0)
    _candidates(qtbot, w)


def test_status_bar_times_the_encode(qtbot, fake_window):
    w = fake_window()
    _ready(qtbot, w)
    qtbot.waitUntil(lambda: w.session.encoder_idle)
    w.fake.gate = threading.Event()
    w.session.go_to(2)
    qtbot.waitUntil(lambda: w.encoder_status.text().startswith("Encoding image…"), timeout=5000)
    # the clock runs while the encode is held: "Encoding image… 0.2 s", and on
    qtbot.waitUntil(lambda: w.encoder_status.text().endswith(" s")
                    and float(w.encoder_status.text().split()[-2]) >= 0.2, timeout=5000)
    assert w.session.embedding is None
    w.fake.gate.set()
    _ready(qtbot, w)
    assert w.encoder_status.text() == ""


def test_ctrl_s_and_export_menu(qtbot, fake_window, image_folder, monkeypatch, tmp_path):
    from PySide6.QtWidgets import QFileDialog, QMessageBox

    from annotator.data import coco
    from annotator.data.document import Dataset

    w = fake_window()
    _ready(qtbot, w)
    s = w.session
    click_image(qtbot, w, 256, 256)
    _candidates(qtbot, w)
    key(qtbot, w, Qt.Key.Key_Return)
    _settled(qtbot, w)
    # a mask with a hole, added through the document, then Ctrl+S
    ring = np.zeros((512, 512), bool)
    ring[100:200, 100:200] = True
    ring[140:160, 140:160] = False
    ann = s.dataset.make_annotation(next(iter(s.dataset.images)), min(s.dataset.categories), ring)
    s.dataset.add_annotation(ann)
    assert s.dirty
    key(qtbot, w, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert not s.dirty and len(Dataset.open(image_folder / "annotations.json").annotations) == 2

    out = tmp_path / "export.json"
    infos = []
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: infos.append(a[2]))
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: pytest.fail(f"export failed: {a[2]}"))
    from annotator.ui.format_dialogs import ExportChoice, ExportDialog

    def choose(fmt):  # File → Export's dialog: pick the format, press Export…
        monkeypatch.setattr(ExportDialog, "exec", lambda d: (d.set_choice(ExportChoice(fmt)), 1)[1])

    choose("coco-polygon")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "COCO JSON (*.json)"))
    ctrl_shift = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    # File → Export runs on the export thread: the status bar shows its progress, the file appears after
    with qtbot.waitSignal(s.exportFinished, timeout=20_000) as done:
        key(qtbot, w, Qt.Key.Key_E, ctrl_shift)
        assert s.exporting and w.export_progress.isVisible()
    assert done.args[0] == out and not w.export_progress.isVisible()
    data = json.loads(out.read_text())
    assert all(isinstance(a["segmentation"], list) for a in data["annotations"])
    assert infos and "hole" in infos[0]
    assert coco.validate_coco(data) == []
    choose("coco-rle")
    infos.clear()
    with qtbot.waitSignal(s.exportFinished, timeout=20_000):
        key(qtbot, w, Qt.Key.Key_E, ctrl_shift)
    data = json.loads(out.read_text())
    assert all(isinstance(a["segmentation"], dict) for a in data["annotations"])
    # no warning this time; the polygon export it replaced was backed up first, and the dialog says so
    assert len(infos) == 1 and "hole" not in infos[0] and "the previous file was backed up as export.json." in infos[0]
    backups = list(tmp_path.glob("export.json.*.bak"))
    assert len(backups) == 1 and isinstance(json.loads(backups[0].read_text())["annotations"][0]["segmentation"], list)
    # Ctrl+E is segment everything now, not export
    assert w.actions_by_name["segment_everything"].shortcut().toString() == "Ctrl+E"


def test_start_over_replaces_a_bad_file_after_backing_it_up(qtbot, make_window, image_folder, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    bad = image_folder / "annotations.json"
    bad.write_text('{"images": 3}')

    def press_start_over(box):
        next(b for b in box.buttons() if b.text() == "Start Over").click()
        return 0

    monkeypatch.setattr(QMessageBox, "exec", press_start_over)
    w = make_window()
    assert w.open_folder(image_folder)
    assert w.session.dataset is not None and not w.session.dataset.annotations
    assert bad.read_text() == '{"images": 3}'  # untouched until something is saved
    w.session.dataset.add_category("tree")
    assert w.session.save()
    backups = list(image_folder.glob("annotations.json.*.bak"))
    assert backups and backups[0].read_text() == '{"images": 3}'


def test_large_images_are_drawn_from_the_pyramid_level_of_the_zoom(qtbot, fake_window, tmp_path):
    """A 3000 x 2000 photo fitted in the window is painted from a smaller copy; at 100 %, from the full image."""
    from PIL import Image

    folder = tmp_path / "big"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (2000, 3000, 3), np.uint8)).save(folder / "big.png")
    w = fake_window(folder=folder)
    _ready(qtbot, w)
    c, s = w.canvas, w.session
    assert [(q.width(), q.height()) for q in s.loaded.levels] == [(3000, 2000), (1500, 1000), (750, 500)]
    # fitted: drawn from the smallest level that still has a pixel per screen pixel
    on_screen = 3000 * c.view_scale()
    assert on_screen < 1500
    assert c.image_level == max(k for k, q in enumerate(s.loaded.levels) if q.width() >= on_screen * 0.999) > 0
    assert c._image_item.sceneBoundingRect().getRect() == (0, 0, 3000, 2000)  # scene units stay full-image pixels
    click_image(qtbot, w, 1234.5, 987.25)
    (px, py), = s.prompt.points
    assert abs(px - 1234.5) <= 1 / c.view_scale() and abs(py - 987.25) <= 1 / c.view_scale()
    c.actual_size()
    assert c.view_scale() == pytest.approx(1.0) and c.image_level == 0
    assert c._image_item.sceneBoundingRect().getRect() == (0, 0, 3000, 2000)
    assert s.loaded.nbytes == 4 * (3000 * 2000 + 1500 * 1000 + 750 * 500) + s.loaded.small.nbytes


def test_the_log_says_which_model_and_folder_a_session_used(qtbot, fake_window, caplog):
    """A bug report's log must tell what was running: the model (and torch) and the folder opened."""
    import logging

    caplog.set_level(logging.INFO)
    w = fake_window()
    records = [r.getMessage() for r in caplog.records if r.name.startswith("annotator.session")]
    assert any(m.startswith("model loaded: ") and " torch " in m for m in records), records
    folder = next(m for m in records if m.startswith("opened "))
    assert f"{w.session.image_count()} images" in folder and "annotations.json" in folder


def test_opening_a_folder_prepares_the_first_save(qtbot, fake_window, monkeypatch):
    """The first autosave comes with the first accept: the document's lines are serialised while the folder
    opens instead (a second's work at 100,000 annotations), not then."""
    from annotator.data.document import Dataset

    prepared = []
    monkeypatch.setattr(Dataset, "prepare_save", lambda self: prepared.append(self.path))
    w = fake_window()
    assert prepared == [w.session.dataset.path]
