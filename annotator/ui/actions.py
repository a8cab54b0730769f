"""The one table of commands and their keys.

Menus, toolbar actions, the F1 help and the preferences dialog are all
built from :data:`ACTIONS` and :data:`MOUSE`, so a key shown in the help is
the key that works. Each :class:`ActionSpec` names a handler; the main window
passes a mapping from names to callables and gets :class:`QAction`\\ s back.

Some keys are not QAction shortcuts because their meaning depends on what the
mouse does: Space accepts when released without a drag but pans while held
during a drag, so the canvas handles it (``canvas_keys``) and calls the same
action.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenuBar, QToolBar, QWidget

MENUS = ("File", "Edit", "Image", "Candidates", "Mask", "Proposals", "Categories", "View", "Help")
#: Menu entries that start a group (a separator above them).
MENU_GROUPS = ("quit", "mark_todo", "category_1", "add_category", "preferences", "accept_proposals", "about",
               "brush_smaller", "refine_annotation", "fill_holes")
#: The toolbar's buttons, ``None`` a separator.
TOOLBAR = ("open_folder", "save", "export_coco", None, "segment_everything", "undo", "redo")


@dataclass(frozen=True)
class ActionSpec:
    """One command.

    Attributes
    ----------
    name:
        Identifier, also the handler's key.
    text:
        Menu text (``&`` marks the mnemonic).
    menu:
        One of :data:`MENUS`.
    help:
        One line for the F1 help.
    shortcuts:
        Key sequences in :class:`QKeySequence` portable text (``"Ctrl+Shift+Z"``).
    canvas_keys:
        Keys the canvas handles itself and maps to this action (shown in help).
    checkable:
        A toggle.
    aliases:
        Extra key sequences that mean the same on some platforms or keyboards
        (registered, not shown in help).
    group:
        Help text shared by a run of similar actions (Ctrl+1 ... Ctrl+9), which
        the help shows as one row.
    """

    name: str
    text: str
    menu: str
    help: str
    shortcuts: Tuple[str, ...] = ()
    canvas_keys: Tuple[str, ...] = ()
    checkable: bool = False
    aliases: Tuple[str, ...] = ()
    group: str = ""

    @property
    def keys(self) -> Tuple[str, ...]:
        return self.shortcuts + self.canvas_keys


#: How many categories get a quick key (Ctrl+1 ... Ctrl+9).
QUICK_CATEGORIES = 9


def _category_actions() -> Tuple[ActionSpec, ...]:
    return tuple(
        ActionSpec(
            f"category_{i}", f"Category {i}", "Categories", f"Make category {i} (in panel order) the current one",
            (f"Ctrl+{i}",), group="Make the n-th category (in panel order) the current one",
        )
        for i in range(1, QUICK_CATEGORIES + 1)
    )


ACTIONS: Tuple[ActionSpec, ...] = (
    # File
    ActionSpec("open_folder", "&Open Folder…", "File", "Open a folder of images", ("Ctrl+O",)),
    ActionSpec("open_images", "Open &Images…", "File",
               "Open one or more image files (the annotations go beside them, in annotations.json)",
               ("Ctrl+Shift+O",)),
    ActionSpec("save", "&Save", "File", "Save the annotations now (also done after every change while autosave is on)",
               ("Ctrl+S",)),
    ActionSpec("save_copy", "Save a &Copy…", "File",
               "Write the annotations to another file; the working file stays as it is (how a read-only window, "
               "or one that cannot save, keeps its work)", ("Ctrl+Shift+S",)),
    ActionSpec("save_as", "Save &As…", "File",
               "Write the annotations to another file and work on that file from now on (the old file stays as it "
               "was at its last save)", ("Ctrl+Alt+S",)),
    # (named export_coco still: users' shortcut settings are stored by action name)
    ActionSpec("export_coco", "&Export…", "File",
               "Write a copy as COCO (RLE or polygons), YOLO segmentation, Pascal VOC, labelme or mask PNGs",
               ("Ctrl+Shift+E",)),
    ActionSpec("import_labels", "&Import Labels…", "File",
               "Add labelme, YOLO, VOC or COCO labels to the working file (a report first; one undoable step)",
               ("Ctrl+Shift+I",)),
    ActionSpec("choose_checkpoint", "Load &Checkpoint…", "File", "Load SAM weights from a file"),
    ActionSpec("quit", "&Quit", "File", "Save and quit", ("Ctrl+Q",)),
    # Edit
    ActionSpec("undo", "&Undo", "Edit", "Undo the last prompt or annotation change", ("Ctrl+Z",)),
    ActionSpec("redo", "&Redo", "Edit", "Redo", ("Ctrl+Shift+Z", "Ctrl+Y")),
    ActionSpec("accept", "&Accept Mask", "Edit",
               "Accept the current candidate in the current category (reviewing proposals: the selected ones)",
               ("Return", "Enter"), canvas_keys=("Space",)),
    ActionSpec("clear_prompts", "&Clear Prompts", "Edit",
               "Remove the points, box and hand edits of the current prompt (brush or eraser: back to prompting; "
               "refining: cancel; reviewing proposals: reject them; segmenting everything: cancel)", ("Esc",)),
    ActionSpec("delete_annotation", "&Delete Annotation", "Edit",
               "Delete the selected annotation (Ctrl+click or the panel)", ("Delete", "Backspace")),
    ActionSpec("preferences", "&Preferences…", "Edit",
               "Model, device, cache, mask opacity, autosave, cleanup and shortcuts", ("Ctrl+,",)),
    # Image
    ActionSpec("next_image", "&Next Image", "Image", "Show the next image", ("D", "Right", "PgDown")),
    ActionSpec("previous_image", "&Previous Image", "Image", "Show the previous image", ("A", "Left", "PgUp")),
    ActionSpec("next_todo", "Next &To Do", "Image",
               "Show the next image to do (wrapping; passes over done, skipped and unusable images)", ("Shift+D",)),
    ActionSpec("mark_todo", "Mark To &Do", "Image", "Mark the image to do (not finished)", ("T",)),
    ActionSpec("mark_done", "Mark D&one", "Image",
               "Mark the image done (finished; done with no annotations: a negative, no object in it)", ("C",)),
    ActionSpec("mark_skipped", "Mark &Skipped", "Image", "Mark the image skipped (left out on purpose)", ("S",)),
    # Candidates
    ActionSpec("next_candidate", "&Next Candidate", "Candidates", "Show the next of the three candidates", ("Tab",)),
    ActionSpec("previous_candidate", "&Previous Candidate", "Candidates", "Show the previous candidate",
               ("Shift+Tab",), aliases=("Shift+Backtab",)),
    ActionSpec("candidate_1", "Candidate &1", "Candidates", "Pick the best-ranked candidate", ("1",)),
    ActionSpec("candidate_2", "Candidate &2", "Candidates", "Pick the second candidate", ("2",)),
    ActionSpec("candidate_3", "Candidate &3", "Candidates", "Pick the third candidate", ("3",)),
    # Mask (fixing the candidate or the selected annotation by hand)
    ActionSpec("brush", "&Brush", "Mask",
               "Paint on the candidate, or on the selected annotation (at once); again: back to prompting", ("B",)),
    ActionSpec("eraser", "&Eraser", "Mask",
               "Erase from the candidate, or from the selected annotation (at once); again: back to prompting",
               ("E",)),
    ActionSpec("brush_smaller", "&Smaller Brush", "Mask", "Brush and eraser radius smaller (also Ctrl+wheel)",
               ("[",)),
    ActionSpec("brush_bigger", "B&igger Brush", "Mask", "Brush and eraser radius bigger (also Ctrl+wheel)", ("]",)),
    ActionSpec("refine_annotation", "&Refine with SAM", "Mask",
               "Reopen the selected annotation's prompt (or use its mask): clicks refine it, Enter replaces it",
               ("R",)),
    ActionSpec("fill_holes", "Fill &Holes", "Mask", "Fill the holes of the candidate or the selected annotation",
               ("O",)),
    ActionSpec("remove_islands", "Remove Small &Islands", "Mask",
               "Remove the parts smaller than the preferences' size from the candidate or the selected annotation",
               ("I",)),
    ActionSpec("keep_largest", "Keep &Largest Part", "Mask",
               "Keep only the largest part of the candidate or the selected annotation", ("K",)),
    # Proposals (segment everything, then review)
    ActionSpec("segment_everything", "Segment &Everything", "Proposals",
               "Propose masks for every object of the image, in the background, to review", ("Ctrl+E",)),
    ActionSpec("accept_proposals", "Accept &Selected Proposals", "Proposals",
               "Accept the proposals selected by clicking (also Enter while reviewing)"),
    ActionSpec("accept_all_proposals", "Accept &All Proposals", "Proposals",
               "Accept every remaining proposal in the current category", ("Shift+Return",),
               aliases=("Shift+Enter",)),
    ActionSpec("reject_proposals", "&Reject All Proposals", "Proposals",
               "Leave the review without accepting the rest (also Esc)"),
    # Categories
    *_category_actions(),
    ActionSpec("add_category", "&Add Category…", "Categories", "Add a category", ("Ctrl+Shift+N",)),
    # View
    ActionSpec("fit_view", "&Fit Image", "View", "Fit the image to the window", ("F",)),
    ActionSpec("zoom_in", "Zoom &In", "View", "Zoom in", ("+", "=")),
    ActionSpec("zoom_out", "Zoom &Out", "View", "Zoom out", ("-",)),
    ActionSpec("actual_size", "&Actual Size", "View", "One image pixel per screen pixel", ("Ctrl+0",)),
    ActionSpec("toggle_annotations", "Show &Annotations", "View", "Show or hide accepted annotations",
               ("H",), checkable=True),
    # Help
    ActionSpec("help", "&Keyboard and Mouse…", "Help", "Show this list", ("F1",)),
    ActionSpec("open_log_folder", "Open &Log Folder", "Help", "Show the folder of the log file"),
    ActionSpec("about", "&About", "Help", "Version, model, device and where logs and caches are"),
)

#: Mouse gestures on the canvas (documented here so the help lists them beside the keys).
MOUSE: Tuple[Tuple[str, str], ...] = (
    ("Left click", "Add a foreground point (green)"),
    ("Right click, Shift+Left click", "Add a background point (red)"),
    ("Left drag", "Draw a box (replaces the earlier box)"),
    ("Wheel", "Zoom around the cursor"),
    ("Middle drag, Space+Left drag", "Pan"),
    ("Click (reviewing proposals)", "Select or unselect the proposal under the cursor"),
    ("Drag (reviewing proposals)", "Select every proposal inside the box"),
    ("Ctrl+click", "Select the topmost annotation under the cursor; again at the same place: the next one below "
                   "(while Ctrl is held, the one it would pick is outlined)"),
    ("Left drag (brush, eraser)", "Paint or erase along the path (one undo step per stroke)"),
    ("Right drag (brush, eraser)", "The opposite: erase with the brush, paint with the eraser"),
    ("Shift+drag (brush, eraser)", "A scribble as SAM points: foreground (brush) or background (eraser)"),
    ("Ctrl+wheel (brush, eraser)", "Brush radius"),
)


def spec(name: str) -> ActionSpec:
    """The spec called ``name`` (KeyError if none)."""
    for s in ACTIONS:
        if s.name == name:
            return s
    raise KeyError(name)


def key_text(key: str) -> str:
    """How ``key`` is shown to the user on this platform (``"Ctrl+Z"`` -> ``"⌘Z"`` on macOS)."""
    return QKeySequence(key).toString(QKeySequence.SequenceFormat.NativeText) or key


def conflicts(specs: Iterable[ActionSpec] = ACTIONS) -> List[Tuple[str, List[str]]]:
    """Keys bound to more than one action: ``[(key, [action names])]`` (empty when the table is sound)."""
    seen: Dict[str, List[str]] = {}
    for s in specs:
        for k in s.keys + s.aliases:
            norm = QKeySequence(k).toString(QKeySequence.SequenceFormat.PortableText) or k
            seen.setdefault(norm, []).append(s.name)
    return [(k, names) for k, names in seen.items() if len(names) > 1]


def build_actions(
    parent: QObject, handlers: Mapping[str, Callable[..., object]], specs: Sequence[ActionSpec] = ACTIONS
) -> Dict[str, QAction]:
    """One QAction per spec, with its shortcuts, tooltip and status tip, connected to ``handlers[name]``.

    Specs without a handler get a disabled action (so menus and help still
    show them). Shortcuts are window-wide.
    """
    actions: Dict[str, QAction] = {}
    for s in specs:
        action = QAction(s.text, parent)
        action.setObjectName(s.name)
        action.setShortcuts([QKeySequence(k) for k in s.shortcuts + s.aliases])
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setCheckable(s.checkable)
        shown = ", ".join(key_text(k) for k in s.keys)
        action.setToolTip(f"{s.text.replace('&', '')} ({shown})" if shown else s.text.replace("&", ""))
        action.setStatusTip(s.help)
        handler = handlers.get(s.name)
        if handler is None:
            action.setEnabled(False)
        elif s.checkable:
            action.toggled.connect(handler)
        else:
            action.triggered.connect(lambda _checked=False, h=handler: h())
        actions[s.name] = action
    return actions


def build_menus(menubar: QMenuBar, actions: Mapping[str, QAction], specs: Sequence[ActionSpec] = ACTIONS) -> None:
    """One menu per :data:`MENUS` entry, holding its specs' actions in table order."""
    menus = {name: menubar.addMenu(f"&{name}") for name in MENUS}
    for s in specs:
        if s.name in MENU_GROUPS:
            menus[s.menu].addSeparator()
        menus[s.menu].addAction(actions[s.name])


