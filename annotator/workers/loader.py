"""Loading, off the GUI thread: the model (weights downloaded first if need be) and images for display.

* :func:`load_model` turns a :class:`ModelRequest` into a :class:`ModelInfo`
  (the model and its :class:`sam_core.EmbeddingCache`), or raises
  :class:`ModelLoadError` carrying a :class:`ModelFailure` for the user. The
  encoder thread calls it (:class:`annotator.workers.encoder.EncoderWorker`).
  A model whose test encode is not finite (damaged or NaN weights) is
  refused there (:func:`check_model`), before anything reaches the cache.
* :class:`LoaderWorker` runs on the loader thread: it reads an image (EXIF
  applied), prepares it for display (:func:`prepare_image`) and records its
  content digest; it also tells which images the disk cache holds already.

Nothing here imports torch at module level: ``sam_core`` is imported inside
the functions, which run on worker threads only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Optional, Tuple

import numpy as np
from PySide6.QtCore import Signal, Slot

from annotator import render
from annotator.data.digests import file_stamp
from annotator.workers.base import Worker
from annotator.workers.messages import (
    LoadedImage,
    LoadJob,
    ModelFailure,
    ModelInfo,
    ModelRequest,
)

log = logging.getLogger(__name__)


class ModelLoadError(Exception):
    """The model could not be loaded; :attr:`failure` says why, for the user."""

    def __init__(self, failure: ModelFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def make_predictor(model: Any):
    """A :class:`sam_core.Predictor` for ``model``; an object that already has ``encode`` and ``decode`` is used as is.

    Each worker makes its own predictor: the model's weights are shared
    (read-only), any per-predictor scratch state is not.
    """
    if hasattr(model, "encode") and hasattr(model, "decode"):
        return model
    import sam_core

    return sam_core.Predictor(model)


# ---------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------


def load_model(
    request: ModelRequest, *, progress: Callable[[int, Optional[int]], Optional[bool]], cancel: Any
) -> ModelInfo:
    """Load the model ``request`` asks for, with its embedding cache; run it on a worker thread.

    ``progress(done, total)`` follows a download (``total`` ``None`` when
    unknown); ``cancel`` (a :class:`threading.Event`) stops it. On a CUDA
    device without a model type or checkpoint, ``vit_h`` is tried first and
    MobileSAM (``vit_t``) is the fallback (:attr:`ModelInfo.notice` says why).

    Raises :class:`ModelLoadError` for what the user can act on (a wrong or
    damaged file, no download source, a cancelled download); anything else
    is a bug and propagates.
    """
    import sam_core

    device = str(sam_core.resolve_device(request.device))
    if request.model_type is not None:
        choices = [request.model_type]
    elif request.checkpoint is not None:
        try:
            detected = sam_core.detect_model_type(request.checkpoint)
        except sam_core.CheckpointError as exc:
            raise ModelLoadError(ModelFailure("checkpoint", str(exc), "", request.checkpoint)) from None
        if detected is None:
            raise ModelLoadError(
                ModelFailure(
                    "checkpoint",
                    f"{request.checkpoint}: these weights match no known SAM model type. "
                    "Choose the model type with --model, or pick another file.",
                    "",
                    request.checkpoint,
                )
            )
        choices = [detected]
    elif device.startswith("cuda"):
        choices = ["vit_h", "vit_t"]
    else:
        choices = ["vit_t"]
    notice = ""
    for i, model_type in enumerate(choices):
        last = i == len(choices) - 1
        checkpoint = request.checkpoint
        try:
            if checkpoint is None:
                checkpoint = sam_core.ensure_checkpoint(
                    model_type, cache=request.cache_root, progress=progress, cancel=cancel
                )
            model = sam_core.load_model(model_type, checkpoint=checkpoint, device=device)
        except sam_core.CheckpointError as exc:
            raise ModelLoadError(ModelFailure("checkpoint", str(exc), model_type, checkpoint, exc.detected_type))
        except sam_core.CheckpointDownloadError as exc:
            if last:
                raise ModelLoadError(ModelFailure("download", str(exc), model_type, getattr(exc, "path", None)))
            notice = f"{model_type} weights are not available ({_first_line(exc)}); using MobileSAM (vit_t)."
            continue
        except Exception:
            if cancel.is_set():
                cancel.clear()
                if last:
                    raise ModelLoadError(ModelFailure("cancelled", "The download was cancelled.", model_type))
                notice = f"The {model_type} download was cancelled; using MobileSAM (vit_t)."
                continue
            raise
        cache = make_cache(request, model_type, checkpoint)
        check_model(model, model_type, Path(checkpoint), memo=_memo_dir(request))
        return ModelInfo(model, model_type, device, Path(checkpoint), cache, notice)
    raise AssertionError("unreachable")  # pragma: no cover


def check_model(model: Any, model_type: str, checkpoint: Path, memo: Optional[Path] = None) -> None:
    """Refuse ``model`` if its weights or its output for a test image are not finite (see
    :func:`sam_core.cache.check_model`: the test encode runs once per checkpoint, model type and device with ``memo``).

    Raises
    ------
    ModelLoadError
        ``"checkpoint"`` failure whose message blames the weights file.
    """
    from sam_core import cache

    try:
        cache.check_model(make_predictor(model), checkpoint, memo)
    except cache.NonFiniteEmbeddingError as exc:
        raise ModelLoadError(ModelFailure("checkpoint", f"{checkpoint}: {exc}", model_type, checkpoint)) from None


def _memo_dir(request: ModelRequest) -> Path:
    """Where :func:`check_model` records the checkpoints whose test encode passed."""
    import sam_core

    from sam_core.cache import CHECKED_MODELS_DIR

    return sam_core.cache_dir(request.cache_root) / "embeddings" / CHECKED_MODELS_DIR


def make_cache(request: ModelRequest, model_type: str, checkpoint: Path):
    """The :class:`sam_core.EmbeddingCache` for ``model_type`` with the weights at ``checkpoint``."""
    import sam_core
    from sam_core.cache import checkpoint_fingerprint

    kwargs = {} if request.memory_bytes is None else {"memory_bytes": request.memory_bytes}
    directory = sam_core.cache_dir(request.cache_root) / "embeddings"
    return sam_core.EmbeddingCache(
        directory,
        model_type=model_type,
        checkpoint_id=checkpoint_fingerprint(checkpoint),
        disk=request.disk_cache,
        disk_bytes=request.disk_bytes,
        **kwargs,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------


def prepare_image(path: Path, image: np.ndarray) -> LoadedImage:
    """Display pixels, thumbnail source and content digest of ``image`` ``(H, W, 3)`` uint8 RGB."""
    from sam_core.cache import image_digest

    h, w = image.shape[:2]
    levels = render.pyramid(image)
    return LoadedImage(
        path=path,
        width=w,
        height=h,
        qimage=render.rgb_image(image),
        small=render.downscale(levels[-1]),
        digest=image_digest(image),
        stamp=file_stamp(path),
        smaller=tuple(render.rgb_image(level) for level in levels[1:]),
    )


def check_budget(path: Path, max_bytes: int) -> None:
    """Refuse, from its header alone, an image that takes more than ``max_bytes`` to open (a prefetch included).

    Raises
    ------
    annotator.data.imageio.ImageLoadError
        Over the budget (the message says how much it needs and where the
        budget is set), or not an image at all.
    """
    from annotator.data.imageio import ImageLoadError
    from annotator.data.memory import check_image

    check = check_image(path, max_bytes)
    if not check.fits:
        e = check.estimate
        raise ImageLoadError(
            path,
            f"not opened: {e.width} x {e.height} pixels take about {e.open_bytes / 1e9:.1f} GB of memory to open, "
            f"over the image memory budget of {max_bytes / 1e9:.1f} GB (Edit → Preferences → General)",
        )


class LoaderWorker(Worker):
    """Runs on the loader thread: reads images and prepares them for display (no model involved).

    A :class:`LoadJob` returns ``(LoadedImage, pixels)`` (pixels ``(H, W, 3)``
    uint8 RGB, for the encoder); its content digest is recorded, and its file
    hashed for :func:`annotator.data.identity.file_sha256`'s memo, after the
    image was sent on (an accept then never hashes on the GUI thread). An unreadable file fails with
    :class:`annotator.data.imageio.ImageLoadError`, whose message is for the
    user (not logged as a bug).
    """

    cachedFound = Signal(int, object)  # scan id, list of paths whose embedding is in the disk cache

    def work(self, job: LoadJob) -> Tuple[LoadedImage, np.ndarray]:
        from annotator.data.imageio import load_image

        if job.max_bytes is not None:
            check_budget(job.path, job.max_bytes)
        image = load_image(job.path)
        return prepare_image(job.path, image), image

    def finish(self, job: LoadJob, value: Tuple[LoadedImage, np.ndarray]) -> None:
        from annotator.data.identity import file_sha256

        if job.digests is not None:
            loaded = value[0]
            job.digests.record(job.path, loaded.stamp, loaded.digest)
        try:  # the file's digest, memoised for the accept path (image identity), while the file is in the page cache
            file_sha256(job.path)
        except (OSError, ValueError):
            pass  # the accept path says what is wrong with the file

    def expected(self, job: LoadJob, exc: Exception) -> bool:
        from annotator.data.imageio import (
            ImageLoadError,  # loaded already: work() imported it
        )

        return isinstance(exc, ImageLoadError)

    def describe(self, job: LoadJob) -> str:
        return f"loading {job.path}"

    @Slot(int, object, object, object)
    def scan(self, scan_id: int, paths: list, digests: Any, cache: Any) -> None:
        """Which of ``paths`` have a recorded digest (:mod:`annotator.data.digests`) whose embedding ``cache`` holds."""
        try:
            found = [p for p, d in digests.lookup(paths).items() if cache.contains(cache.key_for_digest(d))]
        except Exception:  # a hint only: never let it stop the loader
            log.exception("looking for cached images failed")
            found = []
        self.cachedFound.emit(scan_id, found)
