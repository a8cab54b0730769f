"""What the panels show, as plain values (Qt-free).

The session produces these from the document and its own state; the panels
only display them and report what the user did. Colours are ``(r, g, b)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

from annotator.data.image_states import DONE, SKIPPED, TODO, UNUSABLE

Color = Tuple[int, int, int]


class ImageState:
    """States of an image in the list."""

    UNKNOWN = "unknown"  # not looked at in this session
    LOADING = "loading"  # being read or encoded now
    READY = "ready"  # its embedding is in the cache: clicks answer at once
    ERROR = "error"  # cannot be used; see ImageRow.message


@dataclass(frozen=True)
class ImageRow:
    path: Path
    name: str
    annotations: int
    state: str = ImageState.UNKNOWN
    message: str = ""  # why it is unusable, for ERROR
    progress: str = TODO  # the user's state: "todo", "done" or "skipped" (annotator.data.image_states)
    review: str = ""  # why its annotations need review (another picture under the same name), or ""


#: The image list's filter states, in menu order ("" = all).
LIST_STATES: Tuple[str, ...] = (TODO, DONE, SKIPPED, UNUSABLE)
LIST_STATE_NAMES: Dict[str, str] = {"": "All", TODO: "To do", DONE: "Done", SKIPPED: "Skipped", UNUSABLE: "Unusable"}


def list_state(row: ImageRow) -> str:
    """Which filter of the image list shows ``row``: unusable (cannot be loaded) first, else the user's state."""
    return UNUSABLE if row.state == ImageState.ERROR else row.progress


def count_states(rows: Iterable[ImageRow]) -> Dict[str, int]:
    """How many rows are in each of :data:`LIST_STATES`, and ``""``: all of them."""
    counts = dict.fromkeys(("",) + LIST_STATES, 0)
    for row in rows:
        counts[list_state(row)] += 1
        counts[""] += 1
    return counts


@dataclass(frozen=True)
class AnnotationRow:
    id: int
    category_id: int
    category: str
    color: Color
    area: int
    visible: bool = True
    score: Optional[float] = None  # predicted IoU when it was accepted
    review: bool = False  # made on an earlier picture with this name: keep or delete it


@dataclass(frozen=True)
class CategoryRow:
    id: int
    name: str
    color: Color
    count: int  # annotations in the whole document
    quick_key: Optional[str] = None  # e.g. "Ctrl+1"


@dataclass(frozen=True)
class CandidateRow:
    rank: int  # 1, 2, 3
    score: float  # predicted IoU
    area: int  # pixels at the original resolution (estimated from the preview)
    thumb: Any = None  # QImage


def format_iou(score: float, digits: int = 3) -> str:
    """SAM's predicted IoU for display: capped at 1 (the estimate is a regression output that can exceed it)."""
    return f"IoU {min(score, 1.0):.{digits}f}"


def format_area(pixels: int) -> str:
    """``1234`` -> ``"1.2k px"``; ``2_500_000`` -> ``"2.5M px"``."""
    if pixels >= 1_000_000:
        return f"{pixels / 1e6:.1f}M px"
    if pixels >= 1_000:
        return f"{pixels / 1e3:.1f}k px"
    return f"{pixels} px"
