"""GUI benchmark of region embeddings (issue 20): the real window (offscreen), real MobileSAM, an 8000 x 6000 image, CPU.

What a user zoomed in on a large image feels, measured from outside the
window the way bench_gui.py does (its helpers are imported: mouse events sent
to the canvas, the overlay painted), on one 8000 x 6000 JPEG tiled with
scikit-image photos at native size:

* **zoom settling -> region ready**: the canvas goes to 100 % on a spot (a
  zoom and a pan, as the wheel and a drag do); from that last view change to
  the region embedding being held (the 300 ms the view must stay still, the
  queue and the encode), and from the request to ready (the encode alone);
* **zoomed-in click to overlay** at spots in view: with the region embedding
  ready (answered by the region), and with region encoding off (the whole
  image answers the same clicks; the two settings alternate spot by spot);
  the reference is the official ``SamPredictor.predict`` (one point, three
  masks) after ``set_image`` of a region's pixels, timed in the same run,
  before and after the window;
* **fluidity**: the longest gap between ticks of a 5 ms timer while the user
  pans (every 30 ms) and zooms, with nothing encoding and during a region
  encode; the process's resident memory along the run, and while regions are
  encoded one after another with the view still (they are cropped from the
  display image: memory must not grow by an image per region).

Results go to ``docs/benchmarks/gui_region.md``. Run from the repository root::

    python benchmarks/bench_gui_region.py                 # 4 regions, 6 clicks each
    python benchmarks/bench_gui_region.py --regions 6 --clicks 10
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))  # refimpl: the reference with torchvision/timm stand-ins
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench_engine import _loadavg, machine_info, write_report  # noqa: E402
from bench_gui import TICK_MS, Overlay, Ticks, click, close, make_window, model_info, press, settle, spin  # noqa: E402

CANVAS = (6000, 8000)  # (H, W)
#: (w, h) of the reference's region: what the window asks for at 100 % in a 1400 x 900 window (view plus border).
REF_REGION = (1039, 856)
TIMEOUT_S = 600.0
#: Spots to zoom in on (fractions of width, height), away from each other so that every one needs its own region.
SPOTS = [(0.22, 0.30), (0.70, 0.25), (0.45, 0.70), (0.85, 0.80), (0.15, 0.80), (0.55, 0.40)]
#: Click offsets from a spot (image pixels), inside the view at 100 %.
OFFSETS = [(0, 0), (40, 25), (-60, 30), (25, -45), (-30, -20), (70, 60), (-80, -60), (10, 80)]


def tiled_canvas(folder: Path) -> Path:
    """An 8000 x 6000 JPEG (quality 92) tiled with scikit-image photos at their native size."""
    from skimage import data

    H, W = CANVAS
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry()]
    canvas = np.zeros((H, W, 3), np.uint8)
    k = 0
    y = 0
    while y < H:
        x, row_h = 0, 0
        while x < W:
            p = photos[k % len(photos)]
            if (k // len(photos)) % 2:
                p = p[:, ::-1]
            k += 1
            h, w = min(p.shape[0], H - y), min(p.shape[1], W - x)
            canvas[y : y + h, x : x + w] = p[:h, :w]
            x += w
            row_h = max(row_h, h)
        y += row_h
    path = folder / "canvas_8000x6000.jpg"
    Image.fromarray(canvas).save(path, quality=92)
    return path


def rss_mb() -> float:
    """Resident memory of this process now (MB; Linux), or NaN."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def zoom_to(window, x: float, y: float, scale: float = 1.0) -> None:
    """Show image point ``(x, y)`` in the middle of the canvas at ``scale`` (a zoom, then a pan)."""
    from PySide6.QtCore import QPointF

    c = window.canvas
    c.zoom_by(scale / c.view_scale())
    c.centerOn(QPointF(x + 0.5, y + 0.5))


class Views:
    """When the canvas last reported a view change, and when regions were asked for and arrived."""

    def __init__(self, window) -> None:
        s = window.session
        self.moved: Optional[float] = None
        self.asked: List[Tuple[float, tuple]] = []
        self.ready: List[Tuple[float, object]] = []
        window.canvas.visibleRegionChanged.connect(lambda *_: setattr(self, "moved", time.perf_counter()))
        s.regions.requested.connect(lambda r: self.asked.append((time.perf_counter(), r)))
        s.regions.regionReady.connect(lambda e: self.ready.append((time.perf_counter(), e)))