def build_toolbar(parent: QWidget, actions: Mapping[str, QAction]) -> QToolBar:
    """The :data:`TOOLBAR` buttons, text only; they never take the keyboard focus (keys stay on the canvas)."""
    bar = QToolBar("Tools", parent)
    bar.setObjectName("toolbar")
    bar.setMovable(False)
    bar.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    for name in TOOLBAR:
        if name is None:
            bar.addSeparator()
            continue
        if name in ("undo", "redo"):  # the menu text names the step ("Undo Accept object"); the button stays short
            actions[name].setIconText(name.capitalize())
        bar.addAction(actions[name])
    for button in bar.findChildren(QWidget):
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    return bar


def help_rows(specs: Sequence[ActionSpec] = ACTIONS) -> List[Tuple[str, str, str]]:
    """``(section, keys, description)`` for every keyed action and mouse gesture, in menu order."""
    rows: List[Tuple[str, str, str]] = [("Mouse", gesture, what) for gesture, what in MOUSE]
    for menu in MENUS:
        in_menu = [s for s in specs if s.menu == menu and s.keys]
        done_groups = set()
        for s in in_menu:
            if s.group:
                if s.group in done_groups:
                    continue
                done_groups.add(s.group)
                members = [m for m in in_menu if m.group == s.group]
                keys = f"{key_text(members[0].keys[0])} … {key_text(members[-1].keys[0])}"
                rows.append((menu, keys, s.group))
            else:
                rows.append((menu, ", ".join(key_text(k) for k in s.keys), s.help))
    return rows


def help_html(specs: Sequence[ActionSpec] = ACTIONS, title: Optional[str] = "Keyboard and mouse") -> str:
    """The help as an HTML table (what F1 shows)."""
    from html import escape

    out = [f"<h3>{escape(title)}</h3>" if title else "", "<table cellspacing='0' cellpadding='3'>"]
    section = None
    for sec, keys, what in help_rows(specs):
        if sec != section:
            section = sec
            out.append(f"<tr><td colspan='2'><br><b>{escape(sec)}</b></td></tr>")
        out.append(f"<tr><td style='padding-right:18px'><code>{escape(keys)}</code></td><td>{escape(what)}</td></tr>")
    out.append("</table>")
    return "".join(out)
