"""Build models, load checkpoints, pick a device.

Model types
-----------
``MODEL_TYPES`` are the SAM 1 family: ``"vit_t"`` (MobileSAM, TinyViT-5M
encoder), ``"vit_b"``, ``"vit_l"``, ``"vit_h"``. Every type maps to a builder
in a registry; other families plug in with :func:`register_model_type`. Names
starting with ``"sam2"`` (e.g. ``"sam2.1_hiera_t"``) are looked up by
importing :mod:`sam_core.sam2.build` on first use, which is expected to call
:func:`register_model_type` for each of its types (with a detector so that
:func:`detect_model_type` recognises its checkpoints). If that module does not
exist, those names are simply unknown.

The model protocol
------------------
Every builder returns a :class:`SamModel` (an ``nn.Module``). The
:class:`~sam_core.predictor.Predictor` uses only this protocol (full contract in
:mod:`sam_core.modeling.sam`):

* ``model_type``, ``device``, ``mask_threshold``;
* ``preprocess(image)``: ``(H, W, 3)`` uint8 RGB -> ``(1, 3, S, S)`` input, ``(h, w)``;
* ``embed(x)``: input -> ``(features (1, 256, 64, 64), high_res_features tuple)``;
* ``transform_coords(coords, original_size)``: ``(..., 2)`` x, y original
  pixels -> model input frame;
* ``predict_low_res(embedding, coords, labels, boxes, mask_input, multimask)``:
  -> ``(logits (1, K, 256, 256), iou (1, K))`` in the decoder's token order.

Checkpoints
-----------
:func:`load_checkpoint` reads files with ``torch.load(map_location="cpu",
weights_only=True)`` (pickles that would run code are refused) and loads them
strictly, with no key remapping. Any problem raises
:class:`~sam_core.types.CheckpointError` naming the model type expected, what
the file looks like instead, and the differing keys.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import warnings
from functools import partial
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from .allocator import tune_allocator
from .meta_init import MetaBuild, materialize_uninitialised
from .modeling.image_encoder import ImageEncoderViT
from .modeling.mask_decoder import MaskDecoder
from .modeling.prompt_encoder import PromptEncoder
from .modeling.sam import Sam, SamModel
from .modeling.transformer import TwoWayTransformer
from .types import CheckpointError

__all__ = [
    "MODEL_TYPES",
    "SamModel",
    "BUILDERS",
    "register_model_type",
    "available_model_types",
    "build_model",
    "load_checkpoint",
    "detect_model_type",
    "resolve_device",
    "load_model",
]

MODEL_TYPES: Tuple[str, ...] = ("vit_t", "vit_b", "vit_l", "vit_h")

PathLike = Union[str, "os.PathLike[str]"]
StateDict = Mapping[str, torch.Tensor]

# ViT encoders: (embed_dim, depth, num_heads, global attention block indexes)
_VIT_CONFIGS: Dict[str, Tuple[int, int, int, Tuple[int, ...]]] = {
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}

_PROMPT_DIM = 256
_IMAGE_SIZE = 1024
_PATCH = 16


def _heads() -> Tuple[PromptEncoder, MaskDecoder]:
    grid = _IMAGE_SIZE // _PATCH
    prompt_encoder = PromptEncoder(
        embed_dim=_PROMPT_DIM,
        image_embedding_size=(grid, grid),
        input_image_size=(_IMAGE_SIZE, _IMAGE_SIZE),
        mask_in_chans=16,
    )
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=_PROMPT_DIM, mlp_dim=2048, num_heads=8),
        transformer_dim=_PROMPT_DIM,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    return prompt_encoder, mask_decoder


def _build_vit(model_type: str) -> Sam:
    embed_dim, depth, num_heads, global_idx = _VIT_CONFIGS[model_type]
    encoder = ImageEncoderViT(
        img_size=_IMAGE_SIZE,
        patch_size=_PATCH,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=4.0,
        out_chans=_PROMPT_DIM,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=14,
        global_attn_indexes=global_idx,
    )
    return Sam(encoder, *_heads(), model_type=model_type)


def _build_vit_t() -> Sam:
    from .modeling.tiny_vit import TinyViT  # written separately; imported on demand

    # TinyViT's defaults are MobileSAM's TinyViT-5M configuration (tested against the reference)
    encoder = TinyViT(img_size=_IMAGE_SIZE)
    return Sam(encoder, *_heads(), model_type="vit_t")


#: model type -> builder returning a randomly initialised :class:`SamModel`.
BUILDERS: Dict[str, Callable[[], SamModel]] = {
    "vit_t": _build_vit_t,
    "vit_b": partial(_build_vit, "vit_b"),
    "vit_l": partial(_build_vit, "vit_l"),
    "vit_h": partial(_build_vit, "vit_h"),
}

#: extra checkpoint detectors registered by plug-ins: state dict -> model type or None.
_DETECTORS: List[Callable[[StateDict], Optional[str]]] = []

#: name prefix -> module that registers those types when imported.
_PLUGINS: Dict[str, str] = {"sam2": "sam_core.sam2.build"}


def register_model_type(
    name: str,
    builder: Callable[[], SamModel],
    detector: Optional[Callable[[StateDict], Optional[str]]] = None,
) -> None:
    """Register a model type (used by plug-in families such as SAM 2).

    Parameters
    ----------
    name:
        The model type, e.g. ``"sam2.1_hiera_t"``.
    builder:
        No-argument callable returning a randomly initialised :class:`SamModel`
        whose ``model_type`` is ``name``.
    detector:
        Optional callable telling this family's checkpoints apart: state dict
        -> model type or None. Used by :func:`detect_model_type` for messages.
    """
    BUILDERS[name] = builder
    if detector is not None and detector not in _DETECTORS:
        _DETECTORS.append(detector)


def _load_plugin(model_type: str) -> None:
    for prefix, module in _PLUGINS.items():
        if model_type.startswith(prefix):
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name is None or not module.startswith(exc.name):
                    raise  # the plug-in exists but one of its imports is missing


def available_model_types() -> Tuple[str, ...]:
    """All registered model types (SAM 1 plus plug-ins that are installed)."""
    for prefix in _PLUGINS:
        _load_plugin(prefix)
    return tuple(BUILDERS)


def _builder(model_type: str) -> Callable[[], SamModel]:
    if model_type not in BUILDERS:
        _load_plugin(model_type)
    try:
        return BUILDERS[model_type]
    except KeyError:
        raise ValueError(
            f"unknown model type {model_type!r}; expected one of {', '.join(available_model_types())}"
        ) from None


def build_model(model_type: str, device: Union[str, torch.device, None] = None) -> SamModel:
    """A randomly initialised model of ``model_type`` (in eval mode).

    ``device`` is where the parameters are created; ``"meta"`` builds the
    structure without memory (useful to compare state-dict keys and shapes).
    """
    builder = _builder(model_type)
    tune_allocator()  # large blocks reused, not faulted in afresh (see sam_core.allocator)
    if device is None:
        model = builder()
    elif torch.device(device).type == "meta":
        with MetaBuild():
            model = builder()
    else:
        with torch.device(device):
            model = builder()
    if not getattr(model, "model_type", ""):
        model.model_type = model_type
    return model.eval()


def _meta_model(model_type: str) -> Optional[SamModel]:
    """The model built on the meta device (structure only), or None if it cannot be."""
    try:
        return build_model(model_type, device="meta")
    except Exception:  # a builder that creates tensors the meta device cannot hold
        return None


def _prepare(model: nn.Module, sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The entries of ``sd`` that ``model`` loads (SAM 2 sets its video-only entries aside)."""
    prepare = getattr(model, "prepare_state_dict", None)
    return prepare(sd) if prepare is not None else sd


