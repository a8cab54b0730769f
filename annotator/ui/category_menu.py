"""The Categories menu's quick entries show the categories they pick.

The table of actions (:mod:`annotator.ui.actions`) has one action per quick
key (``category_1`` ... ``category_9``, Ctrl+1 ... Ctrl+9 unless the user
rebound them); which category each picks depends on the document. On every
change of the categories (added, renamed, recoloured, deleted, reordered)
the window calls :func:`sync`, which names each action after its category,
gives it the category's colour, hides the actions past the last category,
and returns the rows with the keys actually bound, for the panel.
"""

from __future__ import annotations

from dataclasses import replace
from typing import List, Mapping, Sequence

from PySide6.QtGui import QAction, QIcon, QKeySequence

from annotator import render
from annotator.ui.icons import exact_icon
from annotator.session.rows import CategoryRow
from annotator.ui.actions import QUICK_CATEGORIES


def sync(actions: Mapping[str, QAction], rows: Sequence[CategoryRow]) -> List[CategoryRow]:
    """Label the quick category actions after ``rows`` (panel order); returns ``rows`` with their real keys.

    Row ``i`` (from 0) is picked by action ``category_{i + 1}``; its
    ``quick_key`` becomes that action's first shortcut in native text, or
    ``None`` when the user unbound it or the row is past the quick ones.
    """
    out = []
    for i in range(1, QUICK_CATEGORIES + 1):
        action = actions.get(f"category_{i}")
        if action is None:
            continue
        if i <= len(rows):
            row = rows[i - 1]
            action.setText(row.name.replace("&", "&&"))  # a literal "&", not a mnemonic
            action.setIcon(exact_icon(render.swatch(row.color)))
            action.setStatusTip(f"Make {row.name} the current category")
            action.setVisible(True)
        else:
            action.setText(f"Category {i}")
            action.setIcon(QIcon())
            action.setVisible(False)  # no category to pick (and a hidden action's shortcut does nothing)
    for i, row in enumerate(rows):
        action = actions.get(f"category_{i + 1}") if i < QUICK_CATEGORIES else None
        keys = action.shortcuts() if action is not None else []
        key = keys[0].toString(QKeySequence.SequenceFormat.NativeText) if keys else None
        out.append(replace(row, quick_key=key or None))
    return out
