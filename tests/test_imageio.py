"""annotator.data.imageio: listing, and one test per class of bad or unusual image file."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from annotator.data import imageio
from annotator.data.imageio import ImageLoadError, image_size, list_images, load_image


def _rgb(h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _smooth_rgb(h=60, w=80):
    """A smooth image so that JPEG round trips stay close."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(1, w - 1), y * 255 // max(1, h - 1), (x + y) % 256], -1).astype(np.uint8)


# ---------------------------------------------------------------------------- listing


def test_list_images_natural_order_case_and_hidden(tmp_path):
    for name in ["img10.png", "img2.JPG", "img1.jpeg", "Img3.TIFF", "a.webp", "b.bmp", "c.tif",
                 ".hidden.png", "notes.txt", "img2.json", ".x.png.tmp"]:  # fmt: skip
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.png").mkdir()  # a folder with an image name is not an image
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.png").write_bytes(b"x")
    names = [p.name for p in list_images(tmp_path)]
    assert names == ["a.webp", "b.bmp", "c.tif", "img1.jpeg", "img2.JPG", "Img3.TIFF", "img10.png"]
    assert all(p.parent == tmp_path for p in list_images(tmp_path))


def test_list_images_follows_symlinks_skips_broken_and_hidden_dirs(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "photo.png").write_bytes(b"x")
    shown = tmp_path / "shown"
    shown.mkdir()
    (shown / "link.png").symlink_to(real / "photo.png")
    (shown / "broken.png").symlink_to(real / "missing.png")
    (shown / "linked_dir").symlink_to(real, target_is_directory=True)
    (shown / "loop").symlink_to(shown, target_is_directory=True)
    (shown / ".hidden_dir").mkdir()
    (shown / ".hidden_dir" / "secret.png").write_bytes(b"x")
    assert [p.name for p in list_images(shown)] == ["link.png"]
    rel = [p.relative_to(shown).as_posix() for p in list_images(shown, recursive=True)]
    assert rel == ["link.png", "linked_dir/photo.png"]


def test_list_images_missing_folder_raises(tmp_path):
    with pytest.raises(OSError):
        list_images(tmp_path / "nope")


def test_natural_key():
    names = ["x10", "x9", "X1", "x1", "y", "x"]
    assert sorted(names, key=imageio.natural_key) == ["x", "X1", "x1", "x9", "x10", "y"]


# ---------------------------------------------------------------------------- normal files


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".webp"])
def test_lossless_formats_round_trip(tmp_path, ext):
    a = _rgb()
    p = tmp_path / f"a{ext}"
    Image.fromarray(a).save(p, **({"lossless": True} if ext == ".webp" else {}))
    out = load_image(p)
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3) and out.flags.c_contiguous
    assert out.flags.writeable
    np.testing.assert_array_equal(out, a)
    assert image_size(p) == (32, 24)


def test_jpeg_loads_close_to_source(tmp_path):
    a = _smooth_rgb()
    p = tmp_path / "a.jpg"
    Image.fromarray(a).save(p, quality=95)
    out = load_image(p)
    assert out.shape == a.shape
    assert np.abs(out.astype(int) - a.astype(int)).mean() < 3


@pytest.mark.parametrize("h,w", [(1, 1), (3, 5)])
def test_tiny_images(tmp_path, h, w):
    a = _rgb(h, w, seed=3)
    p = tmp_path / "tiny.png"
    Image.fromarray(a).save(p)
    np.testing.assert_array_equal(load_image(p), a)
    assert image_size(p) == (w, h)


# ---------------------------------------------------------------------------- bad files


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty file") as info:
        load_image(p)
    assert "empty.jpg" in str(info.value)
    with pytest.raises(ImageLoadError, match="empty file"):
        image_size(p)


@pytest.mark.parametrize("fmt,ext", [("JPEG", ".jpg"), ("PNG", ".png")])
@pytest.mark.parametrize("fraction", [0.2, 0.6, 0.97])
def test_truncated_files_are_reported_not_half_grey(tmp_path, fmt, ext, fraction):
    buf = io.BytesIO()
    Image.fromarray(_rgb(200, 300)).save(buf, fmt)
    data = buf.getvalue()
    p = tmp_path / f"cut{ext}"
    p.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ImageLoadError, match="truncated") as info:
        load_image(p)
    assert f"cut{ext}" in str(info.value)