def _materialize(meta: Optional[SamModel], model_type: str, device: torch.device) -> SamModel:
    """A model on ``device`` whose parameters are about to be overwritten by a checkpoint.

    For SAM 1 (MobileSAM included) this skips random initialisation (slow for
    ViT-H) and the host copy (:func:`sam_core.meta_init.materialize_uninitialised`).
    Models with other non-persistent buffers are built normally and moved.
    """
    model = materialize_uninitialised(meta, device) if meta is not None else None
    return model if model is not None else build_model(model_type).to(device)


# -- checkpoint reading ------------------------------------------------------------------------

_ZIP_MAGIC = b"PK\x03\x04"


def _read_checkpoint(path: PathLike, expected: str) -> Dict[str, torch.Tensor]:
    """Read a checkpoint file into a state dict, or raise :class:`CheckpointError`."""
    path = os.fspath(path)
    want = f"a {expected} model" if expected else "the model"
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint for {want} not found: {path}")
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint for {want} is a folder, not a file: {path}")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"checkpoint for {want} is an empty file: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    is_zip = head == _ZIP_MAGIC
    try:
        with warnings.catch_warnings():
            # legacy (non-zip) files may warn about their pickle protocol
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        blocked = re.search(r"GLOBAL (\S+)", msg)
        if blocked:
            raise CheckpointError(
                f"refused to load the checkpoint for {want} ({path}): it is a pickle that would import and "
                f"run code ({blocked.group(1)}) when loaded. Only plain weight files (state dicts) are "
                "loaded; this may be a whole pickled model, or a malicious file."
            ) from exc
        raise CheckpointError(_corrupt_message(path, want, size, is_zip, exc)) from exc
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise CheckpointError(_corrupt_message(path, want, size, is_zip, exc)) from exc
    return _state_dict_from(obj, path, want)


