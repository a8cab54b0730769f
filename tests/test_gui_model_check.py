"""A model whose test encode is not finite is refused when the window loads it (issue 15).

All-NaN weights load without complaint (every shape and key is right); the
window's model load then encodes a small test image on the worker thread and
refuses the model with a message that blames the file, before any embedding
reaches the cache. The window keeps working and takes good weights after.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from annotator.workers.messages import ModelRequest

pytestmark = [pytest.mark.gui, pytest.mark.weights]


def _nan_checkpoint(good: Path, out: Path) -> Path:
    import torch

    state = torch.load(good, map_location="cpu", weights_only=True)
    state = state.get("model", state) if isinstance(state, dict) else state
    torch.save({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}, out)
    return out


def test_nan_weights_are_refused_with_a_message(qtbot, make_window, image_folder, mobilesam_checkpoint, tmp_path):
    nan = _nan_checkpoint(Path(mobilesam_checkpoint), tmp_path / "nan-weights.pt")
    w = make_window(image_folder)
    w.interactive = False  # the message goes to the status bar (the dialog is ModelDialogs', tested elsewhere)
    root = tmp_path / "cache"
    with qtbot.waitSignal(w.session.modelFailed, timeout=180_000) as failed:
        w.start(model=ModelRequest(model_type="vit_t", checkpoint=nan, device="cpu", cache_root=root))
    failure = failed.args[0]
    assert failure.kind == "checkpoint" and failure.checkpoint == nan
    assert "non-finite" in failure.message and "nan-weights.pt" in failure.message
    assert "damaged" in failure.message  # it says what to do: choose the checkpoint again
    assert w.session.model_info is None and w.model_label.text() == "no model"
    assert "non-finite" in w.statusBar().currentMessage()
    assert not [p for p in (root / "embeddings").rglob("*") if p.is_file()]  # nothing reached the cache

    with qtbot.waitSignal(w.session.modelChanged, timeout=180_000):  # good weights still load
        w.start(model=ModelRequest(model_type="vit_t", checkpoint=Path(mobilesam_checkpoint), device="cpu",
                                   cache_root=root))
    qtbot.waitUntil(lambda: w.session.embedding is not None, timeout=180_000)


def test_the_test_encode_runs_once_per_checkpoint_and_catches_non_finite_output(
        mobilesam_checkpoint, tmp_path, monkeypatch):
    import sam_core
    import sam_core.cache as cache_mod
    from annotator.workers.loader import ModelLoadError, check_model

    calls = []
    real = cache_mod.check_model_output
    monkeypatch.setattr(cache_mod, "check_model_output", lambda p: (calls.append(1), real(p))[1])
    ckpt = Path(mobilesam_checkpoint)
    model = sam_core.load_model("vit_t", checkpoint=ckpt, device="cpu")
    memo = tmp_path / "checked"
    check_model(model, "vit_t", ckpt, memo=memo)
    check_model(model, "vit_t", ckpt, memo=memo)  # remembered: no second encode at the next launch
    assert len(calls) == 1 and len(list(memo.iterdir())) == 1

    # finite weights whose output is not (a neck scaled past float32's range): refused, and not remembered
    with __import__("torch").no_grad():
        for p in model.image_encoder.neck.parameters():
            p.mul_(1e30)
    other = tmp_path / "scaled.pt"
    other.write_bytes(ckpt.read_bytes()[:-1] + b"\0")  # another file: another fingerprint, so tested again
    with pytest.raises(ModelLoadError) as err:
        check_model(model, "vit_t", other, memo=memo)
    assert err.value.failure.kind == "checkpoint" and "non-finite" in err.value.failure.message
    assert len(calls) == 2 and len(list(memo.iterdir())) == 1
