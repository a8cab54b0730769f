"""The window's region embedding with the real MobileSAM weights, on a large image tiled from real photos.

Zoomed in on the astronaut's embroidered patch (80 px) of a 4096 x 3072
canvas, the window encodes the region in view; the embedding it holds is
exactly :meth:`sam_core.Predictor.encode` of that region (rounded for the
disk tier, as the cache stores it), and a click on the patch is answered by
it with the engine's own masks, in full-image coordinates. How much better
regions segment small objects is measured in benchmarks/bench_region.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPointF
from qt_fixtures import click_image

pytestmark = [pytest.mark.gui, pytest.mark.weights]

H, W = 3072, 4096
ASTRONAUT_AT = (1536, 1024)  # the astronaut tile's top-left corner on the canvas
PATCH = (132, 346, 212, 426)  # the patch's box in the astronaut photo


@pytest.fixture
def big_photo(tmp_path, photos):
    from PIL import Image

    folder = tmp_path / "big"
    folder.mkdir()
    canvas = np.zeros((H, W, 3), np.uint8)
    names = ["coffee", "chelsea", "astronaut"]
    for i, y in enumerate(range(0, H, 512)):
        for j, x in enumerate(range(0, W, 512)):
            photo = photos[names[(i + j) % 3]]
            h, w = min(512, photo.shape[0]), min(512, photo.shape[1])
            canvas[y : y + h, x : x + w] = photo[:h, :w]
    ax, ay = ASTRONAUT_AT
    canvas[ay : ay + 512, ax : ax + 512] = photos["astronaut"]
    path = folder / "big.jpg"
    Image.fromarray(canvas).save(path, quality=92)
    return path


def test_the_windows_region_is_the_engines_region_encode_and_answers_clicks_on_it(
    qtbot, make_window, mobilesam_info, mobilesam_model, big_photo
):
    from sam_core import Predictor
    from sam_core.cache import round_to_storage

    from annotator.data.imageio import load_image

    w = make_window(big_photo.parent, mobilesam_info())
    s = w.session
    qtbot.waitUntil(lambda: s.embedding is not None, timeout=300_000)
    ax, ay = ASTRONAUT_AT
    cx, cy = ax + (PATCH[0] + PATCH[2]) / 2, ay + (PATCH[1] + PATCH[3]) / 2
    c = w.canvas
    with qtbot.waitSignal(s.regions.regionReady, timeout=300_000) as ready:
        c.zoom_by(1.0 / c.view_scale())
        c.centerOn(QPointF(cx + 0.5, cy + 0.5))
    emb = ready.args[0]
    x0, y0, x1, y1 = emb.region
    assert x0 < cx < x1 and y0 < cy < y1 and emb.image_size == (H, W)

    engine = Predictor(mobilesam_model)
    ref = round_to_storage(engine.encode(load_image(big_photo), region=emb.region))
    assert ref.region == emb.region and ref.input_size == emb.input_size
    assert torch.equal(ref.features, emb.features)

    click_image(qtbot, w, cx, cy)
    qtbot.waitUntil(lambda: s.result is not None and s.result.prompt is s.prompt, timeout=120_000)
    got = s.result.candidates
    assert got.region == emb.region and w.answer_label.text().startswith("SAM: region ")
    [(px, py)] = s.prompt.points  # the click, as the canvas placed it (within a pixel of the patch's centre)
    assert abs(px - cx) <= 1 and abs(py - cy) <= 1
    want = engine.decode(ref, points=[[px, py]], labels=[1])
    np.testing.assert_array_equal(got.scores, want.scores)
    mask = got.mask(0)
    np.testing.assert_array_equal(mask, want.mask(0))
    assert mask.shape == (H, W) and mask[round(cy), round(cx)]
    outside = mask.copy()
    outside[y0:y1, x0:x1] = False
    assert not outside.any()