def _detail(exc: BaseException) -> str:
    """The cause in ``exc``'s message, without PyTorch's advice to load with ``weights_only=False``
    (which would run whatever code the file holds: never ours to pass on)."""
    text = str(exc).strip()
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", text, re.S)
    if found:
        text = "not a plain weights file: " + " ".join(found.group(1).split())
    elif "weights_only" in text:
        text = "not a plain weights file"
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _corrupt_message(path: str, want: str, size: int, is_zip: bool, exc: BaseException) -> str:
    detail = _detail(exc)
    if is_zip:
        what = "a PyTorch zip archive that cannot be read: the file is truncated or corrupt (re-download it)"
    else:
        what = (
            "not a PyTorch checkpoint: neither a zip archive nor a torch pickle "
            "(random or corrupt bytes, a truncated file, or e.g. an HTML error page saved by a download)"
        )
    return f"cannot read the checkpoint for {want} ({path}, {size} bytes): it is {what}. Detail: {detail}"


def _state_dict_from(obj: Any, path: str, want: str) -> Dict[str, torch.Tensor]:
    """The state dict inside a loaded object: a flat ``{name: tensor}`` dict,
    possibly wrapped as ``{"model": {...}}`` (the SAM 2 release format)."""
    if isinstance(obj, dict) and set(obj) & {"model", "state_dict"} and len(obj) <= 8:
        for key in ("model", "state_dict"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, dict) or not obj:
        kind = "an empty dict" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise CheckpointError(f"the checkpoint for {want} ({path}) holds {kind}, not a state dict of tensors")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"the checkpoint for {want} ({path}) is not a state dict of tensors "
            f"(e.g. entry {bad[0]!r} is a {type(obj[bad[0]]).__name__})"
        )
    return obj


# -- model type detection ----------------------------------------------------------------------

_BLOCK_RE = re.compile(r"^image_encoder\.blocks\.(\d+)\.")


def _detect_sam1(sd: StateDict) -> Optional[str]:
    if any(k.startswith("image_encoder.layers.") for k in sd) and any(
        k.startswith("image_encoder.patch_embed.seq.") for k in sd
    ):
        return "vit_t"
    proj = sd.get("image_encoder.patch_embed.proj.weight")
    if proj is None or proj.dim() != 4:
        return None
    depth = 1 + max((int(m.group(1)) for k in sd if (m := _BLOCK_RE.match(k))), default=-1)
    for name, (embed_dim, vit_depth, _, _) in _VIT_CONFIGS.items():
        if proj.shape[0] == embed_dim and depth == vit_depth:
            return name
    return None


def detect_model_type(state_dict_or_path: Union[StateDict, PathLike]) -> Optional[str]:
    """Tell which model type a checkpoint belongs to, from its keys and shapes.

    SAM 1: TinyViT keys -> ``"vit_t"``; otherwise the ViT's patch-embedding
    width and number of blocks (768/12 ``vit_b``, 1024/24 ``vit_l``, 1280/32
    ``vit_h``). Plug-ins add their own detectors. Returns None when nothing
    matches. A path is read safely (see :func:`load_checkpoint`); an
    unreadable file raises :class:`CheckpointError`.
    """
    if isinstance(state_dict_or_path, Mapping):
        sd = state_dict_or_path
    else:
        sd = _read_checkpoint(state_dict_or_path, expected="")
    if any(k.startswith("image_encoder.trunk.") for k in sd):  # SAM 2 layout
        available_model_types()
    found = _detect_sam1(sd)
    if found:
        return found
    for detector in _DETECTORS:
        found = detector(sd)
        if found:
            return found
    return None


