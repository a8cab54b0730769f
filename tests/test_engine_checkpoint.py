"""Checkpoint loading, model-type detection, the builder registry and devices.

Wrong-type files are built from the real key/shape lists (meta-device models)
with zero-stride tensors, so a "ViT-B checkpoint" costs a few kilobytes.
"""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from sam_core import build
from sam_core.build import (
    MODEL_TYPES,
    SamModel,
    build_model,
    detect_model_type,
    load_checkpoint,
    load_model,
    resolve_device,
)
from sam_core.types import CheckpointError


def _fake_state_dict(model_type: str) -> dict:
    """A state dict with ``model_type``'s exact keys and shapes, storing one float per tensor."""
    device = "cpu" if model_type == "vit_t" else "meta"
    model = build_model(model_type, device=device)
    return {k: torch.zeros(()).expand(v.shape) for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def fake_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for model_type in ("vit_b", "vit_l"):
        paths[model_type] = folder / f"{model_type}.pth"
        torch.save(_fake_state_dict(model_type), paths[model_type])
    return paths


def test_model_types():
    assert MODEL_TYPES == ("vit_t", "vit_b", "vit_l", "vit_h")
    for model_type in ("vit_b", "vit_l", "vit_h"):
        model = build_model(model_type, device="meta")
        assert isinstance(model, SamModel) and model.model_type == model_type
        assert not model.training


@pytest.mark.parametrize("model_type", ["vit_t", "vit_b", "vit_l", "vit_h"])
def test_detect_model_type_from_keys_and_shapes(model_type):
    assert detect_model_type(_fake_state_dict(model_type)) == model_type


def test_detect_model_type_unknown_and_from_path(tmp_path, fake_files):
    assert detect_model_type({"weight": torch.zeros(3)}) is None
    sd = _fake_state_dict("vit_b")
    sd["image_encoder.patch_embed.proj.weight"] = torch.zeros(()).expand(640, 3, 16, 16)
    assert detect_model_type(sd) is None  # a ViT of no official size
    assert detect_model_type(fake_files["vit_b"]) == "vit_b"
    assert detect_model_type(str(fake_files["vit_l"])) == "vit_l"


def test_wrong_type_names_both_types_and_keys(fake_files):
    model = build_model("vit_l", device="meta")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(model, fake_files["vit_b"])
    msg = str(err.value)
    assert "vit_l model" in msg
    assert "looks like a vit_b checkpoint" in msg
    assert "model_type='vit_b'" in msg
    assert "missing keys: image_encoder.blocks.12." in msg  # ViT-L has 24 blocks, ViT-B 12
    assert "image_encoder.pos_embed (file (1, 64, 64, 768), model (1, 64, 64, 1024))" in msg
    assert err.value.detected_type == "vit_b"
    assert isinstance(err.value, ValueError)


def test_load_model_rejects_wrong_type_before_building(fake_files, monkeypatch):
    """A ViT-B file for ViT-H fails on the key check, before ViT-H's 2.5 GB is allocated."""
    monkeypatch.setattr(build, "_materialize", lambda *a: pytest.fail("materialised a model for a wrong file"))
    with pytest.raises(CheckpointError, match="looks like a vit_b checkpoint"):
        load_model("vit_h", checkpoint=fake_files["vit_b"], device="cpu")


def test_unknown_file_contents_are_described(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(2, 2), "conv.bias": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match=r"matches no known model type \(2 tensors, first keys: conv.weight"):
        load_checkpoint(build_model("vit_b", device="meta"), path)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    """A real, loadable file for a small model (the prompt encoder alone)."""
    path = tmp_path_factory.mktemp("small") / "prompt_encoder.pt"
    model = build.PromptEncoder(256, (64, 64), (1024, 1024), 16)
    torch.save(model.state_dict(), path)
    return path, model


def test_loads_a_valid_file_strictly(small_checkpoint):
    path, source = small_checkpoint
    target = build.PromptEncoder(256, (64, 64), (1024, 1024), 16)
    assert load_checkpoint(target, path) is target
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v)


def test_truncated_file(tmp_path, small_checkpoint):
    path, _ = small_checkpoint
    data = path.read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        load_checkpoint(build_model("vit_b", device="meta"), bad)
    assert "vit_b model" in str(err.value) and str(bad) in str(err.value)


