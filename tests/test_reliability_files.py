"""Issue 15, classes 3 and 6: only regular files are read or replaced; every bad input gets our message.

FIFOs, device nodes and symlink loops are made in tmp_path (a device node
only where the test may create one: as root); never a real /dev file.
Each read that used to block runs in a thread with a deadline; if it blocks,
the test opens the FIFO's other end to free it and fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from annotator.commands import encode as cmd_encode
from annotator.commands import export as cmd_export
from annotator.commands import models as cmd_models
from annotator.data import atomic
from annotator.data.atomic import atomic_write_bytes, backup_once
from annotator.data.document import Dataset, DatasetError
from annotator.data.files import NotRegularFileError
from annotator.data.imageio import ImageLoadError, estimate_memory, image_size, list_images, load_image
from annotator.data.workfile import SaveError
from sam_core.cache import FEATURES_SHAPE, EmbeddingCache
from sam_core.types import ImageEmbedding

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX special files")


def _device(path: Path) -> Path:
    """A character device like /dev/zero (major 1, minor 5), made in tmp; skips where that is not allowed."""
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot make a device node here ({exc})")
    return path


def _finishes(fn, fifo: Path = None, seconds: float = 20.0):
    """Run ``fn`` in a thread; its result or exception. Fails (after freeing a FIFO reader) if it blocks."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        if fifo is not None:  # free the blocked reader: a writer that closes at once
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
            t.join(5)
        pytest.fail(f"{fn} blocked for {seconds} s")
    return out


# ---------------------------------------------------------------------------------------------
# the working file
# ---------------------------------------------------------------------------------------------


def test_a_fifo_as_working_file_is_refused_without_blocking(tmp_path):
    path = tmp_path / "annotations.json"
    os.mkfifo(path)
    out = _finishes(lambda: Dataset.open(path, lock=True), fifo=path)
    assert isinstance(out.get("error"), DatasetError) and "FIFO" in str(out["error"])
    assert stat.S_ISFIFO(os.lstat(path).st_mode)


def test_a_symlink_to_an_endless_device_is_refused_before_reading(tmp_path):
    zero = _device(tmp_path / "zero")
    (tmp_path / "annotations.json").symlink_to(zero)
    out = _finishes(lambda: Dataset.open(tmp_path / "annotations.json"))
    assert isinstance(out.get("error"), DatasetError) and "character device" in str(out["error"])


def test_a_symlink_loop_is_a_message(tmp_path):
    (tmp_path / "a.json").symlink_to(tmp_path / "b.json")
    (tmp_path / "b.json").symlink_to(tmp_path / "a.json")
    with pytest.raises(DatasetError, match="cannot be read"):
        Dataset.open(tmp_path / "a.json")


