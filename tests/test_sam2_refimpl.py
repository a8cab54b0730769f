"""The official ``sam2==1.1.0`` package as a parity reference, and checks of our configs against it.

The reference is fetched at run time, never installed: ``pip download`` of
the pinned source archive (``--no-build-isolation`` so that pip does not
build it in an isolated environment that would pull a CUDA torch), verified
by SHA-256, and its ``sam2/`` folder (code and YAML configs) extracted once
into ``<cache>/refs/sam2-1.1.0`` (``<cache>``: ``SAM_ANNOTATOR_CACHE`` or the
user cache folder, as for checkpoints). That folder is put on ``sys.path``.

The reference imports torchvision, hydra and iopath for a few helpers only;
minimal stand-ins are registered in ``sys.modules`` here (tests and
benchmarks only; nothing we ship uses them). The reference model is built
straight from its Python classes, with the keyword arguments read from its
own YAML config by a small YAML reader and ``_target_`` instantiation (no
hydra, no omegaconf).

Other test files and ``benchmarks/bench_sam2.py`` import the helpers below.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path
from typing import Any, Dict, Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

SAM2_REQUIREMENT = "sam2==1.1.0"
SAM2_SDIST = "sam2-1.1.0.tar.gz"
SAM2_SDIST_SHA256 = "7e0ea252d43c10d853e3acfce0b5770ac683c30481bd6de311300e9d44f45b74"
CONFIG_DIR = "configs/sam2.1"
YAML_NAMES = {
    "sam2.1_hiera_t": "sam2.1_hiera_t.yaml",
    "sam2.1_hiera_s": "sam2.1_hiera_s.yaml",
    "sam2.1_hiera_b+": "sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_l": "sam2.1_hiera_l.yaml",
}
# what build_sam2(..., apply_postprocessing=True) adds to the YAML
POSTPROCESSING_DECODER_ARGS = {
    "dynamic_multimask_via_stability": True,
    "dynamic_multimask_stability_delta": 0.05,
    "dynamic_multimask_stability_thresh": 0.98,
}


# --------------------------------------------------------------------------- fetching


def reference_root() -> Path:
    """Folder holding the extracted reference ``sam2/`` package (fetched on first use)."""
    from sam_core.checkpoints import cache_dir

    root = cache_dir() / "refs" / "sam2-1.1.0"
    if (root / "sam2" / "sam2_image_predictor.py").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".sam2-ref-", dir=root.parent) as tmp:
        tmp_path = Path(tmp)
        env = dict(os.environ, SAM2_BUILD_CUDA="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--no-build-isolation", "--no-input", SAM2_REQUIREMENT, "-d", str(tmp_path / "dl"),
        ]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        archive = tmp_path / "dl" / SAM2_SDIST
        if proc.returncode != 0 or not archive.is_file():
            raise RuntimeError(
                f"could not fetch the SAM 2 reference ({' '.join(cmd)}), exit code {proc.returncode}. "
                "pip reads the archive's metadata without build isolation, so this environment needs "
                "setuptools (and torch) importable:\n" + (proc.stdout + proc.stderr)[-3000:]
            )
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        if digest != SAM2_SDIST_SHA256:
            raise RuntimeError(f"{SAM2_SDIST} has SHA-256 {digest}, expected {SAM2_SDIST_SHA256}")
        staging = tmp_path / "root"
        with tarfile.open(archive) as tar:
            prefix = "sam2-1.1.0/sam2/"
            members = [m for m in tar.getmembers() if m.name.startswith(prefix) and (m.isfile() or m.isdir())]
            for m in members:
                m.name = m.name[len("sam2-1.1.0/"):]
            tar.extractall(staging, members=members, filter="data")
        try:
            os.replace(staging, root)
        except OSError:  # another process got there first
            if not (root / "sam2" / "sam2_image_predictor.py").is_file():
                raise
    return root


# --------------------------------------------------------------------------- stand-ins


class _ToTensor:
    """torchvision ToTensor on an (H, W, C) uint8 array: (C, H, W) float32 in [0, 1]."""

    def __call__(self, pic: np.ndarray) -> torch.Tensor:
        img = torch.from_numpy(np.ascontiguousarray(pic.transpose((2, 0, 1)))).contiguous()
        return img.to(dtype=torch.get_default_dtype()).div(255)


class _Resize(nn.Module):
    """torchvision Resize((h, w)) on a float (C, H, W) tensor: bilinear, antialiased (the v0.17+ default)."""

    def __init__(self, size) -> None:
        super().__init__()
        self.size = [int(s) for s in size]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if list(img.shape[-2:]) == self.size:
            return img
        out = F.interpolate(img[None], size=self.size, mode="bilinear", align_corners=False, antialias=True)
        return out[0]


class _Normalize(nn.Module):
    """torchvision Normalize on a (C, H, W) tensor."""

    def __init__(self, mean, std) -> None:
        super().__init__()
        self.mean = list(mean)
        self.std = list(std)

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.mean, dtype=tensor.dtype, device=tensor.device)
        std = torch.as_tensor(self.std, dtype=tensor.dtype, device=tensor.device)
        return tensor.sub(mean[:, None, None]).div(std[:, None, None])


def _module(name: str) -> types.ModuleType:
    if name not in sys.modules:
        sys.modules[name] = types.ModuleType(name)
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(_module(parent), child, sys.modules[name])
    return sys.modules[name]


def install_sam2_stand_ins() -> None:
    """Stand-ins for what ``sam2`` imports from torchvision, hydra and iopath (idempotent).

    The SAM 1 stand-ins of ``tests/refimpl.py`` are installed first and only
    extended, so the two sets coexist in one session whatever the order.
    """
    here = str(Path(__file__).parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    from refimpl import install_stand_ins

    install_stand_ins()
    tv_transforms = _module("torchvision.transforms")
    for name, obj in (("ToTensor", _ToTensor), ("Resize", _Resize), ("Normalize", _Normalize)):
        if not hasattr(tv_transforms, name):
            setattr(tv_transforms, name, obj)

    hydra = _module("hydra")
    if not hasattr(hydra, "initialize_config_module"):
        hydra.initialize_config_module = lambda *a, **k: None
        hydra.compose = None  # build_sam is never imported
        _module("hydra.utils").instantiate = None

        class _GlobalHydra:
            @staticmethod
            def instance():
                return types.SimpleNamespace(is_initialized=lambda: True)

        _module("hydra.core.global_hydra").GlobalHydra = _GlobalHydra
    file_io = _module("iopath.common.file_io")
    if not hasattr(file_io, "g_pathmgr"):
        file_io.g_pathmgr = types.SimpleNamespace(open=open)


def sam2_reference() -> types.ModuleType:
    """The reference ``sam2`` package (fetched, stand-ins installed)."""
    root = str(reference_root())
    install_sam2_stand_ins()
    if root not in sys.path:
        sys.path.insert(0, root)
    pkg = importlib.import_module("sam2")
    if not str(Path(pkg.__file__)).startswith(root):
        raise RuntimeError(f"'sam2' resolves to {pkg.__file__}, not the reference in {root}")
    return pkg


# --------------------------------------------------------------------------- YAML and instantiation


def _scalar(text: str) -> Any:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [_scalar(t) for t in inner.split(",")] if inner else []
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "~", ""):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip("'\"")


def parse_yaml(text: str) -> Dict[str, Any]:
    """Read the YAML subset of the SAM 2 configs: nested mappings, flow lists, scalars, comments."""
    root: Dict[str, Any] = {}
    stack = [(-1, root)]
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        key, sep, value = line.strip().partition(":")
        if not sep:
            raise ValueError(f"unsupported YAML line: {raw!r}")
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        if value.strip():
            parent[key] = _scalar(value)
        else:
            parent[key] = {}
            stack.append((indent, parent[key]))
    return root


def official_config(model_type: str) -> Dict[str, Any]:
    """The ``model`` node of the official YAML config of ``model_type``."""
    path = reference_root() / "sam2" / CONFIG_DIR / YAML_NAMES[model_type]
    return parse_yaml(path.read_text())["model"]


def instantiate(node: Any) -> Any:
    """Hydra-style ``_target_`` instantiation (recursive), without hydra."""
    if isinstance(node, list):
        return [instantiate(v) for v in node]
    if not isinstance(node, dict):
        return node
    kwargs = {k: instantiate(v) for k, v in node.items() if k != "_target_"}
    if "_target_" not in node:
        return kwargs
    module, _, name = node["_target_"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**kwargs)


def build_reference_model(model_type: str) -> nn.Module:
    """The reference ``SAM2Base`` of ``model_type`` as ``build_sam2`` makes it (random weights, eval, CPU)."""
    sam2_reference()
    cfg = official_config(model_type)
    cfg["sam_mask_decoder_extra_args"] = dict(POSTPROCESSING_DECODER_ARGS)
    return instantiate(cfg).eval()


@contextlib.contextmanager
def _no_jit_script() -> Iterator[None]:
    """SAM2Transforms scripts its transforms; torch.jit.script is deprecated (warnings are errors)."""
    original = torch.jit.script
    torch.jit.script = lambda module, *a, **k: module
    try:
        yield
    finally:
        torch.jit.script = original


def reference_predictor(model: nn.Module):
    """``SAM2ImagePredictor(model)`` with default settings."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    with _no_jit_script():
        return SAM2ImagePredictor(model)


