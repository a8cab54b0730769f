"""The region the user is looking at: when to encode it, and which embedding answers a prompt.

SAM sees every image at 1024 pixels on its long side: on an 8000 x 6000
photo one model pixel is 8 image pixels, and objects under ~100 px come out
as blobs or not at all. When the user zooms in, :class:`RegionController`
has the part of the image in view encoded at (up to) native resolution, and
routes the prompts it can answer to that embedding. Measured on real objects
pasted at native size on an 8000 x 6000 canvas (docs/benchmarks/region.md):
the top-ranked mask's IoU goes from 0.03 to 0.57 for objects under 100 px
and from 0.45 to 0.80 for 100-300 px; above ~300 px in a 1024 px region SAM
ranks a part of the object first (0.64 -> 0.54), so prompts that are large
relative to the region stay on the whole image.

When a region is requested (:func:`wanted_region`, :meth:`RegionController.view_changed`):

* the view (the canvas's visible rectangle, image pixels) has been still for
  :data:`REGION_SETTLE_MS` (and no click is being decoded: it waits for it,
  at most :data:`MAX_DEFERRALS` times);
* the view plus a border (:data:`REGION_BORDER`), grown to at least
  :data:`MIN_REGION_SIDE` on its long side (SAM's input: a smaller region
  would only be upsampled), is at most the image's long side divided by
  :data:`MIN_GAIN`: the region embedding must be at least that much finer
  than the whole image's (so images under 2048 px never get regions);
* no region held or waiting already contains the view at about that
  resolution (a small pan or zoom re-encodes nothing).

The request goes to :meth:`annotator.workers.encoder.EncoderService.submit_region`
(after the image's whole-image encode, before any prefetch; a newer request
replaces a waiting one; memory and disk cache under
``EmbeddingCache.key_for_region``). Results carry request ids: only those
asked for the image on show are kept, and leaving the image (or changing
the model) drops everything of it.

Which embedding answers (:meth:`RegionController.embedding_for`): the finest
region held for the image that covers every point and the box
(:meth:`sam_core.ImageEmbedding.covers`), contains the view (a region made
for a closer view would cut objects at an edge the user can see, after a
zoom out or a larger window), and whose prompt extent (the bounding box of
the points and the box) is at most :data:`PROMPT_MAX_FRACTION` of the
region's long side; else the whole image. When the view settles, a prompt
on display answered by a region that no longer qualifies is decoded again.
A region's answer whose chosen mask reaches an edge of the region inside the
image (:func:`cut_at_edge`: the object goes on past what the region saw, and
its mask would end in a straight cut) is never shown: that region no longer
answers the object (until the prompt is cleared) and the prompt is decoded
again on a larger region or the whole image.
When a region arrives that would answer the current prompt better than what
is on display, the prompt is decoded again on it. ``answerChanged`` gives the
status-bar text saying which embedding answered the candidates on display.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

import numpy as np
from PySide6.QtCore import QObject, Signal

from annotator.data.prompts import PromptState
from annotator.workers.base import make_timer
from annotator.workers.messages import EmbeddingResult

if TYPE_CHECKING:  # pragma: no cover
    from annotator.session.navigation import ImageNavigator
    from annotator.session.prompting import Prompting
    from annotator.workers.encoder import EncoderService

log = logging.getLogger(__name__)

Region = Tuple[int, int, int, int]

#: The view must be still this long (ms) before its region is encoded: zooming with the wheel or panning sends
#: many view changes, and only the one the user stops at is worth an encode.
REGION_SETTLE_MS = 300
#: ...and no click is being decoded; a user clicking without pause holds it back at most this many delays.
MAX_DEFERRALS = 5
#: Border added around the view on each side, as a fraction of the view's side (objects cut by the edge of the view
#: still fit), and at least this many image pixels.
REGION_BORDER = 0.1
MIN_BORDER_PX = 16
#: The region's long side is grown to at least this (SAM's input side): a smaller region gains no detail, only
#: upsampling, and the quality benchmark measured 1024 px regions.
MIN_REGION_SIDE = 1024
#: A region is encoded only when it is at least this many times finer than the whole image (its long side at most
#: the image's divided by this).
MIN_GAIN = 2.0
#: A region already held (or waiting) is good enough for the view when it contains it and its long side is at
#: most this many times the wanted one.
REUSE_SLACK = 1.25
#: Prompts whose extent (points and box) exceeds this fraction of the region's long side go to the whole image.
PROMPT_MAX_FRACTION = 0.3
#: Region embeddings of the image on show held for routing (newest kept); others stay in the embedding cache.
MAX_HELD = 4


def wanted_region(visible: Tuple[float, float, float, float], image_size: Tuple[int, int]) -> Optional[Region]:
    """The region to encode for a view, or None when the view is not zoomed in enough.

    Parameters
    ----------
    visible:
        ``(x0, y0, x1, y1)`` of the view in scene units (image pixel edges:
        pixel column ``c`` spans ``[c, c + 1)``), may reach outside the image.
    image_size:
        ``(H, W)`` of the image.

    Returns
    -------
    ``(x0, y0, x1, y1)`` int pixels, half-open, inside the image (the
    convention of :func:`sam_core.clip_region`): the view clipped to the
    image, plus :data:`REGION_BORDER` on each side, grown about its centre
    to :data:`MIN_REGION_SIDE` on its long side and shifted back inside the
    image; None when that is not :data:`MIN_GAIN` times smaller than the
    image's long side, or the view misses the image.
    """
    H, W = int(image_size[0]), int(image_size[1])
    vals = [float(v) for v in visible]
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals) or H <= 0 or W <= 0:
        return None
    x0, x1 = max(0.0, min(vals[0], vals[2])), min(float(W), max(vals[0], vals[2]))
    y0, y1 = max(0.0, min(vals[1], vals[3])), min(float(H), max(vals[1], vals[3]))
    if x1 <= x0 or y1 <= y0:
        return None
    bx = max(MIN_BORDER_PX, REGION_BORDER * (x1 - x0))
    by = max(MIN_BORDER_PX, REGION_BORDER * (y1 - y0))
    x0, x1, y0, y1 = x0 - bx, x1 + bx, y0 - by, y1 + by
    grow = max(1.0, MIN_REGION_SIDE / max(x1 - x0, y1 - y0))
    xs = _span(x0, x1, grow, W)
    ys = _span(y0, y1, grow, H)
    region = (xs[0], ys[0], xs[1], ys[1])
    if max(xs[1] - xs[0], ys[1] - ys[0]) * MIN_GAIN > max(H, W):
        return None
    return region


def _span(a: float, b: float, grow: float, limit: int) -> Tuple[int, int]:
    """``[a, b)`` scaled by ``grow`` about its centre, shifted inside ``[0, limit)`` and clipped, in whole pixels."""
    half = (b - a) * grow / 2.0
    c = (a + b) / 2.0
    a, b = c - half, c + half
    if a < 0:
        a, b = 0.0, b - a
    if b > limit:
        a, b = a - (b - limit), float(limit)
    return max(0, math.floor(a)), min(limit, math.ceil(b))


def region_side(region: Region) -> int:
    """The long side of ``region``, in pixels."""
    return max(region[2] - region[0], region[3] - region[1])


def contains(outer: Region, inner: Tuple[float, float, float, float]) -> bool:
    """Whether rectangle ``inner`` lies within ``outer`` (both ``x0, y0, x1, y1``)."""
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def prompt_extent(prompt: PromptState) -> float:
    """The long side of the bounding box of the prompt's points and box (0 for one point), image pixels."""
    xs = [p[0] for p in prompt.points]
    ys = [p[1] for p in prompt.points]
    if prompt.box is not None:
        xs += [prompt.box[0], prompt.box[2]]
        ys += [prompt.box[1], prompt.box[3]]
    if not xs:
        return 0.0
    return max(max(xs) - min(xs), max(ys) - min(ys))


