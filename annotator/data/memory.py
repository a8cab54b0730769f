"""How much memory this computer has, and whether an image fits the budget (no Qt, no psutil).

The window must never decode an image that does not fit in memory just
because the user looked at the one before it (prefetch), and ``sam-annotator
encode`` must not batch more images than fit. Both ask here:

* :func:`total_memory` / :func:`available_memory`: ``MemTotal`` /
  ``MemAvailable`` of ``/proc/meminfo`` on Linux, bounded by the cgroup limit
  of a container (``memory.max``, or ``memory.limit_in_bytes`` for cgroup v1);
  elsewhere ``os.sysconf`` (``SC_PHYS_PAGES``, ``SC_AVPHYS_PAGES``); ``None``
  when nothing answers.
* :func:`default_image_budget`: a fraction (:data:`DEFAULT_BUDGET_FRACTION`)
  of the total, the default of the window's preference.
* :func:`check_image` says, from the image's header alone, whether it fits
  the budget: over it, the window never prefetches it and asks before opening
  it (:attr:`BudgetCheck.message` is that question's text).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

from annotator.data.imageio import MemoryEstimate, estimate_memory

__all__ = [
    "DEFAULT_BUDGET_FRACTION",
    "FALLBACK_TOTAL",
    "BudgetCheck",
    "total_memory",
    "available_memory",
    "default_image_budget",
    "check_image",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Share of the computer's memory one image may take by default.
DEFAULT_BUDGET_FRACTION = 0.25
#: Total memory assumed when the system cannot be asked.
FALLBACK_TOTAL = 8 * 2**30

_MEMINFO = "/proc/meminfo"
_CGROUP_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
_CGROUP_USAGE = ("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory/memory.usage_in_bytes")


def _meminfo() -> Dict[str, int]:
    out: Dict[str, int] = {}
    try:
        with open(_MEMINFO, "rb") as f:
            text = f.read(64 * 1024).decode("ascii", "replace")
    except OSError:
        return out
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            scale = 1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1
            out[name.strip()] = int(parts[0]) * scale
    return out


def _read_int(paths) -> Optional[int]:
    for p in paths:
        try:
            with open(p, "rb") as f:
                text = f.read(64).decode("ascii", "replace").strip()
        except OSError:
            continue
        if text.isdigit():
            value = int(text)
            if 0 < value < 2**60:  # cgroup v1 says "no limit" with a huge number
                return value
    return None


def _sysconf(name: str) -> Optional[int]:
    try:
        pages, size = os.sysconf(name), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return pages * size if pages > 0 and size > 0 else None


def total_memory() -> Optional[int]:
    """Bytes of memory this process may use at most: RAM, or a container's limit if lower; ``None`` if unknown."""
    total = _meminfo().get("MemTotal") or _sysconf("SC_PHYS_PAGES")
    limit = _read_int(_CGROUP_FILES)
    if limit is not None:
        total = min(total, limit) if total else limit
    return total or None


def available_memory() -> Optional[int]:
    """Bytes that can be allocated now without swapping (``MemAvailable``, bounded by the container); ``None`` if unknown."""
    info = _meminfo()
    available = info.get("MemAvailable") or _sysconf("SC_AVPHYS_PAGES")
    limit = _read_int(_CGROUP_FILES)
    if limit is not None:
        used = _read_int(_CGROUP_USAGE) or 0
        room = max(0, limit - used)
        available = min(available, room) if available else room
    return available or None


def default_image_budget(fraction: float = DEFAULT_BUDGET_FRACTION) -> int:
    """``fraction`` of :func:`total_memory` (of :data:`FALLBACK_TOTAL` when unknown), in bytes."""
    if not (0.0 < fraction <= 1.0):
        raise ValueError(f"the budget fraction must be in (0, 1], got {fraction!r}")
    return int((total_memory() or FALLBACK_TOTAL) * fraction)


@dataclass(frozen=True)
class BudgetCheck:
    """Whether an image fits the memory budget.

    Attributes
    ----------
    estimate
        From the header (:func:`annotator.data.imageio.estimate_memory`).
    budget
        Bytes allowed.
    fits
        ``estimate.open_bytes <= budget``: it may be prefetched and opened without asking.
    message
        For an image over the budget, the question to ask the user; ``""`` otherwise.
    """

    path: Path
    estimate: MemoryEstimate
    budget: int
    fits: bool
    message: str

    @property
    def prefetch_ok(self) -> bool:
        return self.fits


def check_image(path: PathLike, budget: Optional[int] = None) -> BudgetCheck:
    """Whether ``path`` fits ``budget`` bytes (default :func:`default_image_budget`), from its header alone.

    Raises
    ------
    annotator.data.imageio.ImageLoadError
        The file cannot be opened as an image at all.
    """
    p = Path(path)
    budget = default_image_budget() if budget is None else int(budget)
    estimate = estimate_memory(p)
    fits = estimate.open_bytes <= budget
    message = ""
    if not fits:
        message = (
            f"'{p.name}' is {estimate.width} x {estimate.height} pixels: opening it takes about "
            f"{estimate.open_bytes / 1e9:.1f} GB of memory, over the budget of {budget / 1e9:.1f} GB "
            "(Preferences). It is not loaded in advance. Open it anyway?"
        )
    return BudgetCheck(p, estimate, budget, fits, message)
