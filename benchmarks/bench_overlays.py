"""Overlay cost of outlines drawn as paths at a constant screen width (issue 16, defect 7).

Outlines used to be a band of pixels inside each overlay image; they are now
a path (:func:`annotator.render.outline_path`) drawn with a cosmetic pen over
a dark halo. Two costs change, both measured here against the old way in the
same run:

* **render** (decoder thread, per mask): the fill plus the band of pixels
  (``render.outline``, the old way) vs the fill plus the path (now), on
  masks of SAM-like shapes at the largest overlay size (2048 x 1536):
  SLIC superpixels of ``skimage.data.coffee`` merged into 30 objects;
* **paint** (GUI thread): the canvas (1100 x 800, offscreen) showing a
  4000 x 3000 image with those 30 annotations, repainted at 21 % and 100 %,
  with the outline items shown (now) and hidden (the fills alone: the old
  way's cost, whose band was part of the cached pixmap).

Run from the repository root: ``QT_QPA_PLATFORM=offscreen python benchmarks/bench_overlays.py``
(``--small-cache``: with Qt's default 10 MB pixmap cache instead of the canvas's).
"""

from __future__ import annotations

import platform
import statistics
import sys
import time

import numpy as np


def _masks(n: int = 30):
    import cv2
    from skimage import data
    from skimage.segmentation import slic

    rgb = data.coffee()
    labels = slic(rgb, n_segments=120, compactness=8, start_label=0)
    rng = np.random.default_rng(0)
    groups = rng.integers(0, n, labels.max() + 1)
    out = []
    for g in range(n):
        m = np.isin(labels, np.flatnonzero(groups == g)).astype(np.uint8)
        out.append(cv2.resize(m, (2048, 1536), interpolation=cv2.INTER_NEAREST).astype(bool))
    return [m for m in out if m.any()]


def _best(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def _first(canvas, paint, repeat=5):
    """Repaint right after a zoom step (there and back): what a wheel step costs."""
    times = []
    for _ in range(repeat):
        canvas.zoom_by(1.25)  # a wheel step there and back
        paint()
        canvas.zoom_by(0.8)
        t = time.perf_counter()
        paint()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def main() -> int:
    from PySide6.QtWidgets import QApplication

    from annotator import render
    from annotator.ui.canvas import Canvas

    app = QApplication.instance() or QApplication(sys.argv)
    from PySide6.QtGui import QPixmapCache

    if "--small-cache" in sys.argv:  # Qt's default: 10 MB of cached pixmaps for the whole application
        QPixmapCache.setCacheLimit(10 * 1024)
    masks = _masks()
    color = (60, 180, 75)

    def old_way(m):  # what mask_overlay drew before: the fill, then the 2-pixel band in the edge colour
        argb = m.view(np.uint8) * render._premultiplied(color, 0.36)
        np.copyto(argb, render._premultiplied(color, 1.0), where=render.outline(m, 2))
        return render._argb_image(argb)

    rows = []
    old = _best(lambda: [old_way(m) for m in masks])
    new = _best(lambda: [render.annotation_overlay(m, color) for m in masks])
    rows.append(("render 30 masks 2048x1536 (decoder thread)", old, new))

    canvas = Canvas()  # (sets the pixmap cache's limit, unless --small-cache)
    if "--small-cache" in sys.argv:
        QPixmapCache.setCacheLimit(10 * 1024)
    print(f"pixmap cache: {QPixmapCache.cacheLimit() // 1024} MB")
    canvas.resize(1100, 800)
    canvas.show()
    canvas.set_image(render.rgb_image(np.full((3000, 4000, 3), 110, np.uint8)))
    overlays = []
    for i, m in enumerate(masks):
        full = render.resize_mask(m, (3000, 4000))
        patch = render.patch_of(full)
        overlays.append((i, render.annotation_overlay(patch.mask, color), patch.rect))
    canvas.set_annotation_overlays(overlays)
    items = list(canvas.overlays.annotation_items.values())
    plain = [render.QImage(img) for _, img, _ in overlays]  # the same fills without their outline
    for scale in (0.21, 1.0):
        canvas.zoom_by(scale / canvas.view_scale())
        canvas.centerOn(2000, 1500)

        def paint():
            canvas.viewport().repaint()
            app.processEvents()

        for item, image in zip(items, plain):
            item.set_image(image)
        paint()
        fills = _best(paint, 15)
        first_fills = _first(canvas, paint)
        for item, (_, image, _) in zip(items, overlays):
            item.set_image(image)
        paint()
        both = _best(paint, 15)
        first_both = _first(canvas, paint)
        rows.append((f"repaint at {scale:.0%}, 30 annotations, cached (GUI thread)", fills, both))
        rows.append((f"first paint at {scale:.0%} (a zoom: the caches are redrawn)", first_fills, first_both))
    print(f"# bench_overlays: {platform.processor() or platform.machine()}, "
          f"{time.strftime('%Y-%m-%d')}, Python {platform.python_version()}")
    print("| what | old way / fills only (best, median ms) | now (best, median ms) |")
    print("|---|---|---|")
    for name, a, b in rows:
        print(f"| {name} | {a[0] * 1e3:.1f}, {a[1] * 1e3:.1f} | {b[0] * 1e3:.1f}, {b[1] * 1e3:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
