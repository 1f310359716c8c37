"""Validate a dataset root in the competition's layout.

    python -m vidseg.data.check DIR

Prints counts per split, the resolution and a class summary, and exits 0 on a good dataset. On a
bad one it prints one ``error: <path>: <what is wrong>`` line per problem (up to ``--max-errors``)
and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidseg.data.classes import CLASS_NAMES
from vidseg.task import FRAME_SIZE, NUM_CLASSES
from vidseg.data.layout import FRAMES, SPLITS, LayoutError, read_frame, read_mask, walk_splits

__all__ = ["CheckReport", "check_dataset", "print_errors", "main"]


class _TooManyErrors(Exception):
    pass


@dataclass
class CheckReport:
    root: Path
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    truncated: bool = False
    class_pixels: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, dtype=np.int64))
    class_videos: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, dtype=np.int64))

    @property
    def ok(self) -> bool:
        return not self.errors


def check_dataset(root: Path | str, size: tuple[int, int] = FRAME_SIZE, max_errors: int = 50,
                  progress: bool = False) -> CheckReport:
    """Check every split, video, frame and mask; collect problems instead of stopping at one."""
    from tqdm import tqdm

    root = Path(root)
    report = CheckReport(root)

    def problem(err: LayoutError) -> None:
        if len(report.errors) >= max_errors:
            report.truncated = True
            raise _TooManyErrors
        report.errors.append(str(err))

    try:
        splits = walk_splits(root, problem)
        report.counts = {split: len(videos) for split, videos in splits.items()}
        videos = [video for split_videos in splits.values() for video in split_videos]
        for video in tqdm(videos, desc="checking", unit="video", disable=not progress, dynamic_ncols=True):
            _check_video(video, size, report, problem)
        if root.is_dir():
            _check_hidden_answers(root, report.counts.get("hidden", 0), size, problem)
    except _TooManyErrors:
        pass
    return report


def print_errors(report: CheckReport, max_errors: int, file=None) -> None:
    """One ``error: <path>: <problem>`` line per problem, and a last line if some were left out."""
    file = file or sys.stderr
    for line in report.errors:
        print(f"error: {line}", file=file)
    if report.truncated:
        print(f"error: {report.root}: more problems after the first {max_errors}", file=file)


def _check_video(video, size, report: CheckReport, problem) -> None:
    try:
        video.check_frame_count()
    except LayoutError as err:
        problem(err)
    for t in range(FRAMES[video.split]):
        path = video.frame_path(t)
        if path.exists():  # a missing frame is already reported by the frame count
            try:
                read_frame(path, size)
            except LayoutError as err:
                problem(err)
    if video.labeled:
        try:
            mask = read_mask(video.mask_path, FRAMES[video.split], size)
        except LayoutError as err:
            problem(err)
            return
        counts = np.bincount(mask.reshape(-1).astype(np.int64), minlength=NUM_CLASSES)
        report.class_pixels += counts
        report.class_videos += counts > 0
    elif video.mask_path.exists():
        problem(LayoutError(video.mask_path, f"the {video.split} split must not carry masks"))


def _check_hidden_answers(root: Path, num_hidden: int, size, problem) -> None:
    path = root / "hidden_answers.npy"
    if not path.exists():
        return
    try:
        read_mask(path, num_hidden, size)  # one target-frame mask per hidden video
    except LayoutError as err:
        problem(err)


def _summary(report: CheckReport, size: tuple[int, int]) -> str:
    lines = [f"{report.root}: ok"]
    lines.append("videos: " + ", ".join(f"{split} {report.counts[split]}" for split in SPLITS if split in report.counts))
    lines.append(f"resolution: {size[1]}x{size[0]} (WxH), frames: {FRAMES['train']} (hidden: {FRAMES['hidden']})")
    total = report.class_pixels.sum()
    if total:
        seen = int((report.class_videos[1:] > 0).sum())
        lines.append(f"classes: {seen} of {NUM_CLASSES - 1} object classes appear in the masks; "
                     f"background is {report.class_pixels[0] / total:.1%} of labeled pixels")
        top = [c for c in np.argsort(-report.class_videos[1:], kind="stable")[:5] + 1 if report.class_videos[c]]
        lines.append("most frequent: " + ", ".join(f"{CLASS_NAMES[c]} ({report.class_videos[c]} videos)" for c in top))
    return "\n".join(lines)


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HxW, e.g. {FRAME_SIZE[0]}x{FRAME_SIZE[1]}") from None
    return h, w


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vidseg.data.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="dataset root (holds train/, val/, ...)")
    parser.add_argument("--size", type=_size, default=FRAME_SIZE, metavar="HxW",
                        help=f"expected frame size (default {FRAME_SIZE[0]}x{FRAME_SIZE[1]})")
    parser.add_argument("--max-errors", type=int, default=50, help="stop after this many problems (default 50)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.max_errors < 1:
        parser.error(f"--max-errors is {args.max_errors}, but must be >= 1")
    report = check_dataset(args.root, args.size, args.max_errors, progress=not args.quiet and sys.stderr.isatty())
    if report.ok:
        print(_summary(report, args.size))
        return 0
    print_errors(report, args.max_errors)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
