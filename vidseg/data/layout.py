"""Reads a dataset root in the competition's layout, real or synthetic alike.

    DIR/train/video_00000/     image_0.png ... image_21.png  mask.npy
    DIR/val/video_01000/       image_0.png ... image_21.png  mask.npy
    DIR/unlabeled/video_02000/ image_0.png ... image_21.png
    DIR/hidden/video_15000/    image_0.png ... image_10.png

Folder numbers may or may not be zero-padded; videos are ordered numerically. Frames are RGB
(an alpha channel is dropped); masks may have any integer dtype and hold class ids 0..48.
Every problem raises :class:`LayoutError`, whose message names the file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vidseg.errors import InputError
from vidseg.task import FRAME_SIZE, INPUT_FRAMES, NUM_CLASSES, TOTAL_FRAMES

__all__ = [
    "SPLITS",
    "LABELED_SPLITS",
    "video_name",
    "walk_splits",
    "FRAMES",
    "FRAME_SIZE",
    "LayoutError",
    "Video",
    "Dataset",
    "read_frame",
    "read_mask",
    "list_videos",
]

SPLITS = ("train", "val", "unlabeled", "hidden")
LABELED_SPLITS = ("train", "val")  # these carry mask.npy, and a dataset root must have both
FRAMES = {"train": TOTAL_FRAMES, "val": TOTAL_FRAMES, "unlabeled": TOTAL_FRAMES, "hidden": INPUT_FRAMES}
_VIDEO_RE = re.compile(r"video_(\d+)")
_FRAME_RE = re.compile(r"image_(0|[1-9]\d*)\.png")  # image_5.png, never image_05.png


class LayoutError(InputError):
    """A dataset file or folder is missing or malformed; ``path`` names it."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def read_frame(path: Path, size: tuple[int, int] | None = FRAME_SIZE) -> np.ndarray:
    """One frame as uint8 RGB (H, W, 3); alpha, palette and greyscale PNGs are converted."""
    try:
        with Image.open(path) as image:
            image.load()
            rgb = np.array(image.convert("RGB"))
    except FileNotFoundError:
        raise LayoutError(path, "missing frame") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise LayoutError(path, f"unreadable PNG ({err})") from None
    if size is not None and rgb.shape[:2] != tuple(size):
        raise LayoutError(path, f"frame is {rgb.shape[1]}x{rgb.shape[0]}, expected {size[1]}x{size[0]} (WxH)")
    return rgb


def read_mask(path: Path, num_frames: int = TOTAL_FRAMES, size: tuple[int, int] | None = FRAME_SIZE,
              check_values: bool = True) -> np.ndarray:
    """A video's masks (T, H, W) in their stored integer dtype, validated."""
    try:
        mask = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise LayoutError(path, "missing mask") from None
    except (OSError, ValueError, EOFError) as err:
        raise LayoutError(path, f"unreadable .npy ({err})") from None
    if not isinstance(mask, np.ndarray):
        raise LayoutError(path, "not a .npy array (an .npz archive?)")
    if not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == np.bool_):
        raise LayoutError(path, f"mask dtype is {mask.dtype}, expected an integer dtype")
    expected = (num_frames, *size) if size is not None else None
    if mask.ndim != 3 or (expected and mask.shape != expected) or (not expected and mask.shape[0] != num_frames):
        want = expected if expected else f"({num_frames}, H, W)"
        raise LayoutError(path, f"mask shape is {mask.shape}, expected {want}")
    if check_values and mask.size:
        lo, hi = int(mask.min()), int(mask.max())
        if lo < 0 or hi >= NUM_CLASSES:
            raise LayoutError(path, f"class ids span {lo}..{hi}, expected 0..{NUM_CLASSES - 1}")
    return mask


