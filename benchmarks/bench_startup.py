"""Start-up benchmark: launch to "ready" against a bare import of the same libraries.

Runs, alternately, ``--repeats`` times each, in fresh processes:

* **bare**: ``python -c "import torch, PySide6.QtWidgets, numpy, cv2"``, the
  floor any PySide6 + PyTorch app pays;
* **app**: ``python -m annotator.cli`` with ``SAM_ANNOTATOR_SMOKE_TEST=1``
  (offscreen Qt, a private settings file), timed from the process start to the
  ``sam-annotator: ready`` line: window shown, MobileSAM (already downloaded)
  verified and loaded.

* **click** (``--click``): ``benchmarks/launch_click.py`` on a folder with one
  12 MP photo whose embedding is in the disk cache (a first launch encodes it):
  launch to window shown, launch to ready (model loaded, embedding on hand),
  and ready to the first click's overlay painted (goal: at most 0.5 s).

Then one more app launch under ``python -X importtime`` lists the slowest
imports. Prints a markdown report (``--out`` to write it). Run from the
repository root::

    python benchmarks/bench_startup.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

BARE = "import torch, PySide6.QtWidgets, numpy, cv2"


def _env(tmp: Path) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "QT_QPA_PLATFORM": "offscreen",
            "SAM_ANNOTATOR_SMOKE_TEST": "1",
            "SAM_ANNOTATOR_SETTINGS": str(tmp / "settings.ini"),
            "SAM_ANNOTATOR_LOG_DIR": str(tmp / "logs"),
        }
    )
    return env


def run_bare(env: Dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", BARE], env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def run_app(env: Dict[str, str], extra: Optional[List[str]] = None) -> tuple:
    """Seconds from process start to the ready line, and the process's stderr."""
    with tempfile.TemporaryFile("w+") as err_file:  # a file, not a pipe: -X importtime writes a lot to stderr
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, *(extra or []), "-m", "annotator.cli", "--model", "vit_t", "--device", "cpu"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err_file,
            text=True,
        )
        ready = None
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("sam-annotator: ready"):
                ready = time.perf_counter() - t0
            elif line.startswith("sam-annotator:"):
                proc.kill()
                raise RuntimeError(line.strip())
        code = proc.wait()
        err_file.seek(0)
        err = err_file.read()
    if code != 0 or ready is None:
        raise RuntimeError(f"app exited with {code}:\n{err[-3000:]}")
    return ready, err


def run_click(env: Dict[str, str], folder: Path) -> Dict[str, float]:
    """Seconds from the process start to ``shown``, ``ready`` and ``answered`` (see launch_click.py)."""
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "launch_click.py"), str(folder)], env=env,
                         capture_output=True, text=True, timeout=300)
    marks = {}
    for line in out.stdout.splitlines():
        if line.startswith("t "):
            _, name, at = line.split()
            marks[name] = float(at) - t0
    if out.returncode != 0 or set(marks) != {"shown", "ready", "answered"}:
        raise RuntimeError(f"launch_click exited with {out.returncode}: {out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return marks


def importtime_top(stderr: str, n: int = 15) -> List[tuple]:
    """The ``n`` slowest top-level-ish imports from ``-X importtime`` output: (cumulative ms, module)."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = [p.strip() for p in line[len("import time:"):].split("|")]
        try:
            cum = int(parts[1])
        except ValueError:
            continue
        name = parts[2]
        depth = (len(name) - len(name.lstrip())) // 2
        if depth <= 1:
            rows.append((cum / 1000.0, name.strip()))
    return sorted(rows, reverse=True)[:n]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--click", action="store_true", help="also launch on a cached 12 MP photo and click once")
    args = parser.parse_args(argv)
    from bench_engine import _loadavg, machine_info

    machine = machine_info()
    load_before = _loadavg()
    bare: List[float] = []
    app: List[float] = []
    with tempfile.TemporaryDirectory(prefix="bench_startup_") as tmp:
        env = _env(Path(tmp))
        run_app(env)  # warm the file cache (and write the checkpoint's verification record once)
        run_bare(env)
        for r in range(args.repeats):
            order = ("bare", "app") if r % 2 == 0 else ("app", "bare")
            for what in order:
                if what == "bare":
                    bare.append(run_bare(env))
                else:
                    app.append(run_app(env)[0])
            print(f"  round {r + 1}: bare {bare[-1]:.2f} s, app {app[-1]:.2f} s", flush=True)
        clicks: List[Dict[str, float]] = []
        if args.click:
            from bench_gui import photos_12mp

            folder = Path(tmp) / "photo"
            folder.mkdir()
            photos_12mp(folder)
            for extra in sorted(folder.iterdir())[1:]:
                extra.unlink()  # one photo: the one the window opens on
            run_click(env, folder)  # encodes it into the disk cache
            for r in range(args.repeats):
                clicks.append(run_click(env, folder))
                bare.append(run_bare(env))
                print(f"  click round {r + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in clicks[-1].items()), flush=True)
        _, err = run_app(env, ["-X", "importtime"])
        top = importtime_top(err)
    machine["load average (1/5/15 min) before / after"] = f"{load_before} / {_loadavg()}"

    def spread(v: List[float]) -> str:
        return f"{min(v):.2f} / {statistics.median(v):.2f} / {max(v):.2f}"

    ours = [a - b for a, b in zip(app, bare[: len(app)])]
    lines = [
        "# Start-up: launch to ready vs a bare import",
        "",
        "Generated by `" + " ".join(["python", "benchmarks/bench_startup.py", *sys.argv[1:]]) + "`.",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in machine.items()],
        "",
        f"{args.repeats} launches of each, alternated; seconds, min / median / max.",
        "",
        "| launch | seconds |",
        "|---|---:|",
        f"| bare `python -c \"{BARE}\"` | {spread(bare)} |",
        "| `sam-annotator` (smoke test, MobileSAM downloaded, offscreen) to the ready line | " + spread(app) + " |",
        "| ours = app - bare, paired by round | " + spread(ours) + " |",
        *([
            "",
            f"Launch on a folder whose 12 MP photo is in the disk cache, then one click at its centre "
            f"({len(clicks)} launches, each followed by a bare import; `benchmarks/launch_click.py`), seconds:",
            "",
            "| step | min / median / max |",
            "|---|---:|",
            "| launch → window shown | " + spread([c["shown"] for c in clicks]) + " |",
            "| launch → ready (model loaded, embedding from the disk cache) | "
            + spread([c["ready"] for c in clicks]) + " |",
            "| ready → first click's overlay painted (goal ≤ 0.5 s) | "
            + spread([c["answered"] - c["ready"] for c in clicks]) + " |",
            "| launch → first click answered | " + spread([c["answered"] for c in clicks]) + " |",
        ] if clicks else []),
        "",
        "Slowest imports of one app launch (`-X importtime`, cumulative ms, top-level modules):",
        "",
        "| ms | module |",
        "|---:|---|",
        *[f"| {ms:.0f} | `{name}` |" for ms, name in top],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