def randomized_state_dict(model: nn.Module, seed: int = 0) -> Dict[str, torch.Tensor]:
    """``model``'s state dict with every float tensor perturbed by N(0, 0.02) noise.

    Breaks the zero / one initialisations (position embeddings, LayerNorms,
    ``no_mem_embed``) that would hide bugs in the parts they feed.
    """
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            v = v + 0.02 * torch.randn(v.shape, generator=gen, dtype=v.dtype)
        out[k] = v.clone()
    return out


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def sam2_build():
    from sam_core.sam2 import build

    return build


@pytest.mark.parametrize("model_type", list(YAML_NAMES))
def test_config_matches_official_yaml(model_type, sam2_build):
    cfg = official_config(model_type)
    enc = cfg["image_encoder"]
    trunk, neck = enc["trunk"], enc["neck"]
    ours = sam2_build.CONFIGS[model_type]

    # Hiera's own defaults apply to keys the YAML leaves out
    hiera_defaults = {"stages": [2, 3, 16, 3], "global_att_blocks": [12, 16, 20],
                      "window_pos_embed_bkg_spatial_size": [14, 14], "window_spec": [8, 4, 14, 7]}
    assert ours.embed_dim == trunk["embed_dim"]
    assert ours.num_heads == trunk["num_heads"]
    for key, default in hiera_defaults.items():
        assert list(getattr(ours, key)) == list(trunk.get(key, default)), key
    assert list(ours.backbone_channel_list) == neck["backbone_channel_list"]
    assert enc["scalp"] == sam2_build.SCALP
    assert neck["d_model"] == sam2_build.D_MODEL
    assert neck["fpn_top_down_levels"] == list(sam2_build.FPN_TOP_DOWN_LEVELS)
    assert neck["fpn_interp_model"] == sam2_build.FPN_INTERP_MODEL
    assert neck["position_encoding"]["num_pos_feats"] == sam2_build.D_MODEL
    assert cfg["image_size"] == sam2_build.IMAGE_SIZE
    # the image-mode behaviour our model hard-wires
    for flag in ("directly_add_no_mem_embed", "use_high_res_features_in_sam", "iou_prediction_use_sigmoid",
                 "pred_obj_scores", "pred_obj_scores_mlp"):
        assert cfg[flag] is True, flag


def test_yaml_reader_handles_the_config_syntax():
    text = "a:\n  b: [1, 2]  # comment\n  c:\n    d: null\n  e: 1e-6\nf: True\n"
    assert parse_yaml(text) == {"a": {"b": [1, 2], "c": {"d": None}, "e": 1e-6}, "f": True}