def _describe(sd: StateDict) -> Tuple[Optional[str], str]:
    found = detect_model_type(sd)
    if found:
        return found, f"this looks like a {found} checkpoint"
    if any(k.startswith("image_encoder.trunk.") for k in sd):
        return None, "this looks like a SAM 2 checkpoint"
    keys = list(sd)[:3]
    return None, f"it matches no known model type ({len(sd)} tensors, first keys: {', '.join(keys)})"


def _examples(names: List[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _check_fit(model: nn.Module, sd: StateDict, path: PathLike, expected: str) -> None:
    """Raise :class:`CheckpointError` unless ``sd`` has exactly ``model``'s keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [
        f"{k} (file {tuple(sd[k].shape)}, model {tuple(own[k].shape)})"
        for k in own
        if k in sd and sd[k].shape != own[k].shape
    ]
    if not (missing or unexpected or mismatched):
        return
    detected, looks = _describe(sd)
    hint = f" Use model_type={detected!r}." if detected and detected != expected else ""
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {_examples(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {_examples(unexpected)}")
    if mismatched:
        parts.append(f"{len(mismatched)} keys with other shapes: {_examples(mismatched, 3)}")
    raise CheckpointError(
        f"checkpoint {os.fspath(path)} does not fit a {expected} model: {looks}.{hint} " + "; ".join(parts) + ".",
        detected_type=detected,
    )


def load_checkpoint(model: SamModel, path: PathLike) -> SamModel:
    """Load a checkpoint file into ``model`` strictly (no key remapping) and return it.

    Raises
    ------
    CheckpointError
        The file is missing, empty, truncated, corrupt, not a state dict, a
        pickle that would run code, or its keys/shapes differ from the model's.
        The message names the model type expected, what the file looks like
        (e.g. "this looks like a vit_b checkpoint") and the differing keys.
    """
    expected = getattr(model, "model_type", "") or type(model).__name__
    sd = _prepare(model, _read_checkpoint(path, expected))
    _check_fit(model, sd, path, expected)
    model.load_state_dict(sd, strict=True)
    return model


# -- devices and the one-call loader -------------------------------------------------------------


def resolve_device(device: Union[str, torch.device] = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, then Apple MPS, then CPU; other values are checked."""
    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} requested but Apple MPS is not available")
    return dev


def load_model(
    model_type: str = "vit_t",
    checkpoint: Optional[PathLike] = None,
    device: Union[str, torch.device] = "auto",
) -> SamModel:
    """Build ``model_type``, load its weights and move it to ``device``.

    Parameters
    ----------
    model_type:
        ``"vit_t"``, ``"vit_b"``, ``"vit_l"``, ``"vit_h"`` (or a plug-in type).
    checkpoint:
        Weights file; None uses the default location managed by
        :func:`sam_core.checkpoints.ensure_checkpoint` (downloading if needed).
    device:
        ``"auto"`` (CUDA, then MPS, then CPU), or any torch device.

    Returns
    -------
    SamModel
        In eval mode with gradients disabled.
    """
    dev = resolve_device(device)
    _builder(model_type)  # unknown types fail before any download
    tune_allocator()  # large blocks reused, not faulted in afresh (see sam_core.allocator)
    if checkpoint is None:
        from .checkpoints import ensure_checkpoint

        checkpoint = ensure_checkpoint(model_type)
    meta = _meta_model(model_type)
    sd = _read_checkpoint(checkpoint, model_type)
    if meta is not None:  # check before allocating the real model
        sd = _prepare(meta, sd)
        _check_fit(meta, sd, checkpoint, model_type)
    model = _materialize(meta, model_type, dev)
    sd = _prepare(model, sd)
    _check_fit(model, sd, checkpoint, model_type)
    model.load_state_dict(sd, strict=True)
    del sd
    model.eval()
    model.requires_grad_(False)
    return model