def _clicks(window, overlay: Overlay, spot: Tuple[float, float], n: int) -> Tuple[List[float], List[Optional[tuple]]]:
    """``n`` clicks around ``spot`` (first of a prompt and refining, alternately); ms each and who answered."""
    from PySide6.QtCore import Qt

    s = window.session
    ms, by = [], []
    for i in range(n):
        if i % 2 == 0:
            press(window, Qt.Key.Key_Escape)
            settle(40)
        dx, dy = OFFSETS[i % len(OFFSETS)]
        ms.append(click(window, overlay, spot[0] + dx, spot[1] + dy) * 1000.0)
        by.append(s.result.candidates.region)
        settle(40)
    return ms, by


def reference_predict(checkpoint: Path, image: np.ndarray, region: tuple, n: int) -> List[float]:
    """Milliseconds per ``SamPredictor.predict`` (one point, three masks) after ``set_image`` of the region's pixels."""
    import refimpl

    ms = refimpl.mobile_sam()
    ref = ms.sam_model_registry["vit_t"](checkpoint=str(checkpoint)).eval()
    pred = ms.SamPredictor(ref)
    x0, y0, x1, y1 = region
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    pred.set_image(crop)
    h, w = crop.shape[:2]
    out = []
    for i in range(n + 1):
        dx, dy = OFFSETS[i % len(OFFSETS)]
        t0 = time.perf_counter()
        pred.predict(point_coords=np.array([[w / 2 + dx, h / 2 + dy]]), point_labels=np.array([1]))
        if i:  # the first is a warm-up
            out.append((time.perf_counter() - t0) * 1000.0)
    return out