def cut_at_edge(candidates: Any, index: int) -> bool:
    """Whether candidate ``index`` of a region's decode reaches an edge of the region that lies inside the image.

    Read from its low-res logits (``(256, 256)`` over the region's padded
    model input; the valid part is ``input_size / 4``): mask in the outer
    row or column on a side where the region does not end at the image's
    edge. The object then very likely goes on past the region, which SAM
    could not see: the region's mask would be cut there with a straight
    edge. False for a whole-image decode.
    """
    region = getattr(candidates, "region", None)
    if region is None:
        return False
    h_in, w_in = candidates.input_size
    lh, lw = max(1, int(h_in) // 4), max(1, int(w_in) // 4)
    m = np.asarray(candidates.low_res_logits[index, :lh, :lw]) > candidates.mask_threshold
    x0, y0, x1, y1 = region
    H, W = candidates.original_size
    return bool((x0 > 0 and m[:, 0].any()) or (y0 > 0 and m[0, :].any())
                or (x1 < W and m[:, -1].any()) or (y1 < H and m[-1, :].any()))


def describe(candidates: Any) -> str:
    """Status-bar text for the embedding that answered ``candidates`` (a :class:`sam_core.Candidates` or None)."""
    if candidates is None:
        return ""
    region = getattr(candidates, "region", None)
    if region is None:
        return "whole image"
    x0, y0, x1, y1 = region
    return f"region {x1 - x0}\u00d7{y1 - y0} at ({x0}, {y0})"


class RegionController(QObject):
    """Region embeddings of the image on show: requests them as the view settles, routes prompts to them.

    Parameters
    ----------
    encoder:
        The encoding service (``submit_region``, ``regionReady``, ``regionFailed``).
    images:
        The navigator: which image is on show (``current_path``, ``loaded``)
        and when it changes (``imageShown``, ``modelChanged``).
    prompts:
        Prompting, if any: its decodes are routed through
        :meth:`embedding_for`, its prompt is decoded again when a better
        region arrives, and its candidates drive ``answerChanged``.
    clicks_busy:
        ``() -> bool``: a click is being decoded (the request waits).
    settle_ms:
        Default :data:`REGION_SETTLE_MS` (read at construction).

    Signals
    -------
    requested(region):
        A region was asked of the encoder (``(x0, y0, x1, y1)``).
    regionReady(embedding):
        A region embedding of the image on show arrived and is held.
    answerChanged(text):
        Which embedding answered the candidates on display: ``"whole image"``,
        ``"region W×H at (x, y)"``, or ``""`` (no candidates).
    statusMessage(text, ms):
        For the status bar (a region failed to encode).
    """

    requested = Signal(object)
    regionReady = Signal(object)
    answerChanged = Signal(str)
    statusMessage = Signal(str, int)

    def __init__(
        self,
        encoder: "EncoderService",
        images: "ImageNavigator",
        prompts: Optional["Prompting"] = None,
        *,
        clicks_busy: Optional[Callable[[], bool]] = None,
        settle_ms: Optional[int] = None,
        parent: Optional[QObject] = None,
    ) -> None:
        super().__init__(parent)
        self.encoder = encoder
        self.images = images
        self.prompts = prompts
        self._clicks_busy = clicks_busy or (lambda: False)
        self.enabled = True
        self.held: List[Any] = []  # region ImageEmbeddings of the image on show, oldest first
        self.pending: Optional[Region] = None  # the latest region asked for and not yet answered
        self._pending_id = 0
        self._ids: Dict[int, Region] = {}  # requests made for the image on show
        self._visible: Optional[Tuple[float, float, float, float]] = None
        self._deferrals = 0
        self._stopped = False
        self._timer = make_timer(self, REGION_SETTLE_MS if settle_ms is None else settle_ms, single_shot=True)
        self._timer.timeout.connect(self._settled)
        self.last_answer = ""
        self._cut: set = set()  # regions that cut the object being prompted (until the prompt is cleared)

        encoder.regionReady.connect(self._on_ready)
        encoder.regionFailed.connect(self._on_failed)
        images.imageShown.connect(self._on_image_shown)
        images.modelChanged.connect(self._on_model_changed)
        if prompts is not None:
            prompts.embedding_for = self.embedding_for
            prompts.result_usable = self.usable
            prompts.candidatesChanged.connect(self._on_candidates)
            prompts.promptChanged.connect(self._on_prompt)

    # -- inputs ------------------------------------------------------------------------------

    def view_changed(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """The view now shows ``(x0, y0)-(x1, y1)`` of the image (scene units: image pixel edges)."""
        self._visible = (float(x0), float(y0), float(x1), float(y1))
        self._deferrals = 0
        if self.enabled and not self._stopped:
            self._timer.start()  # restarts: only a view that stays still is encoded

    def set_enabled(self, on: bool) -> None:
        """Turn region encoding on or off (off: no requests, and prompts go to the whole image)."""
        on = bool(on)
        if on == self.enabled:
            return
        self.enabled = on
        if on:
            if self._visible is not None and not self._stopped:
                self._timer.start()
        else:
            self._drop_all()
            p = self.prompts
            if p is not None and p.result is not None and p.result.candidates.region is not None:
                p.redecode()  # what is on display came from a region: the whole image answers now

    def stop(self) -> None:
        """Shutting down: no more requests."""
        self._stopped = True
        self._timer.stop()

    @property
    def settling(self) -> bool:
        """A view change is waiting to settle."""
        return self._timer.isActive()

    # -- the embedding for a prompt ------------------------------------------------------------

    def embedding_for(self, prompt: PromptState, whole: Any) -> Any:
        """The embedding to decode ``prompt`` on: the finest held region that fits it, else ``whole``.

        A region fits when it covers every point and the box, contains the
        view (clipped to the image; when known), has not cut this object's
        mask (:meth:`usable`), and the prompt's extent is at most
        :data:`PROMPT_MAX_FRACTION` of its long side (see the module notes).
        ``whole`` may be None (still encoding).
        """
        if not self.enabled or prompt.empty or not self.held:
            return whole
        args = prompt.decode_args()
        extent = prompt_extent(prompt)
        view = self._view_in_image()
        best = None
        for emb in reversed(self.held):  # newest first: among equals, the latest view
            side = region_side(emb.region)
            if extent > PROMPT_MAX_FRACTION * side or not emb.covers(args["points"], args["box"]):
                continue
            if view is not None and not contains(emb.region, view):
                continue  # made for a closer view: its edge runs through what the user sees, and would cut objects
            if emb.region in self._cut:
                continue  # it cut this object's mask at its edge (see usable)
            if best is None or side < region_side(best.region):
                best = emb
        return best if best is not None else whole

    def usable(self, result: Any, selected: int) -> bool:
        """Whether a decode ``result`` may be shown: False (and its region is not used again for this object)
        when it came from a region and its ``selected`` mask reaches an inner edge of that region
        (:func:`cut_at_edge`); the prompt is then decoded again on a larger region or the whole image."""
        cands = result.candidates
        if cands.region is None or not cut_at_edge(cands, selected):
            return True
        self._cut.add(tuple(cands.region))
        log.debug("region %s cuts the mask of %s: decoded again", cands.region, result.prompt)
        return False

    # -- internals ---------------------------------------------------------------------------

    def _on_prompt(self, prompt: Any) -> None:
        if prompt.empty:
            self._cut.clear()  # a new object: every region may answer it

    def _view_in_image(self) -> Optional[Tuple[float, float, float, float]]:
        """The view clipped to the image on show (scene units), or None when unknown or it misses the image."""
        loaded = self.images.loaded
        if self._visible is None or loaded is None:
            return None
        a, b, c, d = self._visible
        x0, x1 = max(0.0, min(a, c)), min(float(loaded.width), max(a, c))
        y0, y1 = max(0.0, min(b, d)), min(float(loaded.height), max(b, d))
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None

    def _settled(self) -> None:
        if not self.enabled or self._stopped or self._visible is None:
            return
        loaded = self.images.loaded
        if loaded is None or self.images.current_path != loaded.path or self.images.model_info is None:
            return
        self._reroute()  # the view changed: what answers the prompt on display may have too
        region = wanted_region(self._visible, (loaded.height, loaded.width))
        if region is None or self._good_enough(region):
            return
        if self._clicks_busy() and self._deferrals < MAX_DEFERRALS:
            self._deferrals += 1
            self._timer.start()  # a click is being answered: it goes first
            return
        job_id = self.encoder.new_id()
        self._pending_id, self.pending = job_id, region
        self._ids[job_id] = region
        self.requested.emit(region)
        if not self.encoder.submit_region(job_id, loaded, region):  # no model after all
            self._ids.pop(job_id, None)
            self._pending_id, self.pending = 0, None

    def _good_enough(self, region: Region) -> bool:
        """A held or waiting region contains the view at about the wanted resolution."""
        limit = REUSE_SLACK * region_side(region)
        have = [emb.region for emb in self.held] + ([self.pending] if self.pending is not None else [])
        visible = self._visible
        return any(contains(r, visible) and region_side(r) <= limit for r in have)

    def _on_ready(self, job_id: int, result: EmbeddingResult) -> None:
        region = self._ids.pop(job_id, None)
        if job_id == self._pending_id:
            self._pending_id, self.pending = 0, None
        if region is None or result.path != self.images.current_path or not self.enabled:
            return  # asked for an image the user has left (or before the preference went off)
        emb = result.embedding
        loaded = self.images.loaded
        if emb.region is None or loaded is None or tuple(emb.image_size) != (loaded.height, loaded.width):
            return
        self.held = [e for e in self.held if e.region != emb.region][-(MAX_HELD - 1):] + [emb]
        log.debug("region %s of %s ready (%s, %.2f s)", emb.region, result.path.name, result.source, result.seconds)
        self.regionReady.emit(emb)
        self._redecode_if_better(emb)

    def _on_failed(self, job_id: int, message: str) -> None:
        region = self._ids.pop(job_id, None)
        if job_id == self._pending_id:
            self._pending_id, self.pending = 0, None
        if region is not None:
            self.statusMessage.emit(f"Could not encode the region in view ({message}); using the whole image", 5000)

    def _redecode_if_better(self, emb: Any) -> None:
        """Decode the current prompt again if ``emb`` now answers it and something else answered it before."""
        p = self.prompts
        if p is None or p.prompt.empty:
            return
        if self.embedding_for(p.prompt, self.images.embedding) is not emb:
            return
        shown = p.result.candidates if p.result is not None and p.result.prompt is p.prompt else None
        if shown is None or shown.region != emb.region:
            p.redecode()

    def _reroute(self) -> None:
        """Decode the prompt on display again when it came from a region that no longer answers it (the view grew
        past that region's edge: zoomed out, or the window made larger)."""
        p = self.prompts
        if p is None or p.prompt.empty or p.result is None or p.result.prompt is not p.prompt:
            return
        shown = p.result.candidates.region
        if shown is None:
            return
        now = self.embedding_for(p.prompt, self.images.embedding)
        if getattr(now, "region", None) != shown:
            p.redecode()

    def _on_candidates(self, *_: object) -> None:
        r = self.prompts.result if self.prompts is not None else None
        if r is not None and r.prompt is self.prompts.prompt and not self.usable(r, self.prompts.selected):
            self.prompts.redecode()  # another candidate picked, and the region cuts it: decoded elsewhere
        text = describe(r.candidates if r is not None else None)
        if text != self.last_answer:
            self.last_answer = text
            self.answerChanged.emit(text)

    def _on_image_shown(self, levels: object) -> None:
        self._drop_all()  # another image (or none): nothing of the previous one is kept
        if levels is not None and self.enabled and self._visible is not None and not self._stopped:
            self._timer.start()  # the view of the new image (the canvas reports it as it shows it)

    def _on_model_changed(self, _info: object) -> None:
        self._drop_all()  # embeddings of another model
        if self.enabled and self._visible is not None and not self._stopped:
            self._timer.start()

    def _drop_all(self) -> None:
        self._cut.clear()
        self._timer.stop()
        self._ids.clear()
        self._pending_id, self.pending = 0, None
        self.held = []
        self.encoder.cancel_region()
