"""Which images an export writes: every annotated image, and the negatives.

A *negative* is an image the user checked and found empty: its record in the
working file has no annotations and the extra field ``"state": "done"``
(:data:`STATE_FIELD`, :data:`DONE`; the window's image states write it, and
:func:`annotator.data.formats.importing.apply_plan` sets it on an image whose
imported label file lists nothing). Exports write a negative as the format's
empty label: an empty YOLO label file, an all-background VOC PNG, an all-zero
mask PNG, a labelme JSON with no shapes, a COCO image with no annotations.

An image with no annotations that is *not* marked done (``"todo"``,
``"skipped"``, or no state: every annotation deleted) has not been checked;
writing it as a negative would teach a trainer that nothing is there, so the
export leaves it out and says so (:func:`leave_out_unchecked`).
"""

from __future__ import annotations

from typing import Any, Dict, List

__all__ = ["STATE_FIELD", "DONE", "TODO", "SKIPPED", "is_done", "leave_out_unchecked", "left_out_warning"]

#: The image record's extra field holding its state (values :data:`TODO`, :data:`DONE`, :data:`SKIPPED`).
STATE_FIELD = "state"
TODO, DONE, SKIPPED = "todo", "done", "skipped"


def is_done(image: Dict[str, Any]) -> bool:
    """``image`` (a COCO image dict or an image record's ``extra``) is marked done."""
    return image.get(STATE_FIELD) == DONE


def leave_out_unchecked(data: Dict[str, Any]) -> List[int]:
    """Remove from a COCO snapshot, in place, the images without annotations that are not marked done.

    Returns their ids, in increasing order.
    """
    annotated = {a["image_id"] for a in data["annotations"]}
    kept, left = [], []
    for img in data["images"]:
        if img["id"] in annotated or is_done(img):
            kept.append(img)
        else:
            left.append(img)
    data["images"] = kept
    return sorted(img["id"] for img in left)


def left_out_warning(names: List[str], shown: int = 5) -> str:
    """The export's warning for the images :func:`leave_out_unchecked` removed (``names`` not empty)."""
    listed = ", ".join(f"'{n}'" for n in names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
    return (
        f"{len(names)} image(s) with no annotations are not marked done ({listed}); left out of the export "
        "(mark an image done to export it as a negative: an empty label)"
    )