def test_text_file_with_image_extension(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("this is not a picture\n", encoding="utf-8")
    with pytest.raises(ImageLoadError, match="not an image") as info:
        load_image(p)
    assert "notes.png" in str(info.value)
    with pytest.raises(ImageLoadError, match="not an image"):
        image_size(p)


def test_corrupt_png_data(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_rgb(50, 50)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 60] = b"\xff" * 50  # smash the deflate stream
    p = tmp_path / "smashed.png"
    p.write_bytes(bytes(data))
    with pytest.raises(ImageLoadError) as info:
        load_image(p)
    assert "smashed.png" in str(info.value)


def test_16bit_png_grayscale_is_stretched_by_actual_range(tmp_path):
    a = np.linspace(1000, 4000, 40 * 60).reshape(40, 60).astype(np.uint16)  # 12-bit data
    p = tmp_path / "g16.png"
    Image.fromarray(a).save(p)
    with Image.open(p) as im:
        assert im.mode.startswith("I;16")
    out = load_image(p)
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255  # 1000 -> 0, 4000 -> 255
    expected = np.round((a.astype(float) - 1000) * 255 / 3000).astype(np.uint8)
    assert np.abs(out[..., 0].astype(int) - expected).max() <= 1
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_16bit_tiff_grayscale(tmp_path, monkeypatch):
    monkeypatch.setattr(imageio, "_STRIP_BYTES", 4 * 20 * 4)  # the range must span all strips
    a = (np.arange(30 * 20).reshape(30, 20) * 100).astype(np.uint16)
    p = tmp_path / "g16.tif"
    Image.fromarray(a).save(p)
    out = load_image(p)
    assert out.shape == (30, 20, 3)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    assert np.all(np.diff(out[..., 0].ravel().astype(int)) >= 0)  # monotone ramp stays monotone


def test_16bit_rgb_png_keeps_the_high_byte(tmp_path):
    import cv2

    a = (np.arange(20 * 30 * 3).reshape(20, 30, 3) * 37 % 65536).astype(np.uint16)
    p = tmp_path / "rgb16.png"
    cv2.imwrite(str(p), a[..., ::-1])  # OpenCV writes BGR
    out = load_image(p)
    np.testing.assert_array_equal(out, (a >> 8).astype(np.uint8))


def test_constant_16bit_image_is_black(tmp_path):
    p = tmp_path / "flat.png"
    Image.fromarray(np.full((8, 9), 777, np.uint16)).save(p)
    assert (load_image(p) == 0).all()


def test_grayscale(tmp_path):
    g = _rgb(20, 30)[..., 0]
    p = tmp_path / "g.png"
    Image.fromarray(g, "L").save(p)
    out = load_image(p)
    assert out.shape == (20, 30, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], g)


def test_bilevel(tmp_path):
    p = tmp_path / "bw.png"
    Image.fromarray(np.eye(6, dtype=bool)).convert("1").save(p)
    out = load_image(p)
    assert set(np.unique(out)) == {0, 255}
    assert (out[..., 0] == 255).sum() == 6


def test_rgba_is_composited_on_black(tmp_path):
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[:, :4, 3] = 255  # opaque
    rgba[:, 4:8, 3] = 0  # transparent: the stored colour must not show
    rgba[:, 8:, 3] = 128  # half
    p = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(p)
    out = load_image(p)
    assert out.shape == (10, 12, 3)
    assert (out[:, :4] == (200, 100, 50)).all()
    assert (out[:, 4:8] == 0).all()
    np.testing.assert_array_equal(out[0, 9], np.round(np.array([200, 100, 50]) * 128 / 255))


def test_palette_with_and_without_transparency(tmp_path):
    a = _rgb(16, 16)
    p = tmp_path / "pal.png"
    pal = Image.fromarray(a).quantize(8)
    pal.save(p)
    out = load_image(p)
    np.testing.assert_array_equal(out, np.asarray(pal.convert("RGB")))
    q = tmp_path / "pal_t.png"
    pal.save(q, transparency=0)
    out_t = load_image(q)
    idx = np.asarray(pal)
    assert (out_t[idx == 0] == 0).all()
    np.testing.assert_array_equal(out_t[idx != 0], np.asarray(pal.convert("RGB"))[idx != 0])