def test_backup_of_a_fifo_does_not_block(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_backed_up", set())
    fifo = tmp_path / "annotations.json"
    os.mkfifo(fifo)
    out = _finishes(lambda: backup_once(fifo), fifo=fifo)
    assert isinstance(out.get("error"), NotRegularFileError)


# ---------------------------------------------------------------------------------------------
# writes never replace a special file
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "device", "link to device", "folder"])
def test_an_atomic_write_never_replaces_a_special_file(tmp_path, kind):
    target = tmp_path / "out.json"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "device":
        _device(target)
    elif kind == "link to device":
        target.symlink_to(_device(tmp_path / "zero"))
    else:
        target.mkdir()
    before = os.lstat(target)
    with pytest.raises(NotRegularFileError, match="not a regular file"):
        atomic_write_bytes(target, b"{}")
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_export_onto_a_fifo_or_device_is_refused_with_a_message(tmp_path, capsys, kind):
    ds = Dataset.open(tmp_path / "annotations.json")
    ds.ensure_image("a.png", 4, 4)
    ds.add_category("c")
    ds.save()
    out = tmp_path / "out.json"
    if kind == "fifo":
        os.mkfifo(out)
    else:
        _device(out)
    mode = os.lstat(out).st_mode
    assert cmd_export.main([str(tmp_path / "annotations.json"), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not a regular file" in err and "Traceback" not in err
    assert os.lstat(out).st_mode == mode  # still the FIFO / device


def test_save_copy_onto_a_fifo_is_a_save_error(tmp_path):
    ds = Dataset.open(tmp_path / "annotations.json")
    os.mkfifo(tmp_path / "copy.json")
    with pytest.raises(SaveError, match="FIFO"):
        ds.save_copy(tmp_path / "copy.json")


# ---------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------


def test_special_files_among_images_are_refused_without_blocking(tmp_path):
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "good.png")
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    assert [p.name for p in list_images(tmp_path)] == ["good.png"]
    for name in ("pipe.png", "loop.png"):
        for fn in (load_image, image_size, estimate_memory):
            out = _finishes(lambda: fn(tmp_path / name), fifo=tmp_path / "pipe.png")
            assert isinstance(out.get("error"), ImageLoadError), (name, fn, out)
    assert "FIFO" in str(_finishes(lambda: load_image(tmp_path / "pipe.png"), fifo=tmp_path / "pipe.png")["error"])
    with pytest.raises(ImageLoadError, match="symbolic link loop"):
        load_image(tmp_path / "loop.png")


def test_a_device_named_like_an_image_is_refused(tmp_path):
    _device(tmp_path / "zero.png")
    out = _finishes(lambda: load_image(tmp_path / "zero.png"))
    assert isinstance(out.get("error"), ImageLoadError) and "character device" in str(out["error"])


# ---------------------------------------------------------------------------------------------
# cache entries
# ---------------------------------------------------------------------------------------------


def _cache(tmp_path) -> EmbeddingCache:
    return EmbeddingCache(tmp_path / "emb", model_type="vit_t", checkpoint_id="ckpt", memory_bytes=0)


def _embedding() -> ImageEmbedding:
    return ImageEmbedding(torch.zeros(FEATURES_SHAPE), (30, 40), (768, 1024), "vit_t")


@pytest.mark.parametrize("kind", ["fifo", "link to device"])
def test_a_special_file_in_the_cache_is_dropped_not_read(tmp_path, kind):
    cache = _cache(tmp_path)
    key = "ab" * 16
    path = cache.path_for(key)
    path.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(_device(tmp_path / "zero"))
    out = _finishes(lambda: cache.get(key), fifo=path if kind == "fifo" else None)
    assert out == {"value": None}
    assert cache.stats.dropped == 1 and not os.path.lexists(path)


def _rewrite_header(path: Path, change) -> None:
    data = path.read_bytes()
    body = data[24:]
    (hlen,) = struct.unpack_from("<I", body, 0)
    header = json.loads(body[4 : 4 + hlen])
    change(header)
    h = json.dumps(header).encode()
    new_body = struct.pack("<I", len(h)) + h + body[4 + hlen :]
    path.write_bytes(data[:8] + hashlib.blake2b(new_body, digest_size=16).digest() + new_body)


@pytest.mark.parametrize(
    "change",
    [
        lambda h: h["tensors"].append({"name": "high_res_0", "shape": [2**70, 2**70]}),  # overflows int64
        lambda h: h["tensors"].append({"name": "high_res_0", "shape": [2**32, 2**32]}),  # wraps to 0
        lambda h: h.update(original_size=[2**80, 1]),
        lambda h: h.update(input_size=["1e999", 1]),
        lambda h: h["tensors"][0].update(shape=[1, 256, 64, 64, 1, 1, 1, 1, 1, 1]),
        lambda h: h.update(tensors=[{"name": "features", "shape": [1, 256, 64, 64]}] * 10),
    ],
)
def test_a_crafted_cache_header_is_dropped_before_allocating(tmp_path, change):
    cache = _cache(tmp_path)
    key = "cd" * 16
    cache.put(key, _embedding())
    _rewrite_header(cache.path_for(key), change)
    assert cache.get(key) is None  # a clean miss, not an exception
    assert cache.stats.dropped == 1


def test_a_shape_whose_int64_product_wraps_to_the_payload_size_is_dropped(tmp_path):
    """2**20 * (2**44 + 1) is 2**20 modulo 2**64: numpy's product matched the payload, reshape then raised."""
    cache = _cache(tmp_path)
    key = "ab" * 16
    cache.put(key, _embedding())
    path = cache.path_for(key)
    data = path.read_bytes()
    body = data[24:]
    (hlen,) = struct.unpack_from("<I", body, 0)
    header = json.loads(body[4 : 4 + hlen])
    header["tensors"].append({"name": "high_res_0", "shape": [2**20, 2**44 + 1]})
    h = json.dumps(header).encode()
    new_body = struct.pack("<I", len(h)) + h + body[4 + hlen :] + b"\0" * (2 * 2**20)  # 2**20 more float16 values
    path.write_bytes(data[:8] + hashlib.blake2b(new_body, digest_size=16).digest() + new_body)
    assert cache.get(key) is None and cache.stats.dropped == 1


def test_a_header_nested_beyond_the_parser_is_dropped(tmp_path):
    cache = _cache(tmp_path)
    key = "ef" * 16
    cache.put(key, _embedding())
    path = cache.path_for(key)
    data = path.read_bytes()
    h = ("[" * 200_000 + "]" * 200_000).encode()
    body = struct.pack("<I", len(h)) + h
    path.write_bytes(data[:8] + hashlib.blake2b(body, digest_size=16).digest() + body)
    assert cache.get(key) is None and cache.stats.dropped == 1


# ---------------------------------------------------------------------------------------------
# command-line arguments and preference values
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--batch-size", str(10**30)], "between 1 and"),
        (["--batch-size", "-5"], "between 1 and"),
        (["--batch-size", "0"], "between 1 and"),
        (["--cache-dir", "a\x00b"], "NUL"),
    ],
)
def test_encode_refuses_absurd_arguments_with_our_message(tmp_path, capsys, argv, words):
    assert cmd_encode.main([str(tmp_path)] + argv) == cmd_encode.EXIT_USAGE
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_encode_refuses_a_nul_in_the_folder_name(capsys):
    assert cmd_encode.main(["img\x00dir"]) == cmd_encode.EXIT_USAGE
    assert "NUL" in capsys.readouterr().err


