"""Which images an export writes: every annotated image, and the negatives.

A *negative* is an image the user checked and found empty: its record in the
working file has no annotations and the extra field ``"state": "done"``
(:mod:`annotator.data.image_states`; the window's image states write it, and
:func:`annotator.data.formats.importing.apply_plan` sets it on an image whose
imported label file lists nothing). Exports write a negative as the format's
empty label: an empty YOLO label file, an all-background VOC PNG, an all-zero
mask PNG, a labelme JSON with no shapes, a COCO image with no annotations.

An image with no annotations that is *not* marked done (``"todo"``, or no
state: every annotation deleted) has not been checked; writing it as a
negative would teach a trainer that nothing is there, so the export leaves it
out and says so. An image marked ``"skipped"`` was left out on purpose
(blurred, off-topic...): the export leaves it out with its annotations, and
says so (:func:`leave_out`).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List

from annotator.data.image_states import DONE, SKIPPED, STATE_FIELD

__all__ = ["is_done", "leave_out"]


def is_done(image: Dict[str, Any]) -> bool:
    """``image`` (a COCO image dict or an image record's ``extra``) is marked done."""
    return image.get(STATE_FIELD) == DONE


def leave_out(data: Dict[str, Any], name_of: Callable[[int], str]) -> List[str]:
    """Remove from a COCO snapshot, in place, the skipped images and the unchecked ones (see the module notes).

    ``name_of(image_id)`` names an image in the warnings (the working file's
    ``file_name``). Returns one warning per kind of image left out (none when
    nothing was).
    """
    annotated: Dict[int, int] = {}
    for a in data["annotations"]:
        annotated[a["image_id"]] = annotated.get(a["image_id"], 0) + 1
    kept, skipped, unchecked = [], [], []
    for img in sorted(data["images"], key=lambda img: img["id"]):
        if img.get(STATE_FIELD) == SKIPPED:
            skipped.append(img["id"])
        elif img["id"] in annotated or is_done(img):
            kept.append(img)
        else:
            unchecked.append(img["id"])
    data["images"] = kept
    warnings = []
    if skipped:
        dropped = set(skipped)
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] not in dropped]
        n = sum(annotated.get(i, 0) for i in skipped)
        warnings.append(f"{len(skipped)} image(s) marked skipped ({_listed(skipped, name_of)}) left out of the "
                        f"export, with their {n} annotation(s)")
    if unchecked:
        warnings.append(f"{len(unchecked)} image(s) with no annotations are not marked done "
                        f"({_listed(unchecked, name_of)}); left out of the export (mark an image done to export "
                        "it as a negative: an empty label)")
    return warnings


def _listed(ids: List[int], name_of: Callable[[int], str], shown: int = 5) -> str:
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(f"'{name_of(i)}'" for i in ids[:shown]) + more
