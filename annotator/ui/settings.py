"""The user's preferences, stored with :class:`QSettings`, and the keys they remap.

:class:`Settings` is a typed view of one QSettings store (organisation and
application ``"sam-annotator"``; ``~/.config/sam-annotator/sam-annotator.conf``
on Linux). Every key has a default and a parser: a stored value that does not
parse (a hand-edited file, a file from another version, a value of the wrong
type from another backend) is logged once and read as the default, never
raised. Writing a bad value from code raises :class:`ValueError`.

Shortcuts: only the user's overrides are stored, one key per action under
``shortcuts/<action name>``, each a JSON list of key sequences in
:class:`QKeySequence` portable text (``["N"]``, ``["Ctrl+,"]``; ``[]`` means
"no key"). JSON, because QSettings turns a one-element list into a plain
string and an empty list into nothing in the ini format, and because ``","``
is itself a key. An action without an override keeps its
:data:`annotator.ui.actions.ACTIONS` keys and their aliases; an override replaces
both. Stored overrides that clash with another action are dropped (the
action falls back to its default), so a bad file cannot leave two actions on
one key, which Qt would silently disable.

``SAM_ANNOTATOR_SETTINGS`` names an ini file to use instead of the user's
store (tests, CI, portable installs).

This module imports Qt (QtCore, QtGui) but neither torch nor QtWidgets.

Why so long: it is the preferences' schema. Each key sits next to its parser
and default, and the shortcut-override rules sit next to the store that holds
them. The one class, :class:`Settings`, is well under the class limit.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import (
    Callable,
    Dict,
    Generic,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    TypeVar,
    Union,
    overload,
)

from PySide6.QtCore import QSettings
from PySide6.QtGui import QAction, QKeySequence

from annotator.data.maskedit import MAX_RADIUS as MAX_BRUSH_RADIUS, MIN_RADIUS as MIN_BRUSH_RADIUS
from annotator.ui.actions import ACTIONS, ActionSpec, conflicts as table_conflicts, key_text

log = logging.getLogger(__name__)

ORGANIZATION = "sam-annotator"
APPLICATION = "sam-annotator"
#: Environment variable naming an ini file to use instead of the user's settings.
ENV_SETTINGS = "SAM_ANNOTATOR_SETTINGS"

AUTO = "auto"
DEVICES: Tuple[str, ...] = ("auto", "cuda", "mps", "cpu")
DEFAULT_MEMORY_MB = 512
DEFAULT_OPACITY = 0.45
#: Upper bound of the cache sizes (1 TiB), against typos that would mean "unbounded".
MAX_CACHE_MB = 1 << 20
#: "Remove islands smaller than" bounds (pixels) and default; the brush radius bounds (image pixels) and default.
DEFAULT_ISLAND_PX = 100
MAX_ISLAND_PX = 10_000_000
DEFAULT_BRUSH_RADIUS = 10.0
#: Settings that only take effect when the application next starts.
RESTART_KEYS: Tuple[str, ...] = ("model", "device", "cache_dir")
SHORTCUT_GROUP = "shortcuts"

_FALLBACK_MODEL_TYPES = ("vit_t", "vit_b", "vit_l", "vit_h")
_CUDA_N = re.compile(r"cuda:\d{1,3}")  # more than 999 GPUs is a typo, not a device

T = TypeVar("T")
KeyList = Tuple[str, ...]


def model_types() -> Tuple[str, ...]:
    """Model types with known weights (:data:`sam_core.CHECKPOINTS`; no torch import)."""
    try:
        from sam_core.checkpoints import CHECKPOINTS

        return tuple(CHECKPOINTS)
    except Exception:  # pragma: no cover - a broken engine must not break the preferences
        return _FALLBACK_MODEL_TYPES


def normalize_key(key: str) -> str:
    """``key`` in :class:`QKeySequence` portable text (``"ctrl+s"`` -> ``"Ctrl+S"``), ``""`` if it is not a key."""
    if not isinstance(key, str) or not key.strip():
        return ""
    return QKeySequence(key.strip()).toString(QKeySequence.SequenceFormat.PortableText)


# --------------------------------------------------------------------------------------
# parsers: value -> typed value, or None when the value is not acceptable
# --------------------------------------------------------------------------------------


def _parse_model(v: object) -> Optional[str]:
    if not isinstance(v, str):
        return None
    v = v.strip()
    return v if v == AUTO or v in model_types() else None


def _parse_device(v: object) -> Optional[str]:
    if not isinstance(v, str):
        return None
    v = v.strip().lower()
    return v if v in DEVICES or _CUDA_N.fullmatch(v) else None


def _parse_folder(v: object) -> Optional[str]:
    if isinstance(v, os.PathLike):
        try:
            v = os.fspath(v)
        except (TypeError, ValueError):
            return None
    if not isinstance(v, str) or "\x00" in v or len(v) > 4096:  # no path holds a NUL; PATH_MAX is 4096
        return None
    return v.strip()


def _number(v: object) -> Optional[Union[int, float]]:
    """A stored value as an int or a finite float (text is parsed); ``None`` for bools, non-numbers, NaN, infinity."""
    if isinstance(v, bool):
        return None
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            return None
    if isinstance(v, float):
        return v if math.isfinite(v) else None  # (never math.isfinite of an int: a huge one overflows)
    return v if isinstance(v, int) else None


def _whole_number(lo: int, hi: int) -> Callable[[object], Optional[int]]:
    """A parser of whole numbers in ``[lo, hi]`` (``"12"`` and ``12.0`` count; ``12.5`` does not)."""

    def parse(v: object) -> Optional[int]:
        n = _number(v)
        if isinstance(n, float):
            if n != int(n):
                return None
            n = int(n)
        return n if n is not None and lo <= n <= hi else None

    return parse


def _real_number(lo: float, hi: float) -> Callable[[object], Optional[float]]:
    """A parser of numbers in ``[lo, hi]``, as floats."""

    def parse(v: object) -> Optional[float]:
        n = _number(v)
        return float(n) if n is not None and lo <= n <= hi else None

    return parse


_parse_megabytes = _whole_number(0, MAX_CACHE_MB)
_parse_fraction = _real_number(0.0, 1.0)


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _parse_bool(v: object) -> Optional[bool]:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        s = v.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    return None


_parse_island_px = _whole_number(1, MAX_ISLAND_PX)
_parse_radius = _real_number(MIN_BRUSH_RADIUS, MAX_BRUSH_RADIUS)


_MAX_KEYS = 32  # key sequences one action may have
_MAX_KEYS_TEXT = 4096


def parse_keys(v: object) -> Optional[KeyList]:
    """A stored shortcut override -> normalised keys (``()`` = no key), or ``None`` when unusable.

    Accepts the JSON list this module writes, a plain list of strings (another
    QSettings backend, or ``next_candidate=N, M`` typed into the ini file), or
    one key as a plain string. Keys that are not keys are dropped; a non-empty
    list of which none is a key is unusable.
    """
    items: object = v
    if isinstance(v, str):
        if len(v) > _MAX_KEYS_TEXT:
            return None
        try:
            items = json.loads(v)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested deeper than the parser goes
            items = [v]
    elif isinstance(v, (list, tuple)):
        if len(v) > _MAX_KEYS or sum(len(str(x)) for x in v[:_MAX_KEYS]) > _MAX_KEYS_TEXT:
            return None
        try:  # an unquoted JSON list in an ini file reads as a list of its comma-separated pieces
            joined = json.loads(", ".join(str(x) for x in v))
            if isinstance(joined, list):
                items = joined
        except (ValueError, RecursionError):
            pass
    if not isinstance(items, (list, tuple)) or len(items) > _MAX_KEYS or not all(isinstance(k, str) for k in items):
        return None
    keys = _dedupe(normalize_key(k) for k in items)
    if items and not keys:
        return None
    return keys


def _dedupe(keys: Iterable[str]) -> KeyList:
    out: List[str] = []
    for k in keys:
        if k and k not in out:
            out.append(k)
    return tuple(out)


# --------------------------------------------------------------------------------------
# one typed key
# --------------------------------------------------------------------------------------


class _Setting(Generic[T]):
    """A descriptor: reads ``key`` from the owner's QSettings through ``parse``, default on anything bad."""

    def __init__(self, default: T, parse: Callable[[object], Optional[T]], doc: str) -> None:
        self.default = default
        self.parse = parse
        self.__doc__ = doc
        self.key = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name

    @overload
    def __get__(self, obj: None, objtype: Optional[type] = None) -> "_Setting[T]": ...

    @overload
    def __get__(self, obj: "Settings", objtype: Optional[type] = None) -> T: ...

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        raw = obj.qsettings.value(self.key)
        if raw is None:
            return self.default
        value = self.parse(raw)
        if value is None:
            obj._warn_once(self.key, raw, f"using the default {self.default!r}")
            return self.default
        return value

    def __set__(self, obj: "Settings", value: T) -> None:
        parsed = self.parse(value)
        if parsed is None:
            raise ValueError(f"{value!r} is not a valid value for the setting {self.key!r}")
        obj.qsettings.setValue(self.key, parsed)


