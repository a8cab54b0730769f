"""Next / previous image (D / A) under the image list's filter.

With the list filtered to one state (to do, done, skipped, unusable), the
image on show must stay among the rows the list shows: D and A step to the
next / previous image *in that state*, and when there is none the status bar
says so (nothing changes). With no filter (``""``) they step through every
image, as before. *Next To Do* (:mod:`annotator.session.image_states`) is a
separate action and keeps its meaning whatever the filter.

Qt-free: :func:`filtered_step` reads the navigator's rows only.
"""

from __future__ import annotations

from typing import Optional, Tuple

from annotator.session.rows import LIST_STATE_NAMES, list_state


def filtered_step(images, direction: int, state: str) -> Tuple[Optional[int], str]:
    """The image ``direction`` (+1 / -1) steps away from the current one, shown by the filter ``state``.

    Parameters
    ----------
    images
        The session's :class:`~annotator.session.navigation.ImageNavigator`
        (``index``, ``image_count()``, ``image_row(i)``).
    direction
        ``1``: next (D), ``-1``: previous (A). No wrapping.
    state
        One of :data:`annotator.session.rows.LIST_STATES`, or ``""``: every image.

    Returns
    -------
    (index or None, message)
        The index to show, or ``None`` and why not (``""`` when there is
        nothing to say: no images, or the end of an unfiltered list).
    """
    n, here = images.image_count(), images.index
    if n == 0:
        return None, ""
    i = here + direction
    while 0 <= i < n:
        if not state or list_state(images.image_row(i)) == state:
            return i, ""
        i += direction
    if not state:
        return None, ""
    name = LIST_STATE_NAMES.get(state, state)
    where = "after" if direction > 0 else "before"
    return None, (f"No image {where} this one in the list's filter ({name}); "
                  "choose All in the image list to step through every image")
