"""The window encodes the region the user is looking at (issue 20, parts 2 and 3), with a fake predictor.

The real MainWindow, Session, canvas and encoder thread, with
:class:`RegionFake` (:class:`qt_fixtures.FakePredictor` that also decodes
region embeddings, in full-image coordinates as :class:`sam_core.Predictor`
does) on 4096 x 3072 JPEGs tiled from scikit-image photos:

* a region is requested only when the view is zoomed in and has been still;
* a click inside it is answered from the whole image until the region is
  ready, then from the region (the prompt on display is decoded again); a
  prompt reaching outside it, or large relative to it, from the whole image;
  the mask_input follows into the frame of the embedding decoded;
* an image switch drops a region still waiting (it never ran) or in flight
  (its result is dropped); a region waits behind the whole-image encode;
* region embeddings are cached under their own keys, in memory and on disk,
  and come back from disk with their region;
* the preference off means no region encode, and prompts on the whole image.

Pure pieces (the region geometry, the pixel crop, the carried mask_input, the
encoder queue's order) are tested without a window. Real weights:
tests/test_region_window_weights.py.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPointF, QTimer
from qt_fixtures import FakePredictor, click_image, fake_info

from annotator.data.prompts import PromptState, mask_frame_of
from annotator.session import regions as regions_mod
from annotator.session.regions import (
    MIN_REGION_SIDE,
    PROMPT_MAX_FRACTION,
    REGION_SETTLE_MS,
    describe,
    wanted_region,
)
from annotator.ui.settings import Settings

H, W = 3072, 4096


# --------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------


class RegionFake(FakePredictor):
    """:class:`FakePredictor` whose decode also takes region embeddings (full-image prompts and masks).

    ``started`` counts encodes that began (before the gate); ``decoded_on``
    records the region of each embedding decoded (None: the whole image).
    """

    def __init__(self) -> None:
        super().__init__()
        self.started = 0
        self.decoded_on: list = []

    def encode(self, image):
        with self.lock:
            self.started += 1
        return super().encode(image)

    def decode(self, emb, points=None, labels=None, box=None, mask_input=None, multimask=True):
        from sam_core import Candidates, PromptOutsideRegion

        with self.lock:
            self.decoded_on.append(emb.region)
        if emb.region is None:
            return super().decode(emb, points, labels, box, mask_input, multimask)
        if not emb.covers(points, box):
            raise PromptOutsideRegion("outside", region=emb.region, image_size=emb.image_size)
        x0, y0 = emb.region[:2]
        pts = None if points is None else np.asarray(points, np.float64) - [x0, y0]
        bx = None if box is None else np.asarray(box, np.float64) - [x0, y0, x0, y0]
        crop = dataclasses.replace(emb, region=None, image_size=None)
        c = super().decode(crop, pts, labels, bx, mask_input, multimask)
        return Candidates(c.scores, c.low_res_logits, emb.full_size, c.input_size, "fake", 0.0, emb.region)

    @property
    def region_encodes(self) -> int:
        """Encodes of something smaller than the image: regions."""
        return sum(1 for size in self.encoded if size != (H, W))


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory):
    """Two 4096 x 3072 JPEGs, each tiled with scikit-image photos at native size."""
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("big")
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for n in range(2):
        canvas = np.zeros((H, W, 3), np.uint8)
        k = n
        for y in range(0, H, 512):
            for x in range(0, W, 512):
                p = photos[k % len(photos)][:512, :512]
                k += 1
                h, w = min(512, H - y, p.shape[0]), min(512, W - x, p.shape[1])
                canvas[y : y + h, x : x + w] = p[:h, :w]
        Image.fromarray(canvas).save(folder / f"{n + 1:02d}_big.jpg", quality=90)
    return folder


@pytest.fixture
def region_window(make_window, big_folder, tmp_path):
    def make(settings=None, gate=None):
        pred = RegionFake()
        pred.gate = gate
        w = make_window(big_folder, fake_info(pred, tmp_path / "cache"), settings=settings)
        w.fake = pred
        return w

    return make


def _ready(qtbot, w, timeout=30_000):
    qtbot.waitUntil(lambda: w.session.embedding is not None, timeout=timeout)


def _idle(qtbot, w, timeout=30_000):
    qtbot.waitUntil(lambda: w.session.encoder_idle and not w.session.regions.settling, timeout=timeout)


def _current(qtbot, w, timeout=10_000):
    """The candidates on display, once they belong to the prompt."""
    s = w.session
    qtbot.waitUntil(lambda: s.result is not None and s.result.prompt is s.prompt, timeout=timeout)
    return s.result


def zoom_to(w, x: float, y: float, scale: float = 1.0) -> None:
    """Show image point ``(x, y)`` in the middle of the canvas at ``scale`` screen pixels per image pixel."""
    c = w.canvas
    c.zoom_by(scale / c.view_scale())
    c.centerOn(QPointF(x + 0.5, y + 0.5))


# --------------------------------------------------------------------------------------
# pure pieces
# --------------------------------------------------------------------------------------


def test_wanted_region_is_the_view_plus_a_border_at_least_the_models_side_inside_the_image():
    # the whole image in view, or most of it: no region
    assert wanted_region((0, 0, W, H), (H, W)) is None
    assert wanted_region((-500, -200, W + 500, H + 200), (H, W)) is None
    assert wanted_region((0, 0, 0.6 * W, 0.6 * H), (H, W)) is None
    # a 700 x 500 view in the middle: bordered, grown to 1024 on its long side about its centre
    r = wanted_region((1700, 1300, 2400, 1800), (H, W))
    x0, y0, x1, y1 = r
    assert all(isinstance(v, int) for v in r)
    assert x0 <= 1700 - 70 and y0 <= 1300 - 50 and x1 >= 2400 + 70 and y1 >= 1800 + 50
    assert max(x1 - x0, y1 - y0) in (MIN_REGION_SIDE, MIN_REGION_SIDE + 1)
    assert abs((x0 + x1) / 2 - 2050) <= 1 and abs((y0 + y1) / 2 - 1550) <= 1
    assert (x1 - x0) / (y1 - y0) == pytest.approx(840 / 600, rel=0.01)  # the view's shape
    # at the image's corner: shifted inside, not cut
    r = wanted_region((-100, -100, 500, 300), (H, W))
    assert r[0] == 0 and r[1] == 0 and max(r[2], r[3]) >= MIN_REGION_SIDE - 1
    r = wanted_region((W - 300, H - 200, W + 100, H + 100), (H, W))
    assert r[2] == W and r[3] == H and r[0] >= 0 and r[1] >= 0
    # a view 1/3 of the image: a region without growing
    r = wanted_region((1000, 1000, 2200, 1900), (H, W))
    assert r == (880, 910, 2320, 1990)
    # an image under twice the model's side never gets a region; nor a view that misses the image
    assert wanted_region((100, 100, 300, 300), (1500, 2000)) is None
    assert wanted_region((W + 10, 0, W + 500, 300), (H, W)) is None
    assert wanted_region((float("nan"), 0, 1, 1), (H, W)) is None


def test_crop_rgb_reads_the_display_pixels_exactly(photos):
    from annotator import render
    from annotator.workers.regions import crop_rgb

    image = photos["coffee"]
    qimage = render.rgb_image(image)
    for region in [(0, 0, 600, 400), (17, 33, 250, 301), (599, 399, 600, 400)]:
        x0, y0, x1, y1 = region
        crop = crop_rgb(qimage, region)
        assert crop.flags.c_contiguous and crop.dtype == np.uint8
        np.testing.assert_array_equal(crop, image[y0:y1, x0:x1])
    for bad in [(0, 0, 601, 400), (10, 10, 10, 20), (-1, 0, 5, 5)]:
        with pytest.raises(ValueError, match="not inside"):
            crop_rgb(qimage, bad)


def test_a_prompts_mask_input_is_carried_into_the_frame_of_the_embedding_decoded():
    from sam_core import Candidates, ImageEmbedding

    rng = np.random.default_rng(0)
    region = (1000, 800, 2024, 1568)
    whole = ImageEmbedding(torch.zeros(1, 256, 64, 64), (H, W), (768, 1024), "fake")
    reg = ImageEmbedding(torch.zeros(1, 256, 64, 64), (768, 1024), (768, 1024), "fake", (), region, (H, W))
    logits = rng.normal(size=(1, 256, 256)).astype(np.float32)
    mask = logits[0]
    decoded = Candidates(np.ones(1, np.float32), logits, (H, W), (768, 1024), "fake", 0.0, region)
    prompt = PromptState().with_point(1500, 1200, 1, mask, mask_frame_of(decoded))
    assert prompt.mask_frame == (region, (768, 1024)) == mask_frame_of(reg)
    assert prompt.decode_args(reg)["mask_input"] is mask  # its own frame: as is
    carried = prompt.decode_args(whole)["mask_input"]
    assert carried.shape == (256, 256) and not np.array_equal(carried, mask)
    np.testing.assert_array_equal(carried, decoded.logits_for(0, whole))
    assert prompt.decode_args()["mask_input"] is mask  # no embedding named: as is
    assert PromptState().with_point(1, 1, 1, mask).decode_args(whole)["mask_input"] is mask  # no frame: as is


def test_the_encoder_queue_puts_the_current_image_first_then_its_region_then_the_prefetch():
    from pathlib import Path

    from annotator.workers.encoder import _Wanted
    from annotator.workers.messages import EncodeJob, RegionJob

    a, b = Path("a.jpg"), Path("b.jpg")
    q = _Wanted()
    prefetch = EncodeJob(1, b, True, None)
    region1 = RegionJob(2, a, None, (0, 0, 10, 10), None)
    region2 = RegionJob(3, a, None, (5, 5, 15, 15), None)
    current = EncodeJob(4, a, False, None)
    for job in (prefetch, region1, region2, current):
        q.want(job, None)
    assert [q.take(), q.take(), q.take(), q.take()] == [current, region2, prefetch, None]  # latest region wins
    # a region in flight is never adopted as the image's whole-image encode
    q.want(current, region1)
    assert not q.current_sent and q.take() is current
    # a new current image drops the waiting region
    q.want(region1, None)
    q.drop_current()
    assert not q


# --------------------------------------------------------------------------------------
# the window
# --------------------------------------------------------------------------------------


@pytest.mark.gui
def test_a_region_is_requested_only_when_zoomed_in_and_the_view_is_still(qtbot, region_window):
    w = region_window()
    s, c = w.session, w.canvas
    _ready(qtbot, w)
    _idle(qtbot, w)
    asked: list = []
    moved: list = []
    s.regions.requested.connect(lambda r: asked.append((time.perf_counter(), r)))
    c.visibleRegionChanged.connect(lambda *rect: moved.append((time.perf_counter(), rect)))

    c.fit()  # the whole image in view
    zoom_to(w, W / 2, H / 2, scale=1.3 * c.view_scale())  # a little closer: most of the image still in view
    assert moved and s.regions.settling
    _idle(qtbot, w)
    assert asked == [] and w.fake.region_encodes == 0

    # zoomed in, then panned in small steps by a timer: nothing is asked while the view moves
    zoom_to(w, 1200, 900, scale=1.0)
    steps = []
    timer = QTimer()
    timer.setInterval(40)

    def step():
        c.scroll_by(15, 10)
        steps.append(time.perf_counter())
        if len(steps) == 10:
            timer.stop()

    timer.timeout.connect(step)
    timer.start()
    qtbot.waitUntil(lambda: len(steps) == 10, timeout=30_000)
    timer.stop()
    _idle(qtbot, w)  # the view has settled and its region is encoded
    assert asked and w.fake.region_encodes == len(asked)
    settle = REGION_SETTLE_MS / 1000.0
    for t, _ in asked:  # every request came a full settle delay after the view change before it (a load may
        last_move = max(tm for tm, _ in moved if tm <= t)  # stretch the timer's steps: then one came between)
        assert t - last_move >= settle * 0.9
    final_view = moved[-1][1]
    assert asked[-1][0] > moved[-1][0] or any(regions_mod.contains(e.region, final_view) for e in s.regions.held)
    held = s.regions.held[-1].region
    assert regions_mod.contains(held, final_view) and max(held[2] - held[0], held[3] - held[1]) * 2 <= W

    # a pan of a few pixels or a slight zoom inside the region asks for nothing more
    n = len(asked)
    c.scroll_by(5, 5)
    c.zoom_by(1.1)
    _idle(qtbot, w)
    assert len(asked) == n


@pytest.mark.gui
def test_clicks_inside_use_the_region_once_ready_and_prompts_outside_or_large_use_the_whole_image(
    qtbot, region_window
):
    w = region_window()
    s = w.session
    _ready(qtbot, w)
    _idle(qtbot, w)
    gate = w.fake.gate = threading.Event()
    started = w.fake.started
    with qtbot.waitSignal(s.regions.requested, timeout=10_000) as asked:
        zoom_to(w, 1300, 1000)
    region = asked.args[0]
    qtbot.waitUntil(lambda: w.fake.started > started)  # the region's encode is running (held at the gate)

    # before it is ready: the whole image answers
    click_image(qtbot, w, 1300, 1000)
    r = _current(qtbot, w)
    assert r.candidates.region is None and w.fake.decoded_on[-1] is None
    assert w.answer_label.text() == "SAM: whole image"

    # ready: the prompt on display is decoded again on the region, which answers the next clicks too
    with qtbot.waitSignal(s.regions.regionReady, timeout=10_000):
        gate.set()
    qtbot.waitUntil(lambda: s.result is not None and s.result.candidates.region == region)
    x0, y0, x1, y1 = region
    assert w.answer_label.text() == f"SAM: region {x1 - x0}\u00d7{y1 - y0} at ({x0}, {y0})"
    assert s.result.candidates.mask(0)[1000, 1300] and s.result.candidates.original_size == (H, W)
    first, sel = s.result, s.selected
    click_image(qtbot, w, 1320, 1010)
    r = _current(qtbot, w)
    assert r.candidates.region == region and w.fake.decoded_on[-1] == region
    sent = w.fake.decodes[-1]["mask_input"]  # the same frame: as it was
    assert sent is s.prompt.mask_input and np.array_equal(sent, first.candidates.low_res_logits[sel])

    # a point outside the region (off screen: through the session): the whole image, with the logits carried over
    before, sel = s.result, s.selected
    s.add_point(x1 + 200.0, y0 + 100.0, 0)
    r = _current(qtbot, w)
    assert r.candidates.region is None and w.fake.decoded_on[-1] is None
    assert w.answer_label.text() == "SAM: whole image"
    np.testing.assert_array_equal(w.fake.decodes[-1]["mask_input"], before.candidates.logits_for(sel, s.embedding))

    # boxes inside the region: a small one is answered by the region, a large one by the whole image
    s.clear_prompts()
    small = PROMPT_MAX_FRACTION * (x1 - x0) * 0.8
    s.set_box(1250, 950, 1250 + small, 950 + small / 2)
    assert _current(qtbot, w).candidates.region == region
    s.clear_prompts()
    large = PROMPT_MAX_FRACTION * max(x1 - x0, y1 - y0) * 1.2
    s.set_box(x0 + 5, y0 + 5, x0 + 5 + large, y0 + 50)
    assert _current(qtbot, w).candidates.region is None
    assert describe(None) == "" and s.regions.last_answer == "whole image"


@pytest.mark.gui
def test_an_image_switch_drops_a_region_in_flight(qtbot, region_window):
    w = region_window()
    s = w.session
    _ready(qtbot, w)
    _idle(qtbot, w)  # the next image is prefetched
    gate = w.fake.gate = threading.Event()
    started = w.fake.started
    ready: list = []
    s.regions.regionReady.connect(ready.append)
    with qtbot.waitSignal(s.regions.requested, timeout=10_000):
        zoom_to(w, 2500, 1500)
    qtbot.waitUntil(lambda: w.fake.started > started)
    s.next_image()
    assert s.index == 1 and s.regions.pending is None and s.regions.held == []
    gate.set()
    _idle(qtbot, w)
    assert w.fake.region_encodes == 1  # it ran to its end...
    assert ready == [] and s.regions.held == []  # ...and was dropped
    click_image(qtbot, w, 2000, 1500)
    assert _current(qtbot, w).candidates.region is None


@pytest.mark.gui
def test_a_region_waits_behind_the_whole_image_encode_and_an_image_switch_drops_it(qtbot, region_window):
    gate = threading.Event()
    w = region_window(gate=gate)  # the first image's encode is held at the gate
    s = w.session
    qtbot.waitUntil(lambda: s.loaded is not None and w.fake.started == 1, timeout=30_000)
    with qtbot.waitSignal(s.regions.requested, timeout=10_000):
        zoom_to(w, 2500, 1500)
    assert s.encoder.region_waiting  # queued behind the whole-image encode, not in its place
    s.next_image()
    assert not s.encoder.region_waiting and s.regions.pending is None
    gate.set()
    _ready(qtbot, w)
    _idle(qtbot, w)
    assert w.fake.region_encodes == 0 and w.fake.encoded == [(H, W)] * len(w.fake.encoded)


@pytest.mark.gui
def test_region_embeddings_are_cached_under_their_own_keys_and_reload_from_disk(
    qtbot, region_window, tmp_path, monkeypatch
):
    from sam_core import EmbeddingCache

    from annotator.data import imageio

    w = region_window()
    s = w.session
    cache = s.model_info.cache
    _ready(qtbot, w)
    _idle(qtbot, w)
    reads = []  # regions are cut from the pixels in memory: no file is read again
    real_load = imageio.load_image
    monkeypatch.setattr(imageio, "load_image", lambda *a, **k: reads.append(a) or real_load(*a, **k))
    digest = s.loaded.digest
    whole_key = cache.key_for_digest(digest)
    got = {}
    for name, (x, y) in {"a": (1200, 900), "b": (3000, 2200)}.items():
        with qtbot.waitSignal(s.regions.regionReady, timeout=10_000) as ready:
            zoom_to(w, x, y)
        got[name] = ready.args[0]
    a, b = got["a"], got["b"]
    key_a, key_b = (cache.key_for_region(whole_key, e.region) for e in (a, b))
    assert len({whole_key, key_a, key_b}) == 3
    assert cache.path_for(key_a).is_file() and cache.path_for(key_b).is_file()

    # a new cache on the same folder (an empty memory): the region comes back from disk, with its region
    fresh = EmbeddingCache(cache.directory, model_type="fake", checkpoint_id="fake-1")
    back = fresh.get(key_a)
    assert back.region == a.region and back.image_size == (H, W) and torch.equal(back.features, a.features)

    # the window asks again for a region it had (after leaving the image, which forgets its regions): served by
    # the cache (from disk here), not encoded again
    s.next_image()
    _ready(qtbot, w)
    _idle(qtbot, w)
    s.previous_image()
    _ready(qtbot, w)
    _idle(qtbot, w)
    assert s.regions.held == []
    encodes = len(w.fake.encoded)
    cache.clear_memory()
    with qtbot.waitSignal(s.regions.regionReady, timeout=10_000) as ready:
        zoom_to(w, 1200, 900)
    assert ready.args[0].region == a.region and len(w.fake.encoded) == encodes
    assert cache.stats.disk_hits >= 1
    assert reads == [] and w.fake.region_encodes == 2


@pytest.mark.gui
def test_with_the_preference_off_nothing_is_encoded_but_the_whole_image(qtbot, region_window, tmp_path):
    settings = Settings(tmp_path / "prefs.ini")
    settings.region_encoding = False
    w = region_window(settings=settings)
    s = w.session
    assert not s.regions.enabled
    _ready(qtbot, w)
    _idle(qtbot, w)
    asked: list = []
    s.regions.requested.connect(asked.append)
    zoom_to(w, 1200, 900)
    _idle(qtbot, w)
    click_image(qtbot, w, 1200, 900)
    assert _current(qtbot, w).candidates.region is None
    assert asked == [] and w.fake.region_encodes == 0

    # on again (what Preferences → OK does): the view in place is encoded, and answers the prompt on display
    settings.region_encoding = True
    with qtbot.waitSignal(s.regions.regionReady, timeout=10_000):
        w.apply_settings()
    qtbot.waitUntil(lambda: s.result.candidates.region is not None)
    # off again: the prompt on display goes back to the whole image, and the held regions are forgotten
    settings.region_encoding = False
    w.apply_settings()
    qtbot.waitUntil(lambda: s.result.candidates.region is None and s.result.prompt is s.prompt)
    assert s.regions.held == []


@pytest.mark.gui
def test_the_preferences_dialog_has_the_region_checkbox(qtbot, tmp_path):
    from annotator.ui.preferences import PreferencesDialog

    settings = Settings(tmp_path / "prefs.ini")
    assert settings.region_encoding is True  # the default
    dialog = PreferencesDialog(settings)
    qtbot.addWidget(dialog)
    assert dialog.region_check.isChecked()
    dialog.region_check.setChecked(False)
    dialog.accept()
    assert Settings(tmp_path / "prefs.ini").region_encoding is False
    settings.qsettings.setValue("region_encoding", "maybe")  # a hand-edited file: the default, never an error
    assert settings.region_encoding is True
    with pytest.raises(ValueError):
        settings.region_encoding = "maybe"


@pytest.mark.gui
def test_a_region_made_for_a_closer_view_does_not_answer_once_the_view_is_larger_than_it(qtbot, region_window):
    """Zoomed in (a small region), then zoomed out (or the window made larger) over a region already held: the
    prompt on display and the next clicks are answered by a region that contains the view, never by the small
    one, whose edge now runs through the view and would cut the object there (found driving the real window:
    the candidate had a straight edge across the coffee after the window was made small and large again)."""
    w = region_window()
    s, c = w.session, w.canvas
    _ready(qtbot, w)
    _idle(qtbot, w)
    with qtbot.waitSignal(s.regions.regionReady, timeout=10_000) as wide:
        zoom_to(w, 1300, 1000, scale=0.4)  # region B: the wide view
    _idle(qtbot, w)
    with qtbot.waitSignal(s.regions.regionReady, timeout=10_000) as close:
        zoom_to(w, 1300, 1000, scale=3.0)  # region A: a close view, finer than B
    _idle(qtbot, w)
    b, a = wide.args[0].region, close.args[0].region
    assert regions_mod.region_side(a) < regions_mod.region_side(b)
    click_image(qtbot, w, 1300, 1000)
    assert _current(qtbot, w).candidates.region == a  # zoomed in: the close region answers

    asked: list = []
    s.regions.requested.connect(asked.append)
    zoom_to(w, 1300, 1000, scale=0.4)  # back to the wide view: B is held, nothing new is encoded
    _idle(qtbot, w)
    view = tuple(c.mapToScene(c.viewport().rect()).boundingRect().getCoords())
    assert asked == [] and not regions_mod.contains(a, view) and regions_mod.contains(b, view)
    qtbot.waitUntil(lambda: s.result is not None and s.result.prompt is s.prompt and s.result.candidates.region == b)
    click_image(qtbot, w, 1310, 1005)
    assert _current(qtbot, w).candidates.region == b


@pytest.mark.gui
def test_a_mask_cut_by_the_regions_edge_is_answered_by_the_whole_image(qtbot, region_window):
    """The object under a click inside the region can reach past it: SAM on the region then cuts it with a
    straight edge (found zoomed in on a large photo: the coffee's mask, 1.2 M px, came out as a 0.5 M px
    rectangle, which Enter would have accepted). A region's answer whose chosen mask reaches an edge of the
    region inside the image is not shown: the prompt goes to the whole image (or a region that holds it)."""
    w = region_window()
    s = w.session
    _ready(qtbot, w)
    _idle(qtbot, w)
    with qtbot.waitSignal(s.regions.regionReady, timeout=10_000) as ready:
        zoom_to(w, 1300, 1000, scale=2.0)
    region = ready.args[0].region
    x0, y0, x1, y1 = region
    assert x0 > 0 and x1 < W  # inner edges on both sides

    # in the middle: the region's disc (radius 10 % of its short side) stays inside it: the region answers
    s.add_point((x0 + x1) / 2, (y0 + y1) / 2, 1)
    assert _current(qtbot, w).candidates.region == region

    # near its right edge: the region's disc reaches the edge; what is shown comes from the whole image
    s.clear_prompts()
    n = len(w.fake.decoded_on)
    s.add_point(x1 - 20.0, (y0 + y1) / 2, 1)
    qtbot.waitUntil(lambda: s.result is not None and s.result.prompt is s.prompt
                    and s.result.candidates.region is None, timeout=10_000)
    assert w.fake.decoded_on[n:] == [region, None]
    mask = s.result.candidates.mask(s.selected)
    assert mask[:, x1:].any()  # the object goes on past the region's edge
    assert w.answer_label.text() == "SAM: whole image"


def test_cut_at_edge_reads_the_valid_part_of_the_logits_and_ignores_the_images_own_edges():
    from sam_core import Candidates

    def cands(mask_cells, region, input_size=(768, 1024)):
        logits = np.full((1, 256, 256), -5.0, np.float32)
        for (r, c) in mask_cells:
            logits[0, r, c] = 5.0
        return Candidates(np.array([0.9], np.float32), logits, (H, W), input_size, "fake", 0.0, region)

    inner = (1000, 1000, 2024, 1768)  # 1024 x 768: valid low-res part 256 wide, 192 high
    assert not regions_mod.cut_at_edge(cands([(96, 128)], inner), 0)  # in the middle
    assert regions_mod.cut_at_edge(cands([(96, 255)], inner), 0)  # right column
    assert regions_mod.cut_at_edge(cands([(191, 100)], inner), 0)  # last valid row
    assert not regions_mod.cut_at_edge(cands([(200, 100)], inner), 0)  # in the padding: not the mask
    at_corner = (0, 0, 1024, 768)  # the left and top edges are the image's own
    assert not regions_mod.cut_at_edge(cands([(0, 0), (96, 0)], at_corner), 0)
    assert regions_mod.cut_at_edge(cands([(96, 255)], at_corner), 0)
    assert not regions_mod.cut_at_edge(cands([(96, 255)], None), 0)  # the whole image: nothing to cut
