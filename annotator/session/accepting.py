"""The one accept pipeline: a click's candidate, or segment-everything proposals, become annotations.

The same steps for both::

    accept_candidate(...) / accept_draft(...)   accept_proposals(...)
      hold the ActionGate (user actions wait)     (masks ready: RLE and patch
      finish the mask on the decoder thread        computed by the review's job)
      (the candidate with its hand edits, the
      optional cleanup, render.finish_mask;
      an urgent task)
                       \\                          /
                        _commit(request, ready masks)
                          image record, annotations in the current category,
                          their overlays into the layer (current image only),
                          ONE AcceptCommand pushed: its listeners (the prompt,
                          the review) clear or, on undo, restore what it took
                       release the gate: waiting user actions run, in order

Nothing here knows which part asked: a request carries the prompt to restore
or the review token and proposal indices, as values (:class:`annotator.session.undo.Accepted`).

A candidate's annotation keeps the prompt it came from
(:data:`annotator.data.maskedit.PROMPT_FIELD`), so it can be refined with SAM
later. Refining (``replaces``) puts the new mask in place of the annotation
it refines: same id and category, its other fields kept, one undo step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage, QUndoStack

from annotator import render
from annotator.data import maskedit
from annotator.data.identity import file_sha256
from annotator.data.prompts import PromptState
from annotator.session.drafts import draft_mask
from annotator.session.gate import ActionGate
from annotator.session.style import OverlayStyle
from annotator.session.undo import AcceptCommand, Accepted, AcceptListener, DocumentTarget
from annotator.workers.messages import ModelInfo

log = logging.getLogger(__name__)


class AcceptDocument(DocumentTarget, Protocol):
    """The document side of an accept (implemented by :class:`annotator.session.document_edits.DocumentEdits`)."""

    dataset: Any  # annotator.data.document.Dataset or None
    layer: Any  # annotator.session.annotation_layer.AnnotationLayer
    autosave: bool

    @property
    def dirty(self) -> bool: ...

    def current_category(self) -> Any: ...


class AcceptImage(Protocol):
    """Which image is current and which model made the masks (see :class:`annotator.session.navigation.ImageNavigator`)."""

    @property
    def current_path(self) -> Optional[Path]: ...

    @property
    def model_info(self) -> Optional[ModelInfo]: ...


@dataclass(frozen=True, eq=False)
class ReadyMask:
    """A finished mask to accept: compressed RLE over the whole image, its overlay patch, the annotation's extra
    fields, and (optionally) its overlay already drawn in the category colour."""

    rle: Dict[str, Any]
    patch: render.MaskPatch
    extra: Dict[str, Any] = field(default_factory=dict)
    overlay: Optional[QImage] = None


@dataclass(frozen=True, eq=False)
class AcceptRequest:
    """What is accepted where: on ``image`` (``width`` x ``height``) in category ``category_id``, from ``prompt``
    (a candidate) or from proposals ``proposals`` of review ``review``."""

    image: Path
    width: int
    height: int
    category_id: int
    prompt: Optional[PromptState] = None
    review: Optional[int] = None
    proposals: Tuple[int, ...] = ()
    replaces: Optional[int] = None  # the annotation a refined mask replaces (same id), or None


def annotation_with_mask(old: Any, rle: Mapping[str, Any], extra: Mapping[str, Any]) -> Any:
    """``old`` (an :class:`annotator.data.document.Annotation`) with a new mask: same id, image and category;
    ``area`` and ``bbox`` from the mask; ``extra`` updated over its other fields (unknown ones are kept; the
    "edited by hand" mark only if ``extra`` sets it)."""
    from annotator.data import coco

    h, w = old.size
    seg = coco.to_compressed_rle(dict(rle), h, w)
    fields = {k: v for k, v in old.extra.items() if k != maskedit.EDITED_FIELD}
    fields.update(extra)
    return replace(old, segmentation=seg, area=coco.rle_area(seg), bbox=coco.rle_bbox(seg), extra=fields)


def finish(make_mask: Callable[..., Any], args: tuple, color, opacity: float, cleanup: Optional[int]
           ) -> render.FinishedMask:
    """Decoder task: ``make_mask(*args)``, cleaned up when ``cleanup`` (fill holes, remove islands smaller than
    ``cleanup`` pixels), finished for the document (:func:`annotator.render.finish_mask`)."""
    mask = make_mask(*args)
    if cleanup:
        for edit in (maskedit.Cleanup("fill_holes"), maskedit.Cleanup("remove_islands", int(cleanup))):
            delta = maskedit.apply_edit(mask, edit)
            if not delta.empty:
                mask = delta.apply(mask)
    return render.finish_mask(mask, color, opacity)


@dataclass(frozen=True, eq=False)
class _Pending:
    task_id: int
    request: AcceptRequest
    extra: Dict[str, Any]


class AcceptPipeline(QObject):
    """See the module notes. ``listeners`` (:class:`annotator.session.undo.AcceptListener`) follow every accept."""

    statusMessage = Signal(str, int)

    def __init__(
        self,
        decoder,
        document: AcceptDocument,
        undo_stack: QUndoStack,
        gate: ActionGate,
        style: OverlayStyle,
        image: AcceptImage,
        listeners: Sequence[AcceptListener] = (),
        parent: Optional[QObject] = None,
    ) -> None:
        super().__init__(parent)
        self.decoder = decoder
        self.document = document
        self.undo_stack = undo_stack
        self.gate = gate
        self._style = style
        self._image = image
        self.listeners: List[AcceptListener] = list(listeners)
        #: Clean up every accepted candidate (fill holes, remove islands smaller than this many pixels); None: off.
        self.cleanup: Optional[int] = None
        self._pending: Optional[_Pending] = None
        decoder.taskDone.connect(self._on_task_done)
        decoder.taskFailed.connect(self._on_task_failed)

    @property
    def accepting(self) -> bool:
        """A candidate's accept is being finished (its full-resolution mask is being computed)."""
        return self._pending is not None

    @property
    def model_type(self) -> str:
        info = self._image.model_info
        return info.model_type if info is not None else ""

    def wait(self, timeout_s: float = 30.0) -> bool:
        """Finish an accept in flight now (before saving on close, or opening another folder)."""
        return self.gate.wait(timeout_s)

    # -- the two entry points ------------------------------------------------------------------

    def accept_candidate(self, image: Path, width: int, height: int, prompt: PromptState, candidates: Any,
                         index: int, *, edits: tuple = (), cache: Any = None, replaces: Optional[int] = None) -> bool:
        """Accept ``candidates`` ``index`` (decoded from ``prompt`` on ``image``); ``False`` if it cannot start.

        ``edits``: hand edits to apply over it (``cache``: an
        :class:`annotator.session.drafts.EditedMask` that may already hold
        them); ``replaces``: the id of the annotation it refines. The
        full-resolution mask is computed on the decoder thread (tens of ms for
        a 12 MP photo); until the annotation is in the document and saved,
        user actions wait behind the gate.
        """
        extra: Dict[str, Any] = {"predicted_iou": round(float(candidates.scores[index]), 4), "model": self.model_type,
                                 maskedit.PROMPT_FIELD: maskedit.prompt_fields(prompt, index)}
        if edits:
            extra[maskedit.EDITED_FIELD] = True
        return self._start(AcceptRequest(image, width, height, 0, prompt=prompt, replaces=replaces), extra,
                           (candidates, index, (height, width), tuple(edits), cache))

    def accept_draft(self, image: Path, width: int, height: int, prompt: PromptState, base: Any, edits: tuple,
                     cache: Any = None, replaces: Optional[int] = None) -> bool:
        """Accept a mask made by hand: ``edits`` over ``base`` (a mask, or ``None``: empty), from ``prompt``."""
        return self._start(AcceptRequest(image, width, height, 0, prompt=prompt, replaces=replaces),
                           {maskedit.EDITED_FIELD: True}, (base, 0, (height, width), tuple(edits), cache))

    def _start(self, request: AcceptRequest, extra: Dict[str, Any], draft: tuple) -> bool:
        category = self._category()
        if category is None or self._pending is not None:
            return False
        if request.replaces is not None:
            old = self.document.dataset.annotations.get(request.replaces)
            category = self.document.dataset.categories.get(old.category_id, category) if old else category
        task = self.decoder.run_task(finish, draft_mask, draft, category.color, self._style.opacity, self.cleanup,
                                     urgent=True)
        self._pending = _Pending(task, replace(request, category_id=category.id), extra)
        self.gate.hold()
        return True

    def accept_proposals(self, image: Path, width: int, height: int, review: int,
                         chosen: Sequence[Tuple[int, ReadyMask]]) -> int:
        """Accept proposals ``chosen`` (``(index, mask)`` of review ``review``) in ONE undo step; returns how many."""
        category = self._category() if chosen else None
        if category is None:
            return 0
        request = AcceptRequest(image, width, height, category.id, review=review,
                                proposals=tuple(i for i, _ in chosen))
        return len(self._commit(request, [m for _, m in chosen]))

    # -- the shared steps ------------------------------------------------------------------------

    def _category(self):
        if self.document.dataset is None:
            return None
        category = self.document.current_category()
        if category is None:
            self.statusMessage.emit("Add a category first (Categories panel)", 5000)
        return category

    def _commit(self, request: AcceptRequest, masks: Sequence[ReadyMask]) -> list:
        from annotator.data.document import DatasetError

        doc = self.document
        dataset = doc.dataset
        category = dataset.categories.get(request.category_id) if dataset is not None else None
        if category is None:
            self.statusMessage.emit("Its category was deleted meanwhile; nothing accepted", 3000)
            return []
        if not masks:
            self.statusMessage.emit("This candidate is empty; nothing accepted", 3000)
            return []
        try:  # the picture's digest: image identity (memoised: the loader hashed the file after reading it)
            digest = file_sha256(request.image)
        except OSError as exc:
            log.warning("cannot hash %s (its digest is not recorded): %s", request.image, exc)
            digest = None
        try:
            record = dataset.ensure_image(dataset.relative_name(request.image), request.width, request.height,
                                          file_sha256=digest)
        except DatasetError as exc:
            self.statusMessage.emit(str(exc), 0)
            return []
        old = dataset.annotations.get(request.replaces) if request.replaces is not None else None
        if request.replaces is not None and old is None:
            self.statusMessage.emit(f"Annotation {request.replaces} was deleted meanwhile; added as a new one", 4000)
        old_patch = doc.layer.patch(old.id) if old is not None else None  # (before the new one takes its place)
        if old is not None:
            anns = [annotation_with_mask(old, masks[0].rle, masks[0].extra)]
        else:
            anns = [dataset.make_annotation(record.id, category.id, rle=m.rle, **m.extra) for m in masks]
        if request.image == self._image.current_path:
            for ann, m in zip(anns, masks):
                doc.layer.put(ann.id, m.patch, category.color, m.overlay)
        accepted = Accepted(request.image, tuple(anns), request.prompt, request.review, request.proposals,
                            replaced=(old,) if old is not None else ())
        if old is not None:
            text, what = f"Refine {category.name} #{old.id}", f"{category.name} #{old.id} ({int(anns[0].area)} px)"
        elif request.review is None:
            text, what = f"Accept {category.name}", f"{category.name} #{anns[0].id} ({int(anns[0].area)} px)"
        else:
            n = len(anns)
            text = f"Accept {n} proposal{'s' if n != 1 else ''} as {category.name}"
            what = f"{n} proposal{'s' if n != 1 else ''} as {category.name}"
        patches = ([m.patch for m in masks], [old_patch]) if old is not None else ((), ())
        self.undo_stack.push(AcceptCommand(doc, accepted, self.listeners, text, patches))
        verb = "Refined" if old is not None else "Accepted"
        if not doc.dirty:
            self.statusMessage.emit(f"{verb} {what}, saved", 3000)
        elif not doc.autosave:
            self.statusMessage.emit(f"{verb} {what}", 3000)
        # else: the save failed, and that message stays on show
        return anns

    def _on_task_done(self, task_id: int, done: render.FinishedMask) -> None:
        pending = self._pending
        if pending is None or task_id != pending.task_id:
            return
        try:
            masks = [] if done.empty else [ReadyMask(done.rle, done.patch, pending.extra, done.overlay)]
            self._commit(pending.request, masks)
        finally:
            self._pending = None
            self.gate.release()

    def _on_task_failed(self, task_id: int, message: str) -> None:
        pending = self._pending
        if pending is not None and task_id == pending.task_id:
            self._pending = None
            self.statusMessage.emit(f"Could not accept this mask: {message}", 0)
            self.gate.release()