@dataclass(frozen=True)
class Video:
    """One video folder. Frames and masks are read on demand."""

    split: str
    video_id: int
    path: Path

    @property
    def num_frames(self) -> int:
        return FRAMES[self.split]

    @property
    def labeled(self) -> bool:
        return self.split in LABELED_SPLITS

    def frame_path(self, t: int) -> Path:
        return self.path / f"image_{t}.png"

    @property
    def mask_path(self) -> Path:
        return self.path / "mask.npy"

    def frame_indices(self) -> list[int]:
        """The frame numbers present on disk, sorted."""
        found = []
        for entry in self.path.iterdir():
            m = _FRAME_RE.fullmatch(entry.name)
            if m:
                found.append(int(m.group(1)))
        return sorted(found)

    def check_frame_count(self) -> None:
        found = self.frame_indices()
        if found != list(range(self.num_frames)):
            missing = sorted(set(range(self.num_frames)) - set(found))
            extra = sorted(set(found) - set(range(self.num_frames)))
            detail = []
            if missing:
                detail.append(f"missing image_{missing[0]}.png" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
            if extra:
                detail.append(f"unexpected image_{extra[0]}.png" + (f" and {len(extra) - 1} more" if len(extra) > 1 else ""))
            raise LayoutError(self.path, f"has {len(found)} frames, expected {self.num_frames} ({'; '.join(detail)})")

    def frames(self, size: tuple[int, int] | None = FRAME_SIZE, count: int | None = None) -> np.ndarray:
        """Frames 0..count-1 as uint8 (T, H, W, 3)."""
        self.check_frame_count()
        count = self.num_frames if count is None else count
        return np.stack([read_frame(self.frame_path(t), size) for t in range(count)])

    def masks(self, size: tuple[int, int] | None = FRAME_SIZE) -> np.ndarray:
        """The true masks (TOTAL_FRAMES, H, W); only train and val have them."""
        if not self.labeled:
            raise LayoutError(self.path, f"the {self.split} split has no masks")
        return read_mask(self.mask_path, FRAMES[self.split], size)


def video_name(video_id: int) -> str:
    """The zero-padded folder name this project writes, e.g. ``video_00042``."""
    return f"video_{video_id:05d}"


def _raise(err: LayoutError) -> None:
    raise err


def list_videos(split_dir: Path, split: str, on_error: Callable[[LayoutError], None] = _raise) -> list[Video]:
    """The videos of one split folder, ordered numerically; hidden entries (".*") are ignored.

    Each bad entry goes to ``on_error`` (by default raised) and is left out.
    """
    videos: dict[int, Video] = {}
    for entry in sorted(split_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        m = _VIDEO_RE.fullmatch(entry.name)
        if not m or not entry.is_dir():
            on_error(LayoutError(entry, "unexpected entry; a split holds only video_<N> folders"))
            continue
        vid = int(m.group(1))
        if vid in videos:
            on_error(LayoutError(entry, f"video number {vid} also used by {videos[vid].path.name}"))
            continue
        videos[vid] = Video(split, vid, entry)
    return [videos[k] for k in sorted(videos)]


def walk_splits(root: Path, on_error: Callable[[LayoutError], None] = _raise) -> dict[str, list[Video]]:
    """The videos of each split folder present under ``root``.

    ``train`` and ``val`` must exist; ``unlabeled`` and ``hidden`` are optional. A split folder
    that exists must hold at least one video. Problems go to ``on_error`` (by default raised).
    """
    if not root.is_dir():
        on_error(LayoutError(root, "no such dataset folder" if not root.exists() else "not a folder"))
        return {}
    splits: dict[str, list[Video]] = {}
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            if split in LABELED_SPLITS:
                on_error(LayoutError(split_dir, f"missing {split} split"))
            continue
        videos = list_videos(split_dir, split, on_error)
        if not videos and not any(not e.name.startswith(".") for e in split_dir.iterdir()):
            on_error(LayoutError(split_dir, "empty split: no video_<N> folders"))
        splits[split] = videos
    return splits


@dataclass(frozen=True)
class Dataset:
    """A dataset root: the videos of each split that is present."""

    root: Path
    splits: dict[str, list[Video]]

    @classmethod
    def open(cls, root: Path | str) -> "Dataset":
        """List a root's splits and videos (see :func:`walk_splits`); raises :class:`LayoutError`."""
        root = Path(root)
        return cls(root, walk_splits(root))

    def videos(self, split: str) -> list[Video]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        return self.splits.get(split, [])

    @property
    def hidden_answers_path(self) -> Path:
        return self.root / "hidden_answers.npy"
