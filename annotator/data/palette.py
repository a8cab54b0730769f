"""Colours: the category palette and the colours reserved for what is not a category.

Every outline on the canvas must say what it is at a glance: a category's
colour means "an annotation of that category", and nothing else may look
like one. So the colours the canvas reserves (the candidate being edited,
the selected annotation, segment-everything proposals) are chosen far from
every colour the category palette can produce, measured in CIEDE2000 (the
perceptual colour difference of CIE 2000, computed by
``skimage.color.deltaE_ciede2000`` in the tests):

* the palette's colours differ from each other by at least 16;
* each reserved colour differs from every palette colour, and from the
  other reserved colours, by at least 21.

The palette is Sasha Trubetskoy's list of 20 distinct colours without the
eight bright or pastel ones (yellow, cyan, lime, pink, lavender, beige,
mint, apricot) that left no room for reserved colours; the reserved ones
were then picked, bright and saturated enough to show as outlines, as the
farthest points of an RGB grid (a greedy max-min search).

Proposals get one of :data:`PROPOSAL_COLORS` each, so that proposals that
touch or overlap get different colours (:func:`proposal_colors`).

Colours are ``(r, g, b)`` 0-255. Qt-free.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

Color = Tuple[int, int, int]

#: Colours given to new categories, in order (12 colours; the next category after the 12th repeats the first).
CATEGORY_PALETTE: Tuple[Color, ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (240, 50, 230),
    (0, 128, 128), (170, 110, 40), (128, 0, 0), (128, 128, 0), (0, 0, 128), (128, 128, 128),
)  # fmt: skip

#: Outline of the candidate being edited (and of the selected proposals, which will be accepted).
CANDIDATE_EDGE: Color = (255, 255, 255)
#: Outline of the annotation selected in the panel.
SELECTED_EDGE: Color = (255, 255, 0)
#: Outlines of segment-everything proposals not selected: neighbours get different ones.
PROPOSAL_COLORS: Tuple[Color, ...] = ((34, 221, 221), (170, 170, 255), (255, 153, 170), (187, 255, 187))

#: Every colour the canvas uses for something that is not a category.
RESERVED: Tuple[Color, ...] = (CANDIDATE_EDGE, SELECTED_EDGE, *PROPOSAL_COLORS)


#: What each reserved colour means on the canvas (for messages).
RESERVED_NAMES: Tuple[str, ...] = ("the candidate's outline", "the selected annotation's outline",
                                   *("a proposal's outline",) * len(PROPOSAL_COLORS))

#: A colour closer than this to a reserved one (CIE 1976 distance in L*a*b*) would be mistaken for it.
CLOSE_TO_RESERVED = 15.0


def _lab(colors: Sequence[Color]):
    import cv2
    import numpy as np

    rgb = np.asarray(colors, dtype=np.float32).reshape(1, -1, 3) / 255.0
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).reshape(-1, 3)  # float input: true L*a*b* (L 0-100)


def close_reserved(color: Color) -> List[str]:
    """What ``color`` could be mistaken for on the canvas: the names of the reserved colours near it (none: [])."""
    import numpy as np

    lab = _lab([tuple(int(c) for c in color), *RESERVED])
    distances = np.linalg.norm(lab[1:] - lab[0], axis=1)
    return sorted({name for name, d in zip(RESERVED_NAMES, distances) if d < CLOSE_TO_RESERVED})


def category_color(category_id: int) -> Color:
    """The palette colour of a new category with id ``category_id`` (ids start at 1)."""
    return CATEGORY_PALETTE[(int(category_id) - 1) % len(CATEGORY_PALETTE)]


def proposal_colors(boxes: Sequence[Tuple[float, float, float, float]], margin: float = 2.0) -> List[int]:
    """An index into :data:`PROPOSAL_COLORS` for each box ``(x, y, w, h)``, neighbours different.

    Two proposals are neighbours when their boxes, grown by ``margin``
    pixels, overlap. Greedy colouring in the given order: each box takes
    the first colour none of its earlier neighbours has; when all are taken
    (more than ``len(PROPOSAL_COLORS)`` mutual neighbours), the one used
    least among them. O(n^2) box tests: a review has at most a few hundred.
    """
    k = len(PROPOSAL_COLORS)
    out: List[int] = []
    for i, (x, y, w, h) in enumerate(boxes):
        counts = [0] * k
        for j in range(i):
            x2, y2, w2, h2 = boxes[j]
            if x - margin < x2 + w2 and x2 - margin < x + w and y - margin < y2 + h2 and y2 - margin < y + h:
                counts[out[j]] += 1
        out.append(counts.index(0) if 0 in counts else counts.index(min(counts)))
    return out
