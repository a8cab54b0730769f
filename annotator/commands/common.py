"""What the command-line tools share: exit codes, the run summary, model names, sizes and the download bar.

Qt-free, and importing nothing of the engine until a function needs it, so
``sam-annotator CMD --help`` stays instant.

Sizes are decimal (1 MB = 10**6 bytes) everywhere we print them, as
``models list``, the download bar and the README's model table do
(``tests/test_readme_models.py`` checks the README against :func:`format_size`
of the registry).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130

DEFAULT_GPU_BATCH = 8
MODEL_CHOICES = ("vit_t", "vit_b", "vit_l", "vit_h")  # when the engine's registry cannot be read


@dataclass
class Summary:
    """What an encode run did (returned by ``encode_folder`` and the Ray driver, for tests and callers)."""

    total: int = 0
    encoded: int = 0
    cached: int = 0
    failed: List[Tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        text = f"{self.total} images: {self.encoded} encoded, {self.cached} already cached, {len(self.failed)} failed"
        if self.encoded:
            text += f" ({self.seconds:.1f} s, {self.seconds / self.encoded:.2f} s per encoded image)"
        return text


def model_choices() -> Tuple[str, ...]:
    """Every model type of the engine's registry."""
    try:
        from sam_core.checkpoints import CHECKPOINTS

        return tuple(CHECKPOINTS)
    except Exception:  # pragma: no cover - registry missing: fall back to SAM 1 names
        return MODEL_CHOICES


def format_size(n: Optional[int]) -> str:
    """``40728226`` -> ``"40.7 MB"`` (decimal units); ``None`` -> ``"-"``."""
    if n is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


class ByteBar:
    """A tqdm bar for a download fed by ``progress(done, total)`` (decimal units); restarts when the total changes."""

    def __init__(self, label: str, quiet: bool):
        self._label, self._quiet = label, quiet
        self._bar = None
        self._total: Optional[int] = -1

    def __call__(self, done: int, total: Optional[int]) -> None:
        if self._quiet:
            return
        from tqdm import tqdm

        if self._bar is None or total != self._total or done < self._bar.n:
            self.close()
            self._bar = tqdm(total=total, initial=done, desc=self._label, unit="B", unit_scale=True,
                             unit_divisor=1000, file=sys.stderr, dynamic_ncols=True, leave=True)
            self._total = total
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def path_problem(args: object) -> Optional[str]:
    """The usage error in the path options ``encode`` and ``auto`` share (our sentence), or ``None``.

    Checked before any model is loaded or image listed: a ``--cache-dir`` that
    is a file would otherwise surface as a failed weights download, and a
    ``--checkpoint`` that is a folder as "does not exist" (a missing one is
    reported when the weights are loaded).
    """
    cache = getattr(args, "cache_dir", None)
    if cache is not None and cache.exists() and not cache.is_dir():
        return f"--cache-dir {cache} is a file; give a folder (it is created if missing)"
    checkpoint = getattr(args, "checkpoint", None)
    if checkpoint is not None and checkpoint.is_dir():
        return f"--checkpoint {checkpoint} is a folder; give the weights file"
    return None


def resolve_checkpoint(model_type: str, checkpoint: Optional[Path], cache_root: Optional[Path], quiet: bool) -> Path:
    """The weights file: ``checkpoint`` if given, else the verified registry file (downloaded if needed)."""
    if checkpoint is not None:
        if not checkpoint.is_file():
            raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
        return checkpoint
    from sam_core import checkpoints as ck

    bar = ByteBar(ck.CHECKPOINTS[model_type].file_name, quiet)
    try:
        return ck.ensure_checkpoint(model_type, cache=cache_root, progress=bar)
    finally:
        bar.close()
