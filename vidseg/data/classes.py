"""The competition's class table: background plus 3 shapes x 2 materials x 8 colours (``NUM_CLASSES``).

An object's class id is ``1 + 16*shape + 8*material + color``; class 0 is background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vidseg.task import NUM_CLASSES as TASK_CLASSES

__all__ = [
    "SHAPES",
    "MATERIALS",
    "COLORS",
    "NUM_CLASSES",
    "BACKGROUND",
    "ObjectClass",
    "class_id",
    "attributes",
    "class_name",
    "CLASS_NAMES",
    "COLOR_RGB",
    "PALETTE",
    "colorize",
]

SHAPES: tuple[str, ...] = ("cube", "sphere", "cylinder")
MATERIALS: tuple[str, ...] = ("metal", "rubber")
COLORS: tuple[str, ...] = ("gray", "red", "blue", "green", "brown", "cyan", "purple", "yellow")
NUM_CLASSES = 1 + len(SHAPES) * len(MATERIALS) * len(COLORS)
assert NUM_CLASSES == TASK_CLASSES, "the class table must have the task's class count (vidseg.task)"
BACKGROUND = 0

# The CLEVR/CLEVRER colour values (0-255), which the competition's renders follow.
COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "cyan": (41, 208, 208),
    "purple": (129, 38, 192),
    "yellow": (255, 238, 51),
}


@dataclass(frozen=True)
class ObjectClass:
    """The attribute triple of one object class."""

    shape: str
    material: str
    color: str

    @property
    def class_id(self) -> int:
        return class_id(self.shape, self.material, self.color)


def class_id(shape: str, material: str, color: str) -> int:
    """Return the class id of an attribute triple, e.g. ``class_id("sphere", "rubber", "red") == 26``."""
    for value, options, what in ((shape, SHAPES, "shape"), (material, MATERIALS, "material"), (color, COLORS, "color")):
        if value not in options:
            raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(options)}")
    return 1 + 16 * SHAPES.index(shape) + 8 * MATERIALS.index(material) + COLORS.index(color)


def attributes(cid: int) -> ObjectClass:
    """Return the attribute triple of an object class id (1..48)."""
    if not 1 <= cid < NUM_CLASSES:
        raise ValueError(f"class id {cid} is not an object class; valid: 1..{NUM_CLASSES - 1}")
    k = cid - 1
    return ObjectClass(SHAPES[k // 16], MATERIALS[(k // 8) % 2], COLORS[k % 8])


def class_name(cid: int) -> str:
    """``"background"`` for 0, else e.g. ``"red rubber sphere"``."""
    if cid == BACKGROUND:
        return "background"
    a = attributes(cid)
    return f"{a.color} {a.material} {a.shape}"


CLASS_NAMES: tuple[str, ...] = tuple(class_name(c) for c in range(NUM_CLASSES))


def _palette() -> np.ndarray:
    # Drawing colours: the object's own colour, darker for rubber, and shapes told apart by
    # a small shift so that all 48 object classes get distinct RGB values.
    pal = np.zeros((NUM_CLASSES, 3), dtype=np.uint8)
    pal[BACKGROUND] = (0, 0, 0)
    for cid in range(1, NUM_CLASSES):
        a = attributes(cid)
        rgb = np.array(COLOR_RGB[a.color], dtype=np.int32)
        if a.material == "rubber":
            rgb = rgb * 3 // 4
        rgb = rgb + (SHAPES.index(a.shape) - 1) * 12
        pal[cid] = np.clip(rgb, 16, 255)
    return pal


PALETTE: np.ndarray = _palette()
"""(NUM_CLASSES, 3) uint8: one distinct RGB colour per class, black for background."""


def colorize(mask: np.ndarray) -> np.ndarray:
    """Map an integer mask (..., H, W) to RGB (..., H, W, 3) with :data:`PALETTE`."""
    return PALETTE[np.asarray(mask, dtype=np.int64)]