@pytest.mark.parametrize(
    "content", [os.urandom(4096), b"<html><body>404 Not Found</body></html>"], ids=["random", "html"]
)
def test_random_bytes(tmp_path, content):
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint") as err:
        load_checkpoint(build_model("vit_b", device="meta"), bad)
    assert "vit_b model" in str(err.value)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("content", [b"<html><body>404</body></html>", pickle.dumps({"x": {1, 2}})],
                         ids=["html", "pickled-set"])
def test_the_message_never_passes_on_the_advice_to_load_without_weights_only(tmp_path, content):
    """torch's own message advises ``weights_only=False``, which would run whatever code the file holds."""
    bad = tmp_path / "odd.pth"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(build_model("vit_b", device="meta"), bad)
    text = str(err.value)
    assert "weights_only" not in text and "Re-running" not in text and "not a plain weights file" in text


def test_empty_missing_and_folder(tmp_path):
    model = build_model("vit_b", device="meta")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        load_checkpoint(model, empty)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(model, tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="folder"):
        load_checkpoint(model, tmp_path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match="holds a list, not a state dict"):
        load_checkpoint(build_model("vit_b", device="meta"), path)
    path = tmp_path / "mixed.pth"
    torch.save({"a": torch.zeros(2), "b": 3}, path)
    with pytest.raises(CheckpointError, match="entry 'b' is a int"):
        load_checkpoint(build_model("vit_b", device="meta"), path)


class _WritesAFile:
    """Unpickling this would call ``open(target, "w")``, creating the file."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_malicious_pickle_is_blocked(tmp_path, legacy):
    target = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pth"
    payload = {"image_encoder.pos_embed": torch.zeros(1), "x": _WritesAFile(str(target))}
    if legacy:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    else:
        torch.save(payload, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(build_model("vit_b", device="meta"), path)
    assert not target.exists(), "the pickle's code ran"
    msg = str(err.value)
    assert "refused" in msg and "run code" in msg and "vit_b model" in msg
    if not legacy:
        assert "(io.open)" in msg  # names what it would have run


def test_builder_registry_and_unknown_types(monkeypatch):
    with pytest.raises(ValueError, match="unknown model type 'vit_x'.*vit_t, vit_b, vit_l, vit_h"):
        build_model("vit_x")
    with pytest.raises(ValueError, match="unknown model type"):
        load_model("vit_x", checkpoint="unused.pth", device="cpu")

    monkeypatch.setattr(build, "BUILDERS", dict(build.BUILDERS))
    monkeypatch.setattr(build, "_DETECTORS", list(build._DETECTORS))

    def builder():
        return build_model("vit_b", device="meta")

    build.register_model_type("my_type", builder, detector=lambda sd: "my_type" if "magic" in sd else None)
    assert "my_type" in build.available_model_types()
    assert build_model("my_type").model_type == "vit_b"
    assert detect_model_type({"magic": torch.zeros(1)}) == "my_type"


def test_sam2_names_do_not_break_when_the_plugin_is_absent(monkeypatch):
    monkeypatch.setattr(build, "_PLUGINS", {"sam2": "sam_core.no_such_plugin"})
    monkeypatch.setattr(build, "BUILDERS", {k: v for k, v in build.BUILDERS.items() if not k.startswith("sam2")})
    with pytest.raises(ValueError, match="unknown model type 'sam2.1_hiera_t'"):
        build_model("sam2.1_hiera_t")


def test_resolve_device():
    auto = resolve_device("auto")
    if torch.cuda.is_available():
        assert auto.type == "cuda"
    elif torch.backends.mps.is_available():
        assert auto.type == "mps"
    else:
        assert auto == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.weights
def test_real_mobilesam_file(mobilesam_checkpoint, mobilesam_model):
    assert detect_model_type(mobilesam_checkpoint) == "vit_t"
    assert mobilesam_model.model_type == "vit_t" and not mobilesam_model.training
    assert all(not p.requires_grad for p in mobilesam_model.parameters())
    with pytest.raises(CheckpointError, match="looks like a vit_t checkpoint"):
        load_checkpoint(build_model("vit_b", device="meta"), mobilesam_checkpoint)
