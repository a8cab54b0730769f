"""The strip of three candidates under the canvas."""

from __future__ import annotations

import pytest

from annotator.ui.candidate_strip import CandidateStrip
from annotator.session.rows import CandidateRow

pytestmark = pytest.mark.gui


def test_scores_above_one_are_shown_capped_with_the_raw_value_on_hover(qtbot):
    strip = CandidateStrip()
    qtbot.addWidget(strip)
    strip.set_candidates([CandidateRow(1, 1.0093, 52_000), CandidateRow(2, 0.8712, 1_200), CandidateRow(3, 0.5, 10)], 1)
    first, second, third = strip.buttons
    assert "IoU 1.000" in first.text() and "1.009" not in first.text()
    assert "1.0093" in first.toolTip()
    assert "IoU 0.871" in second.text() and "1.2k px" in second.text()
    assert strip.selected() == 1 and not third.isHidden()
    strip.set_candidates([], hint="Click the object")
    assert all(b.isHidden() for b in strip.buttons) and strip.selected() == -1


def _mask(h, w, box):
    import numpy as np

    m = np.zeros((h, w), bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m


def test_thumbnails_share_one_crop_and_show_where_candidates_differ_from_the_first():
    import numpy as np

    from annotator import render

    source = np.full((300, 400, 3), 100, np.uint8)
    masks = [_mask(150, 200, (80, 60, 100, 80)), _mask(150, 200, (80, 60, 120, 80)), _mask(150, 200, (80, 60, 90, 80))]
    color = (230, 25, 75)
    thumbs = render.thumbnails(source, masks, color)
    assert len(thumbs) == 3 and all(max(t.width(), t.height()) == render.THUMB_SIDE for t in thumbs)
    assert len({(t.width(), t.height()) for t in thumbs}) == 1  # the same crop: comparable at a glance

    def px(img, x, y):
        c = img.pixelColor(x, y)
        return c.red(), c.green(), c.blue()

    # the crop is the box around all three (source x 160..240, y 120..160) grown by half: find the columns
    w = thumbs[0].width()
    row = thumbs[0].height() // 2
    first = [x for x in range(w) if px(thumbs[0], x, row)[0] > 150]
    second = [x for x in range(w) if px(thumbs[1], x, row)[0] > 150]
    assert first and second and len(second) > 1.5 * len(first)  # #2 is twice as wide
    added = second[-3]  # inside #2, outside #1: strongly tinted
    assert px(thumbs[1], added, row)[0] > 200 and px(thumbs[1], added, row)[1] < 60
    shared = first[len(first) // 2]
    assert px(thumbs[1], shared, row)[1] > px(thumbs[1], added, row)[1]  # agreement is tinted lighter
    # #3 leaves out the right half of #1: that part is striped white and dark
    left_out = [px(thumbs[2], x, row) for x in first[len(first) // 2 + 2: -2]]
    assert any(p == (255, 255, 255) for p in left_out) and any(max(p) < 50 for p in left_out)


def test_strip_shows_key_iou_and_area_with_large_pictures(qtbot):
    import numpy as np

    from annotator import render

    strip = CandidateStrip()
    qtbot.addWidget(strip)
    thumbs = render.thumbnails(np.zeros((50, 50, 3), np.uint8), [_mask(50, 50, (10, 10, 20, 20))] * 3, (0, 130, 200))
    strip.set_candidates([CandidateRow(i + 1, 0.9 - i / 10, 1000 * (i + 1), thumbs[i]) for i in range(3)], 0)
    for i, b in enumerate(strip.buttons):
        assert b.iconSize().width() >= render.THUMB_SIDE
        assert b.text().splitlines()[0] == f"Key {i + 1}" and f"IoU {0.9 - i / 10:.3f}" in b.text()
    assert strip.height() >= render.THUMB_SIDE


def test_showing_candidates_never_widens_a_narrow_window(qtbot):
    import numpy as np
    from PySide6.QtWidgets import QVBoxLayout, QWidget

    from annotator import render

    host = QWidget()
    qtbot.addWidget(host)
    strip = CandidateStrip(host)
    QVBoxLayout(host).addWidget(strip)
    host.resize(420, 200)
    host.show()
    qtbot.waitExposed(host)
    before = host.size()
    thumbs = render.thumbnails(np.zeros((50, 50, 3), np.uint8), [_mask(50, 50, (10, 10, 20, 20))] * 3, (0, 130, 200))
    strip.set_candidates([CandidateRow(i + 1, 0.9, 1000, thumbs[i]) for i in range(3)], 0)
    assert strip.minimumSizeHint().width() <= 420 and strip.minimumWidth() <= 420
    qtbot.wait(0)  # (not a sleep: lets a pending layout request run)
    assert host.size() == before