# --------------------------------------------------------------------------------------
# the settings
# --------------------------------------------------------------------------------------


class Settings:
    """Typed access to the user's preferences.

    Parameters
    ----------
    source:
        A :class:`QSettings` to use, or the path of an ini file (tests pass a
        file under ``tmp_path``). ``None``: the file named by
        ``$SAM_ANNOTATOR_SETTINGS`` if set, else the user's store for
        organisation and application ``"sam-annotator"``.
    specs:
        The action table whose keys may be overridden (default
        :data:`annotator.ui.actions.ACTIONS`).

    Reading is cheap (QSettings caches) and always returns a valid value;
    call :meth:`sync` after writing to put the values on disk now.
    """

    model = _Setting(AUTO, _parse_model, '``"auto"`` (vit_h on a CUDA GPU when possible, else vit_t) or a model type.')
    device = _Setting(AUTO, _parse_device, '``"auto"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"cpu"``.')
    cache_dir = _Setting("", _parse_folder, 'Cache root for weights and embeddings; ``""`` = the default folder.')
    cache_memory_mb = _Setting(DEFAULT_MEMORY_MB, _parse_megabytes, "Memory bound of the embedding cache, MB.")
    cache_disk_mb = _Setting(0, _parse_megabytes, "Disk bound of the embedding cache, MB; 0 = unbounded.")
    image_budget_mb = _Setting(
        0, _parse_megabytes, "Largest image opened, by the memory it takes (header estimate), MB; 0 = a quarter "
        "of the computer's memory. Larger images are refused, never prefetched."
    )
    overlay_opacity = _Setting(DEFAULT_OPACITY, _parse_fraction, "Fill opacity of the mask overlays, 0..1.")
    autosave = _Setting(True, _parse_bool, "Save the working file after every change (else on Ctrl+S and on quit).")
    min_island_px = _Setting(DEFAULT_ISLAND_PX, _parse_island_px, '"Remove islands": parts smaller than this, px.')
    cleanup_on_accept = _Setting(False, _parse_bool, "Fill holes and remove small islands of every accepted mask.")
    brush_radius = _Setting(DEFAULT_BRUSH_RADIUS, _parse_radius, "Brush and eraser radius, image pixels.")
    region_encoding = _Setting(
        True, _parse_bool, "Zoomed in on a large image, encode the region in view for finer masks "
        "(see annotator.session.regions)."
    )

    #: Names of the typed keys, in dialog order.
    KEYS: Tuple[str, ...] = (
        "model", "device", "cache_dir", "cache_memory_mb", "cache_disk_mb", "image_budget_mb", "overlay_opacity",
        "autosave",
        "min_island_px", "cleanup_on_accept", "brush_radius",
        "region_encoding",
    )

    def __init__(
        self,
        source: Union[QSettings, str, "os.PathLike[str]", None] = None,
        specs: Sequence[ActionSpec] = ACTIONS,
    ) -> None:
        if isinstance(source, QSettings):
            qs = source
        elif source is not None:
            qs = QSettings(os.fspath(source), QSettings.Format.IniFormat)
        elif os.environ.get(ENV_SETTINGS):
            qs = QSettings(os.path.expanduser(os.environ[ENV_SETTINGS]), QSettings.Format.IniFormat)
        else:
            qs = QSettings(ORGANIZATION, APPLICATION)
        self.qsettings = qs
        self.specs: Tuple[ActionSpec, ...] = tuple(specs)
        self._by_name: Dict[str, ActionSpec] = {s.name: s for s in self.specs}
        self._warned: Set[Tuple[str, str]] = set()

    def __repr__(self) -> str:
        return f"Settings({self.path!r})"

    @property
    def path(self) -> str:
        """Where the settings live (a file path, or a registry path on Windows)."""
        return self.qsettings.fileName()

    @classmethod
    def default(cls, key: str) -> object:
        """The default value of ``key`` (one of :attr:`KEYS`)."""
        if key not in cls.KEYS:
            raise KeyError(key)
        return getattr(cls, key).default

    def reset(self, key: str) -> None:
        """Forget the stored value of ``key`` (it reads as its default again)."""
        if key not in self.KEYS:
            raise KeyError(key)
        self.qsettings.remove(key)

    def sync(self) -> bool:
        """Write pending changes to disk; ``False`` (and a log warning) when that failed."""
        self.qsettings.sync()
        status = self.qsettings.status()
        if status != QSettings.Status.NoError:
            log.warning("could not write the settings to %s (%s)", self.path, status.name)
            return False
        return True

    def _warn_once(self, key: str, raw: object, what: str) -> None:
        sig = (key, repr(raw))
        if sig not in self._warned:
            self._warned.add(sig)
            log.warning("settings %s: ignoring %s=%r; %s", self.path, key, raw, what)

    # -- for the model request ---------------------------------------------------------

    def model_type(self) -> Optional[str]:
        """The model type to request, ``None`` for the automatic choice."""
        m = self.model
        return None if m == AUTO else m

    def cache_root(self) -> Optional[Path]:
        """The cache root to pass on, ``None`` for the default (``$SAM_ANNOTATOR_CACHE`` or the user cache)."""
        d = self.cache_dir
        return Path(d).expanduser() if d else None

    def memory_bytes(self) -> int:
        """The embedding cache's memory bound in bytes."""
        return self.cache_memory_mb * 2**20

    def image_budget_bytes(self) -> int:
        """The image memory budget in bytes (:func:`annotator.data.memory.default_image_budget` when 0)."""
        from annotator.data.memory import default_image_budget

        return self.image_budget_mb * 2**20 if self.image_budget_mb else default_image_budget()

    def disk_bytes(self) -> Optional[int]:
        """The embedding cache's disk bound in bytes, ``None`` for unbounded."""
        mb = self.cache_disk_mb
        return mb * 2**20 if mb else None

    # -- shortcuts ---------------------------------------------------------------------

    def _spec(self, action: Union[str, ActionSpec]) -> ActionSpec:
        if isinstance(action, ActionSpec):
            return action
        try:
            return self._by_name[action]
        except KeyError:
            raise KeyError(f"no action called {action!r}") from None

    def _stored_overrides(self) -> Dict[str, KeyList]:
        out: Dict[str, KeyList] = {}
        for s in self.specs:
            key = f"{SHORTCUT_GROUP}/{s.name}"
            raw = self.qsettings.value(key)
            if raw is None:
                continue
            keys = parse_keys(raw)
            if keys is None:
                self._warn_once(key, raw, "the action keeps its default keys")
            else:
                out[s.name] = keys
        return out

    @property
    def shortcuts(self) -> Dict[str, KeyList]:
        """The usable overrides: action name -> keys (portable text; ``()`` = no key).

        Stored overrides that do not parse, or that put a key on two actions,
        are left out (logged once): those actions keep their default keys.
        """
        overrides = self._stored_overrides()
        while True:
            clashes = conflicts(self.specs, overrides)
            if not clashes:
                return overrides
            dropped = [n for _, names in clashes for n in names if n in overrides]
            if not dropped:  # the table itself clashes; nothing of ours to drop
                return overrides
            for name in dict.fromkeys(dropped):
                self._warn_once(f"{SHORTCUT_GROUP}/{name}", list(overrides.pop(name)),
                                "its key is used by another action; it keeps its default keys")

    @shortcuts.setter
    def shortcuts(self, overrides: Mapping[str, Sequence[str]]) -> None:
        for name, keys in overrides.items():  # check everything before changing anything
            self._spec(name)
            if isinstance(keys, str) or not all(normalize_key(k) for k in keys):
                raise ValueError(f"bad keys for {name!r}: {keys!r}")
        self.reset_all_shortcuts()
        for name, keys in overrides.items():
            self.set_shortcuts(name, keys)

    def shortcuts_for(self, spec: Union[str, ActionSpec]) -> KeyList:
        """The keys of ``spec``: its override, else its default :attr:`ActionSpec.shortcuts` (aliases not included)."""
        spec = self._spec(spec)
        override = self.shortcuts.get(spec.name)
        return spec.shortcuts if override is None else override

    def is_overridden(self, spec: Union[str, ActionSpec]) -> bool:
        return self._spec(spec).name in self.shortcuts

    def set_shortcuts(self, action: Union[str, ActionSpec], keys: Sequence[str]) -> None:
        """Give ``action`` the keys ``keys`` (portable or native text); its default keys forget the override.

        Raises ``KeyError`` for an unknown action and ``ValueError`` for a
        string that is not a key. Clashes are not checked here: see
        :meth:`conflicts`.
        """
        spec = self._spec(action)
        if isinstance(keys, str):
            raise TypeError("keys must be a sequence of key strings, not one string")
        normal = []
        for k in keys:
            n = normalize_key(k)
            if not n:
                raise ValueError(f"{k!r} is not a key sequence")
            normal.append(n)
        new = _dedupe(normal)
        if new == _dedupe(normalize_key(k) for k in spec.shortcuts):
            self.reset_shortcut(spec.name)
        else:
            self.qsettings.setValue(f"{SHORTCUT_GROUP}/{spec.name}", json.dumps(list(new)))

    def reset_shortcut(self, action: Union[str, ActionSpec]) -> None:
        """Back to the default keys (and aliases) of ``action``."""
        self.qsettings.remove(f"{SHORTCUT_GROUP}/{self._spec(action).name}")

    def reset_all_shortcuts(self) -> None:
        self.qsettings.remove(SHORTCUT_GROUP)

    def effective_specs(self, specs: Optional[Sequence[ActionSpec]] = None) -> Tuple[ActionSpec, ...]:
        """``specs`` (default: this object's) with the overrides applied, e.g. for :func:`actions.help_html`."""
        return effective_specs(self.specs if specs is None else specs, self.shortcuts)

    def conflicts(self, overrides: Optional[Mapping[str, Sequence[str]]] = None) -> List[Tuple[str, List[str]]]:
        """Keys on more than one action: ``[(key in portable text, [action names])]``.

        ``overrides`` (action name -> keys) are applied over the stored ones
        (the dialog passes the keys being edited); every other action has its
        stored override or its default keys and aliases. Canvas keys count.
        """
        merged: Dict[str, Sequence[str]] = dict(self.shortcuts)
        if overrides:
            merged.update(overrides)
        return conflicts(self.specs, merged)