def test_the_cpu_batch_is_bounded_by_memory():
    assert cmd_encode.cpu_batch_bound("vit_t", available=2**40) == cmd_encode.MAX_BATCH
    assert cmd_encode.cpu_batch_bound("vit_h", available=8 * 2**30) == 4  # half of 8 GiB, 1 GiB an image
    assert cmd_encode.cpu_batch_bound("vit_t", available=8 * 2**30) == 10
    assert cmd_encode.cpu_batch_bound("vit_h", available=100 * 2**20) == 1  # never 0
    assert cmd_encode.cpu_batch_bound("unknown", available=8 * 2**30) == 4  # the largest per-image figure


@pytest.mark.parametrize("argv", [["list"], ["verify", "vit_t"], ["download", "vit_t", "-q"]])
def test_models_refuses_a_nul_in_the_cache_folder(capsys, argv):
    assert cmd_models.main(argv + ["--cache-dir", "a\x00b"]) == 2
    assert "NUL" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command, argv",
    [
        ("auto", ["img\x00dir"]),
        ("auto", ["images", "--output", "a\x00.json"]),
        ("export", ["a\x00.json", "-o", "out", "--format", "yolo-seg"]),
        ("import", ["labels\x00", "-o", "out.json", "--format", "coco"]),
        ("import", ["labels", "-o", "out.json", "--format", "coco", "--images", "x\x00"]),
    ],
)
def test_every_command_refuses_a_nul_in_a_path_with_our_message(capsys, command, argv):
    from annotator.commands import auto, importer

    main = {"auto": auto.main, "export": cmd_export.main, "import": importer.main}[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "a path cannot contain a NUL character" in err and "Traceback" not in err


def test_the_window_refuses_a_nul_in_a_path_with_our_message(capsys):
    from annotator.ui.app import parse_args

    with pytest.raises(SystemExit) as exc:
        parse_args(["--checkpoint", "w\x00.pt"])
    assert exc.value.code == 2
    assert "a path cannot contain a NUL character" in capsys.readouterr().err


def test_models_reports_an_unusable_cache_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    code = cmd_models.main(["download", "vit_t", "-q", "--cache-dir", str(tmp_path / "file" / "sub")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and err.startswith("error:")


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary()
    | st.sampled_from(["[" * 5000, "9" * 5000, "a\x00b", "1e400", "nan", "cuda:" + "9" * 50, 10**400, -(10**400)]),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(value=values)
def test_preference_parsers_never_raise(value):
    from annotator.ui import settings as prefs

    for parse in (prefs._parse_model, prefs._parse_device, prefs._parse_folder, prefs._parse_megabytes,
                  prefs._parse_fraction, prefs._parse_bool, prefs.parse_keys):
        parsed = parse(value)  # a value or None, never an exception
        if parse is prefs._parse_folder and parsed is not None:
            assert "\x00" not in parsed
        if parse is prefs._parse_device and parsed is not None:
            assert len(parsed) <= len("cuda:999")


def test_deeply_nested_shortcut_text_is_unusable_not_a_crash():
    from annotator.ui.settings import parse_keys

    for depth in (1500, 3000):  # deeper than json's recursion limit; the second also over the length bound
        assert parse_keys("[" * depth + "]" * depth) in (None, ())


def test_a_broken_symlink_as_working_file_is_a_message_not_a_new_file(tmp_path):
    link = tmp_path / "annotations.json"
    link.symlink_to(tmp_path / "unmounted" / "annotations.json")
    with pytest.raises(DatasetError, match="does not exist"):
        Dataset.open(link)
    assert not (tmp_path / "unmounted").exists()