def test_cmyk_jpeg(tmp_path):
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (20, 10), (0, 255, 255, 0)).save(p, quality=95)  # pure red in CMYK
    with Image.open(p) as im:
        assert im.mode == "CMYK"
    out = load_image(p)
    assert out.shape == (10, 20, 3)
    r, g, b = out[..., 0].mean(), out[..., 1].mean(), out[..., 2].mean()
    assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("small_strips", [False, True])
def test_exif_orientation_matches_exif_transpose(tmp_path, monkeypatch, orientation, small_strips):
    h, w = 30, 300
    if small_strips:  # many strips and several column blocks, as for a huge image
        monkeypatch.setattr(imageio, "_STRIP_BYTES", 4 * w * 7)
    a = _smooth_rgb(h, w)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = orientation
    p = tmp_path / f"o{orientation}.jpg"
    im.save(p, exif=exif.tobytes(), quality=95)
    with Image.open(p) as ref_im:
        ref = np.asarray(ImageOps.exif_transpose(ref_im).convert("RGB"))
    out = load_image(p)
    np.testing.assert_array_equal(out, ref)
    assert out.flags.c_contiguous
    rotated = orientation in (5, 6, 7, 8)
    assert out.shape[:2] == ((w, h) if rotated else (h, w))
    assert image_size(p) == ((h, w) if rotated else (w, h))


def test_exif_orientation_6_rotates_clockwise(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)  # left half red
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    p = tmp_path / "portrait.png"
    im.save(p, exif=exif.tobytes())
    out = load_image(p)
    assert out.shape == (40, 20, 3)
    assert (out[:20, :, 0] == 255).all() and (out[20:, :, 0] == 0).all()  # left -> top


def test_corrupt_exif_does_not_make_the_image_unusable(tmp_path):
    p = tmp_path / "badexif.jpg"
    Image.fromarray(_smooth_rgb(10, 10)).save(p, exif=b"Exif\x00\x00garbage-not-tiff")
    assert load_image(p).shape == (10, 10, 3)
    assert image_size(p) == (10, 10)


@pytest.mark.parametrize("ext", [".gif", ".webp"])
def test_animated_uses_first_frame(tmp_path, ext):
    frames = [Image.new("RGB", (16, 12), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    p = tmp_path / f"anim{ext}"
    extra = {"lossless": True} if ext == ".webp" else {}
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0, **extra)
    with Image.open(p) as im:
        assert getattr(im, "n_frames", 1) == 3
    out = load_image(p)
    assert out.shape == (12, 16, 3)
    assert (out[..., 0] > 200).all() and (out[..., 1] < 50).all()


def test_unreadable_file_permissions(tmp_path):
    p = tmp_path / "locked.png"
    Image.fromarray(_rgb()).save(p)
    p.chmod(0)
    try:
        if os.access(p, os.R_OK):
            pytest.skip("running with privileges that read any file (root)")
        with pytest.raises(ImageLoadError, match="permission denied"):
            load_image(p)
        with pytest.raises(ImageLoadError, match="permission denied"):
            image_size(p)
    finally:
        p.chmod(0o644)


def test_unreadable_file_simulated(tmp_path, monkeypatch):
    """The same path as a real EACCES, checkable also when tests run as root."""
    p = tmp_path / "locked.png"
    Image.fromarray(_rgb()).save(p)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(imageio.Image, "open", refuse)
    with pytest.raises(ImageLoadError, match="permission denied") as info:
        load_image(p)
    assert "locked.png" in str(info.value)


def test_non_ascii_name_with_spaces(tmp_path):
    a = _rgb()
    p = tmp_path / "façade été 写真 – ü.png"
    Image.fromarray(a).save(p)
    assert p.name in [q.name for q in list_images(tmp_path)]
    np.testing.assert_array_equal(load_image(p), a)
    assert image_size(str(p)) == (32, 24)


def test_symlink_and_broken_symlink(tmp_path):
    a = _rgb()
    real = tmp_path / "real.png"
    Image.fromarray(a).save(real)
    link = tmp_path / "link.png"
    link.symlink_to(real)
    np.testing.assert_array_equal(load_image(link), a)
    real.unlink()
    with pytest.raises(ImageLoadError, match="broken symbolic link"):
        load_image(link)


def test_deleted_file(tmp_path):
    p = tmp_path / "gone.png"
    Image.fromarray(_rgb()).save(p)
    listed = list_images(tmp_path)
    p.unlink()  # deleted while the app runs
    with pytest.raises(ImageLoadError, match="not found") as info:
        load_image(listed[0])
    assert "gone.png" in str(info.value)
    with pytest.raises(ImageLoadError, match="not found"):
        image_size(listed[0])


def test_folder_with_image_name(tmp_path):
    d = tmp_path / "dir.png"
    d.mkdir()
    with pytest.raises(ImageLoadError, match="folder"):
        load_image(d)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def test_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(60000, 60000))  # 3.6 gigapixels, a few bytes on disk
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(p)
    with pytest.raises(ImageLoadError, match="too large"):
        image_size(p)


