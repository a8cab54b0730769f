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