def run(model, checkpoint: Path, folder: Path, cache_root: Path, args) -> Dict[str, object]:
    res: Dict[str, object] = {}
    H, W = CANVAS
    ticks = Ticks()
    window = make_window(model_info(model, checkpoint, cache_root), folder)
    s = window.session
    overlay = Overlay(window)
    views = Views(window)
    res["rss"] = [("window with the model", rss_mb())]

    # 1. open: load the 48 MP JPEG and encode the whole image (cold cache)
    ticks.begin("open + encode the whole image (cold cache)")
    t0 = time.perf_counter()
    assert window.open_folder(folder)
    spin(lambda: s.embedding is not None, TIMEOUT_S)
    res["cold"] = (time.perf_counter() - t0) * 1000.0
    ticks.end()
    spin(lambda: s.encoder_idle, TIMEOUT_S)
    res["rss"].append(("image open, whole image encoded", rss_mb()))

    # 2. zoom in on each spot: settling -> region ready; then the same clicks answered by the region and, with region
    # encoding off, by the whole image (the two alternate, spot by spot, so that a change of the machine's load
    # during the run falls on both)
    spots = [(fx * W, fy * H) for fx, fy in SPOTS[: args.regions]]
    settle_ms, encode_ms, regions = [], [], []
    clicks: Dict[str, List[float]] = {"region": [], "whole": []}
    answered: Dict[str, List[bool]] = {"region": [], "whole": []}
    for k, spot in enumerate(spots):
        n_ready = len(views.ready)
        zoom_to(window, *spot)
        moved = views.moved
        spin(lambda: len(views.ready) > n_ready, TIMEOUT_S)
        t_ready, emb = views.ready[-1]
        t_asked = views.asked[-1][0]
        settle_ms.append((t_ready - moved) * 1000.0)
        encode_ms.append((t_ready - t_asked) * 1000.0)
        regions.append(emb.region)
        res["rss"].append((f"region {k + 1} ready", rss_mb()))
        spin(lambda: s.encoder_idle, TIMEOUT_S)
        for setting in (("region", "whole") if k % 2 == 0 else ("whole", "region")):
            if setting == "whole":
                s.regions.set_enabled(False)
            else:  # back on: the view's region comes from the cache's memory tier once the view has settled
                s.regions.set_enabled(True)
                spin(lambda: bool(s.regions.held) and not s.regions.settling and s.encoder_idle, TIMEOUT_S)
            settle(300)
            ms, by = _clicks(window, overlay, spot, args.clicks)
            clicks[setting] += ms
            answered[setting] += [(b == emb.region) if setting == "region" else (b is None) for b in by]
        s.regions.set_enabled(True)
    res["settle"], res["encode"], res["regions"] = settle_ms, encode_ms, regions
    res["region_clicks"], res["answered"] = clicks["region"], answered["region"]
    res["whole_clicks"], res["whole_answered"] = clicks["whole"], answered["whole"]

    # 3. fluidity: pan and zoom (timer ticking), first with nothing encoding (the view never settles), then while a
    # region encodes
    def pan_step(i: int) -> None:
        if i % 10:
            window.canvas.scroll_by(6 if (i // 50) % 2 == 0 else -6, 4 if (i // 50) % 2 == 0 else -4)
        else:
            window.canvas.zoom_by(1.02 if i % 20 else 1 / 1.02)
        settle(30)

    spin(lambda: s.encoder_idle, TIMEOUT_S)
    zoom_to(window, 0.6 * W, 0.15 * H)
    ticks.begin("pan (every 30 ms) and zoom, nothing encoding")
    for i in range(args.pan_steps):
        pan_step(i)
    ticks.end()
    spin(lambda: s.encoder_idle and not s.regions.settling, TIMEOUT_S)
    n_ready = len(views.ready)
    zoom_to(window, 0.35 * W, 0.55 * H)
    spin(lambda: len(views.asked) and views.asked[-1][0] > (views.moved or 0) and not s.encoder_idle, TIMEOUT_S)
    ticks.begin("pan (every 30 ms) and zoom while a region encodes")
    steps, t_end = 0, time.perf_counter() + TIMEOUT_S
    while len(views.ready) == n_ready and time.perf_counter() < t_end:  # until that region is ready
        pan_step(steps)
        steps += 1
    ticks.end()
    res["pan_steps"] = steps
    spin(lambda: s.encoder_idle and not s.regions.settling, TIMEOUT_S)
    res["rss"].append(("after the pans", rss_mb()))

    # 3b. memory per region: regions asked of the encoder directly, the view and everything else still
    done: List[object] = []
    s.encoder.regionReady.connect(lambda job_id, result: done.append(result))
    res["rss_regions"] = [rss_mb()]
    for k in range(args.memory_regions):
        x0, y0 = 600 + 1000 * k % (W - 1700), 500 + 700 * k % (H - 1300)
        s.encoder.submit_region(s.encoder.new_id(), s.loaded, (x0, y0, x0 + 1024, y0 + 768))
        spin(lambda: len(done) > k and s.encoder_idle, TIMEOUT_S)
        res["rss_regions"].append(rss_mb())

    res["stalls"] = [(name, ticks.gaps(a, b)) for name, a, b in ticks.phases]
    close(window)
    return res


def _med(xs: List[float]) -> float:
    return float(np.median(xs)) if len(xs) else float("nan")


def render(res: Dict[str, object], ref: List[float], machine: Dict[str, str], args) -> str:
    ref_ms = _med(ref)
    H, W = CANVAS
    out = [f"# GUI benchmark: region embeddings, the window, real MobileSAM, one {W}x{H} image, CPU", ""]
    out += [f"Produced by `python benchmarks/bench_gui_region.py --regions {args.regions} --clicks {args.clicks}`; "
            "see its docstring for what is measured. Medians; the reference ran in the same process and run.", ""]
    out += ["| machine | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in machine.items()] + [""]
    out += ["## Zoom settling -> region ready", ""]
    out += ["| | n | median ms | each ms |", "|---|---|---|---|"]
    out.append(f"| open -> whole-image embedding ready (load the 48 MP JPEG, encode; cold cache) | 1 | {res['cold']:.0f} | |")
    for label, xs in [("last view change -> region ready (300 ms settle + queue + encode)", res["settle"]),
                      ("request -> region ready (the region's encode)", res["encode"])]:
        out.append(f"| {label} | {len(xs)} | {_med(xs):.0f} | {', '.join(f'{x:.0f}' for x in xs)} |")
    sizes = ", ".join(f"{r[2] - r[0]}x{r[3] - r[1]}" for r in res["regions"])
    out += ["", f"Regions encoded (view at 100 % plus the border): {sizes}.", ""]
    out += ["## Zoomed-in click to overlay (mouse event -> best candidate's overlay painted)", ""]
    out += ["| setting | n | median ms | p90 ms | ratio to reference predict | answered by |", "|---|---|---|---|---|---|"]
    out.append(f"| reference `SamPredictor.predict` after `set_image` of a {REF_REGION[0]}x{REF_REGION[1]} crop "
               f"(one point, 3 masks; before and after the window) | {len(ref)} | "
               f"{ref_ms:.0f} | {np.percentile(ref, 90):.0f} | 1.00 | |")
    for label, xs, who, what in [
        ("ours, region embedding ready", res["region_clicks"], res["answered"], "the region"),
        ("ours, region encoding off", res["whole_clicks"], res["whole_answered"], "the whole image"),
    ]:
        out.append(f"| {label} | {len(xs)} | {_med(xs):.0f} | {np.percentile(xs, 90):.0f} | {_med(xs) / ref_ms:.2f}x | "
                   f"{what}: {sum(who)} of {len(who)} |")
    out += ["", f"## Fluidity (longest gap between ticks of a {TICK_MS} ms timer)", "",
            "| phase | ticks | longest gap ms | p99 gap ms | target |", "|---|---|---|---|---|"]
    for name, gaps in res["stalls"]:
        if len(gaps):
            out.append(f"| {name} | {len(gaps)} | {gaps.max():.0f} | {np.percentile(gaps, 99):.0f} | < 50 |")
    rr = res["rss_regions"]
    out += ["", f"Pan/zoom steps: {args.pan_steps} with nothing encoding, {res['pan_steps']} during the region encode.",
            "", "Resident memory of the process (MB): " + "; ".join(f"{k} {v:.0f}" for k, v in res["rss"]) + ".", "",
            f"Memory per region, the view still: {len(rr) - 1} more regions encoded one after another, resident "
            f"memory {' -> '.join(f'{v:.0f}' for v in rr)} MB ({(rr[-1] - rr[0]) / max(1, len(rr) - 1):+.1f} MB "
            f"per region; the image's RGB32 pixels alone are {W * H * 4 / 2**20:.0f} MB).", ""]
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=4, help=f"spots to zoom in on (at most {len(SPOTS)})")
    parser.add_argument("--clicks", type=int, default=6, help="clicks per spot, in each setting")
    parser.add_argument("--ref-clicks", type=int, default=20, help="reference predict calls (half before the window)")
    parser.add_argument("--pan-steps", type=int, default=60, help="pan/zoom steps with nothing encoding")
    parser.add_argument("--memory-regions", type=int, default=4, help="regions encoded with the view still")
    parser.add_argument("--checkpoint", default=None, help="mobile_sam.pt (default: the checkpoint cache)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "gui_region.md"))
    args = parser.parse_args(argv)
    args.regions = max(1, min(args.regions, len(SPOTS)))

    from PySide6.QtWidgets import QApplication

    from annotator.data.imageio import load_image
    from annotator.workers.base import in_fresh_thread
    from sam_core import ensure_checkpoint, load_model

    tmp = Path(tempfile.mkdtemp(prefix="bench-gui-region-"))
    os.environ["SAM_ANNOTATOR_SETTINGS"] = str(tmp / "settings.ini")
    os.environ["SAM_ANNOTATOR_LOG_DIR"] = str(tmp / "logs")
    app = QApplication.instance() or QApplication(["bench_gui_region"])  # noqa: F841

    load_before = _loadavg()
    checkpoint = Path(args.checkpoint) if args.checkpoint else Path(ensure_checkpoint("vit_t"))
    folder = tmp / "photos"
    folder.mkdir()
    path = tiled_canvas(folder)
    # loaded on a thread that then ends, as the app does (see bench_gui.py)
    model = in_fresh_thread(load_model, "vit_t", checkpoint=checkpoint, device="cpu")

    # the reference on the pixels of a region like the window's first (a 100 % view of the first spot), before and
    # after the window: the machine may be shared, and its load change during the run
    H, W = CANVAS
    cx, cy = SPOTS[0][0] * W, SPOTS[0][1] * H
    region = (int(cx) - REF_REGION[0] // 2, int(cy) - REF_REGION[1] // 2)
    region = (*region, region[0] + REF_REGION[0], region[1] + REF_REGION[1])
    image = load_image(path)
    print("reference predict ...", flush=True)
    ref = in_fresh_thread(reference_predict, checkpoint, image, region, args.ref_clicks // 2)
    print("window ...", flush=True)
    res = run(model, checkpoint, folder, tmp / "cache", args)
    print("reference predict again ...", flush=True)
    ref += in_fresh_thread(reference_predict, checkpoint, image, region, args.ref_clicks - args.ref_clicks // 2)
    del image

    machine = machine_info(**{
        "Qt platform": os.environ.get("QT_QPA_PLATFORM", ""),
        "load average (1/5/15 min) before / after": f"{load_before} / {_loadavg()}",
    })
    write_report(render(res, ref, machine, args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