# --------------------------------------------------------------------------------------
# functions over specs
# --------------------------------------------------------------------------------------


def effective_specs(specs: Sequence[ActionSpec], overrides: Mapping[str, Sequence[str]]) -> Tuple[ActionSpec, ...]:
    """``specs`` with each overridden action's shortcuts replaced (and its aliases dropped)."""
    out = []
    for s in specs:
        keys = overrides.get(s.name)
        if keys is not None:
            s = replace(s, shortcuts=_dedupe(normalize_key(k) for k in keys), aliases=())
        out.append(s)
    return tuple(out)


def conflicts(specs: Sequence[ActionSpec], overrides: Mapping[str, Sequence[str]]) -> List[Tuple[str, List[str]]]:
    """Keys bound to more than one action once ``overrides`` are applied (see :func:`actions.conflicts`)."""
    return table_conflicts(effective_specs(specs, overrides))


def apply_shortcuts(
    actions: Mapping[str, QAction], settings: Settings, specs: Sequence[ActionSpec] = ACTIONS
) -> Dict[str, KeyList]:
    """Set each QAction's shortcuts (and tooltip) from ``settings``.

    An action without an override gets its default keys and aliases, as
    :func:`annotator.ui.actions.build_actions` gave it; an overridden one gets
    exactly its override. Actions missing from ``actions`` are skipped.
    Returns the overrides applied (action name -> keys).
    """
    overrides = settings.shortcuts
    for s in effective_specs(specs, overrides):
        action = actions.get(s.name)
        if action is None:
            continue
        action.setShortcuts([QKeySequence(k) for k in s.shortcuts + s.aliases])
        text = s.text.replace("&", "")
        shown = ", ".join(key_text(k) for k in s.keys)
        action.setToolTip(f"{text} ({shown})" if shown else text)
    return overrides


__all__ = [
    "APPLICATION",
    "AUTO",
    "DEFAULT_MEMORY_MB",
    "DEFAULT_OPACITY",
    "DEVICES",
    "ENV_SETTINGS",
    "MAX_CACHE_MB",
    "ORGANIZATION",
    "RESTART_KEYS",
    "Settings",
    "apply_shortcuts",
    "conflicts",
    "effective_specs",
    "model_types",
    "normalize_key",
    "parse_keys",
]
