"""The prompt a user builds on one image: points, labels, an optional box, and the mask to refine.

Qt-free and immutable: a :class:`PromptState` is a value that undo commands
keep and that a decode request snapshots, so a request never sees a prompt
change under it.

Coordinates (everywhere in this module): original-image pixels, **x then y**,
with the centre of pixel ``(col, row)`` at ``(col, row)``; this is the
convention of :meth:`sam_core.Predictor.decode`. A pixel covers
``[col - 0.5, col + 0.5)``; the canvas converts scene positions (where pixel
``(col, row)`` covers ``[col, col + 1)``) with :func:`scene_to_image`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

import numpy as np

Point = Tuple[float, float]
Box = Tuple[float, float, float, float]

#: The frame of low-resolution logits: ``(region, input_size)`` of the embedding they were decoded on
#: (``region`` ``(x0, y0, x1, y1)`` full-image pixels, None for the whole image; ``input_size`` ``(h, w)``).
MaskFrame = Tuple[Optional[Tuple[int, int, int, int]], Tuple[int, int]]

#: Boxes thinner than this (image pixels) on either side are not boxes: the canvas treats the drag as a click.
MIN_BOX_SIDE = 2.0


def scene_to_image(sx: float, sy: float) -> Point:
    """Scene position (pixel ``(c, r)`` covers ``[c, c+1)``) -> image coordinates (centre of ``(c, r)`` at ``(c, r)``)."""
    return sx - 0.5, sy - 0.5


def image_to_scene(x: float, y: float) -> Point:
    """Inverse of :func:`scene_to_image`."""
    return x + 0.5, y + 0.5


def inside(x: float, y: float, width: int, height: int) -> bool:
    """Whether image point ``(x, y)`` is finite and lies on the image of size ``width`` x ``height``."""
    if not (math.isfinite(x) and math.isfinite(y)):
        return False
    return -0.5 <= x < width - 0.5 and -0.5 <= y < height - 0.5


def clamp_box(box: Box, width: int, height: int) -> Optional[Box]:
    """Order and clamp a box ``(x0, y0, x1, y1)`` to the image; ``None`` when it is degenerate.

    Corners may come in any order (a drag up and to the left). Non-finite
    values give ``None``, as does a box thinner than :data:`MIN_BOX_SIDE`
    pixels after clamping.
    """
    if not all(math.isfinite(v) for v in box):
        return None
    x0, x1 = sorted((box[0], box[2]))
    y0, y1 = sorted((box[1], box[3]))
    x0, x1 = max(x0, -0.5), min(x1, width - 0.5)
    y0, y1 = max(y0, -0.5), min(y1, height - 0.5)
    if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
        return None
    return (float(x0), float(y0), float(x1), float(y1))


@dataclass(frozen=True, eq=False)
class PromptState:
    """Everything one decode needs besides the embedding.

    Attributes
    ----------
    points:
        ``((x, y), ...)`` image coordinates, in click order.
    labels:
        One per point: 1 foreground, 0 background.
    box:
        ``(x0, y0, x1, y1)`` with ``x0 < x1``, ``y0 < y1``, or ``None``.
    mask_input:
        ``(256, 256)`` float32 low-resolution logits of the candidate the user
        had chosen when making the latest prompt change, or ``None``. SAM
        refines from it.
    mask_frame:
        The :data:`MaskFrame` of ``mask_input`` (see :func:`mask_frame_of`):
        which embedding's frame its cells cover, so that a decode on another
        embedding of the image (a region's, or the whole image's) gets it
        resampled into its own frame (:meth:`decode_args`). ``None``: the
        frame of whatever embedding decodes it.

    Equality is identity (``eq=False``): states are used as keys of the
    session's memo of decoded candidates, and two clicks at the same place
    are two different states.
    """

    points: Tuple[Point, ...] = ()
    labels: Tuple[int, ...] = ()
    box: Optional[Box] = None
    mask_input: Optional[np.ndarray] = field(default=None, repr=False)
    mask_frame: Optional[MaskFrame] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if len(self.points) != len(self.labels):
            raise ValueError(f"{len(self.points)} points but {len(self.labels)} labels")
        if any(label not in (0, 1) for label in self.labels):
            raise ValueError(f"labels must be 0 or 1, got {self.labels}")
        if self.mask_input is not None and tuple(self.mask_input.shape) != (256, 256):
            raise ValueError(f"mask_input must be (256, 256), got {self.mask_input.shape}")

    @property
    def empty(self) -> bool:
        """No point and no box: nothing to decode."""
        return not self.points and self.box is None

    def with_point(
        self, x: float, y: float, label: int, mask_input: Optional[np.ndarray], mask_frame: Optional[MaskFrame] = None
    ) -> "PromptState":
        """A new state with point ``(x, y)`` (label 1 fg / 0 bg) added, refining from ``mask_input``."""
        return PromptState(
            self.points + ((float(x), float(y)),), self.labels + (int(label),), self.box, mask_input, mask_frame
        )

    def with_box(
        self, box: Box, mask_input: Optional[np.ndarray], mask_frame: Optional[MaskFrame] = None
    ) -> "PromptState":
        """A new state whose box is ``box`` (replacing any earlier box); points are kept."""
        box = tuple(float(v) for v in box)  # type: ignore[assignment]
        return PromptState(self.points, self.labels, box, mask_input, mask_frame)  # type: ignore[arg-type]

    def decode_args(self, embedding: Any = None) -> dict:
        """Keyword arguments for :meth:`sam_core.Predictor.decode` of ``embedding``.

        ``points`` ``(N, 2)`` float32 x, y; ``labels`` ``(N,)`` int32;
        ``box`` ``(4,)`` float32; ``mask_input`` ``(256, 256)`` float32; each
        ``None`` when absent. With ``embedding`` (a
        :class:`sam_core.ImageEmbedding`) whose frame is not
        :attr:`mask_frame`, ``mask_input`` is resampled into its frame
        (:meth:`sam_core.Candidates.logits_for`; this imports torch: call it
        on a worker thread).
        """
        points = np.asarray(self.points, dtype=np.float32).reshape(-1, 2) if self.points else None
        labels = np.asarray(self.labels, dtype=np.int32) if self.points else None
        box = np.asarray(self.box, dtype=np.float32) if self.box is not None else None
        mask_input = self.mask_input
        if mask_input is not None and embedding is not None and self.mask_frame is not None:
            mask_input = _carry(mask_input, self.mask_frame, embedding)
        return {"points": points, "labels": labels, "box": box, "mask_input": mask_input}

    def describe(self) -> str:
        """Short text for undo history and the status bar, e.g. ``"2 points + box"``."""
        parts = []
        if self.points:
            n = len(self.points)
            parts.append(f"{n} point{'s' if n != 1 else ''}")
        if self.box is not None:
            parts.append("box")
        return " + ".join(parts) or "no prompt"


EMPTY = PromptState()


def mask_frame_of(decoded: Any) -> MaskFrame:
    """The :data:`MaskFrame` of a :class:`sam_core.Candidates` (or of the :class:`sam_core.ImageEmbedding` decoded)."""
    region = decoded.region
    return (None if region is None else tuple(int(v) for v in region), tuple(int(v) for v in decoded.input_size))


def _carry(mask_input: np.ndarray, frame: MaskFrame, embedding: Any) -> np.ndarray:
    """``mask_input`` (logits over ``frame``) resampled into ``embedding``'s frame (itself when it is the same)."""
    if frame == mask_frame_of(embedding):
        return mask_input
    from sam_core.types import Candidates  # imports torch: only ever called on a worker thread

    region, input_size = frame
    carrier = Candidates(
        scores=np.zeros(1, dtype=np.float32),
        low_res_logits=np.asarray(mask_input, dtype=np.float32)[None],
        original_size=tuple(embedding.full_size),
        input_size=input_size,
        model_type=embedding.model_type,
        region=region,
    )
    return carrier.logits_for(0, embedding)
