"""The decoder thread: prompt -> three ranked candidates with their overlays; and small background tasks.

:class:`DecoderWorker` lives on its own :class:`QThread` (it shares the model
with the encoder, read-only, through its own predictor). :class:`DecoderService`
on the GUI thread keeps one job in flight: the latest decode request wins
(older waiting ones are dropped, and results of superseded ones are not
delivered), while tasks (finishing an accepted mask, decoding annotation
overlays) are never dropped.

Unlike the long jobs, decodes run on the decoder thread itself, not on a
fresh thread per job: it keeps its OpenMP pool between clicks (see
:func:`annotator.workers.base.in_fresh_thread`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, Signal, Slot

from annotator import render
from annotator.workers.base import (
    Fifo,
    Latest,
    Priority,
    ThreadService,
    Worker,
    user_message,
)
from annotator.workers.loader import make_predictor
from annotator.workers.messages import DecodeJob, DecodeResult, Task


class DecoderWorker(Worker):
    """Runs on the decoder thread: a :class:`DecodeJob` -> :class:`DecodeResult`; a :class:`Task` -> ``fn(*args)``.

    A decode returns what the first paint needs (:func:`first_view`); a
    :class:`Rest` job, sent once that is delivered, draws the rest
    (:func:`complete`). A bad prompt fails with
    :class:`sam_core.PromptError`, whose message is for the user (not logged
    as a bug).
    """

    def __init__(self) -> None:
        super().__init__()
        self._predictor = None

    @Slot(object)
    def set_model(self, model: Any) -> None:
        self._predictor = make_predictor(model)

    def work(self, job: Any) -> Any:
        if isinstance(job, Task):
            return job.fn(*job.args)
        if isinstance(job, Rest):
            return self._complete(job)
        return self._decode(job)

    def expected(self, job: Any, exc: Exception) -> bool:
        if isinstance(job, (Task, Rest)):
            return False
        # Imported here: sam_core.predictor imports torch, which must stay off the GUI thread's import
        # path (this runs on the decoder thread, where the predictor has imported it already).
        from sam_core.predictor import PromptError

        return isinstance(exc, PromptError)

    def describe(self, job: Any) -> str:
        if isinstance(job, Task):
            return f"background task {getattr(job.fn, '__name__', job.fn)}"
        return "drawing the candidates" if isinstance(job, Rest) else "decoding"

    def _complete(self, rest: "Rest") -> DecodeResult:
        return complete(rest.job, rest.first)

    def _decode(self, job: DecodeJob) -> DecodeResult:
        if self._predictor is None:
            raise RuntimeError("no model is loaded yet")
        t = time.perf_counter()
        # the prompt's mask_input is carried into this embedding's frame (a region's or the whole image's)
        cands = self._predictor.decode(job.embedding, multimask=True, **job.prompt.decode_args(job.embedding))
        decode_s = time.perf_counter() - t
        return first_view(job, cands, decode_s)


@dataclass(frozen=True, eq=False)
class Rest:
    """Draw the rest of ``first`` (decoded for ``job`` and delivered): see :func:`complete`."""

    job: DecodeJob
    first: DecodeResult


def first_view(job: DecodeJob, cands: Any, decode_s: float) -> DecodeResult:
    """What the first paint needs: the preview and overlay of candidate ``job.show`` only (~0.6 ms on a 12 MP
    photo seen in a window).

    The other previews and overlays, the areas and the strip's thumbnails (~6 ms together, nine tenths of the
    display work) are :func:`complete`'s, after this result is on its way to the GUI thread.
    """
    k = len(cands.valid_low_res_logits)
    show = min(max(job.show, 0), k - 1)
    shown, overlay = render.candidate_view(cands, show, job.preview_size, job.color, job.opacity)
    if overlay.has_outline:  # the outline's path for a view at the overlay's own scale, built here, not at paint
        overlay.outline_at(1.0)
    return DecodeResult(
        job_id=job.job_id,
        prompt=job.prompt,
        candidates=cands,
        previews=tuple(shown if i == show else None for i in range(k)),
        overlays=tuple(overlay if i == show else None for i in range(k)),
        thumbs=(),
        areas=(),
        decode_s=decode_s,
        total_s=time.perf_counter() - job.t0,
        t0=job.t0,
    )


def complete(job: DecodeJob, first: DecodeResult) -> DecodeResult:
    """``first`` with every preview, overlay and area and the thumbnails (a new value: ``first`` may be in use on
    the GUI thread already)."""
    cands = first.candidates
    h, w = cands.original_size
    views = [(p, o) if o is not None else render.candidate_view(cands, i, job.preview_size, job.color, job.opacity)
             for i, (p, o) in enumerate(zip(first.previews, first.overlays))]
    previews, overlays = tuple(p for p, _ in views), tuple(o for _, o in views)
    # 120-pixel thumbnails need no more than the low-resolution masks (10x fewer pixels to crop and shrink)
    low_res = cands.valid_low_res_logits > cands.mask_threshold
    thumbs = tuple(render.thumbnails(job.thumb_source, list(low_res), job.color))
    scale = (h * w) / float(job.preview_size[0] * job.preview_size[1])
    return replace(first, previews=previews, overlays=overlays, thumbs=thumbs, areas=tuple(render.areas(previews, scale)))


class DecoderService(ThreadService):
    """GUI-thread side of the decoder thread.

    Decodes: one in flight, the latest request waits, older waiting ones are
    dropped (latest wins), and the result of one in flight is not delivered
    once a newer one waits. Each is delivered in two steps: ``decoded`` with
    the overlay to draw first, then ``completed`` with every overlay and the
    thumbnails (see :class:`annotator.workers.messages.DecodeResult`). The
    rest is asked for (a :class:`Rest` job, after a waiting decode, before
    ordinary tasks) only once the first part is delivered: until the GUI
    thread has taken the first part, the decoder thread leaves it the CPU
    (on two busy cores, drawing the rest at once delayed the delivery by
    6-8 ms). A newer decode's delivery drops a rest still waiting.

    Tasks (:meth:`run_task`: finishing an accepted mask, rendering
    annotation overlays) are never dropped and run in order; urgent ones
    before the waiting decode, the others after it (and after a waiting
    rest: a task sent now comes back after every result sent before it).
    """

    decoded = Signal(int, object)  # job id, DecodeResult with the overlay to show first (not complete)
    completed = Signal(int, object)  # job id, the complete DecodeResult (after ``decoded``, same job)
    failed = Signal(int, str)  # job id, message
    taskDone = Signal(int, object)  # task id, fn's return value
    taskFailed = Signal(int, str)  # task id, message

    _setModel = Signal(object)

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._urgent, self._decode, self._rest, self._later = Fifo(), Latest(), Latest(), Fifo()
        self._delivered = 0  # id of the last decode whose first part was delivered
        self._thread = self._add_thread(
            DecoderWorker, "sam-decoder", Priority(self._urgent, self._decode, self._rest, self._later),
            on_returned=self._on_returned, on_errored=self._on_errored,
            wire=lambda worker: self._setModel.connect(worker.set_model),
        )

    def set_model(self, model: Any) -> None:
        self._setModel.emit(model)

    def submit(self, job: DecodeJob) -> None:
        """Decode ``job`` now, or after the job in flight (replacing any decode already waiting)."""
        self._decode.put(job)
        self._thread.pump()

    def run_task(self, fn: Callable[..., Any], *args: Any, urgent: bool = False) -> int:
        """Run ``fn(*args)`` on the decoder thread; ``taskDone(id, result)`` or ``taskFailed(id, message)``."""
        task = Task(self.new_id(), fn, tuple(args), urgent)
        (self._urgent if urgent else self._later).put(task)
        self._thread.pump()
        return task.task_id

    def cancel(self) -> None:
        """Drop the waiting decode and rest (the one in flight finishes; its result is dropped by id)."""
        self._decode.clear()
        self._rest.clear()

    def _on_returned(self, job: Any, value: Any) -> None:
        if isinstance(job, Task):
            self.taskDone.emit(job.task_id, value)
        elif isinstance(job, Rest):
            if job.job.job_id == self._delivered:  # (not superseded meanwhile)
                self.completed.emit(job.job.job_id, value)
        elif not self._decode:  # a newer request supersedes this result: do not even deliver it
            self._delivered = job.job_id
            self._rest.put(Rest(job, value))  # taken once the worker is free, i.e. after this delivery
            self.decoded.emit(job.job_id, value)

    def _on_errored(self, job: Any, exc: BaseException) -> None:
        if isinstance(job, Task):
            self.taskFailed.emit(job.task_id, user_message(exc))
        elif isinstance(job, Rest):
            if job.job.job_id == self._delivered:
                self.failed.emit(job.job.job_id, user_message(exc))
        elif not self._decode:
            self.failed.emit(job.job_id, user_message(exc))