def test_300_megapixels_is_within_the_limit():
    assert Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS >= imageio.MAX_PIXELS
    assert 20000 * 15000 <= imageio.MAX_PIXELS


def test_image_size_reads_the_header_only(tmp_path):
    p = tmp_path / "big_claim.png"
    p.write_bytes(_png_header_only(20000, 15000))  # the pixel data is not there at all
    assert image_size(p) == (20000, 15000)
    with pytest.raises(ImageLoadError, match="truncated|corrupt"):
        load_image(p)


# The peak is this process's own high-water mark (VmHWM, kB). Not ru_maxrss: Linux carries the forking
# parent's RSS into it across exec, so under a full pytest run (a parent of several GB) it read 5-6x.
_BIG_SCRIPT = r"""
import resource, sys, time
import numpy as np
from annotator.data.imageio import load_image, image_size
def hwm():
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
path = sys.argv[1]
base = hwm()
t = time.perf_counter()
a = load_image(path)
dt = time.perf_counter() - t
peak = hwm()
print(a.shape, a.dtype, int(a[0, 0, 0]), int(a[-1, -1, 1]), image_size(path), base, peak, round(dt, 2))
"""


@pytest.mark.slow
def test_huge_image_20000_by_15000_loads_with_bounded_memory(tmp_path):
    w, h = 20000, 15000
    p = tmp_path / "huge.jpg"
    # generated in a child so this process does not hold the 1.2 GB canvas
    gen = (
        "from PIL import Image, ImageDraw; import sys\n"
        f"im = Image.new('RGB', ({w}, {h}), (10, 20, 30)); d = ImageDraw.Draw(im)\n"
        f"d.rectangle((0, 0, 99, 99), fill=(250, 0, 0)); d.rectangle(({w - 100}, {h - 100}, {w}, {h}), fill=(0, 240, 0))\n"
        "im.save(sys.argv[1], quality=90)\n"
    )
    # a clean environment: variables other tests' libraries leave in os.environ must not change the child
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    subprocess.run([sys.executable, "-c", gen, str(p)], check=True, env=env)
    out = subprocess.run(
        [sys.executable, "-c", _BIG_SCRIPT, str(p)], check=True, env=env, capture_output=True, text=True
    ).stdout.split()
    assert out[:3] == ["(15000,", "20000,", "3)"]
    assert out[3] == "uint8"
    assert int(out[4]) > 200 and int(out[5]) > 200  # corners decoded, not grey
    peak_kb = int(out[-2])
    output_bytes = w * h * 3
    # Pillow's decoded copy (4 B/px) + our output (3 B/px) + interpreter: about 2.4x the output. A float
    # copy of the image (12 B/px, 4x the output) on top of those would push it past the bound.
    assert peak_kb * 1024 < 6.5 * output_bytes, f"peak RSS {peak_kb / 1e6:.2f} GB for a {output_bytes / 1e9:.1f} GB image"
