"""Each labeled split's frames decoded once, resized to the UNet's size, into memory-mapped .npy files.

    CACHE_DIR/train-80x120-images.npy  (N, frames, H, W, 3) uint8, RGB
    CACHE_DIR/train-80x120-masks.npy   (N, frames, H, W) uint8, class ids
    CACHE_DIR/train-80x120.json        what was decoded: video ids, size, a fingerprint of the files

The UNet then gathers batches from these arrays instead of decoding PNGs every step. Both arrays
are written to temporary names and renamed into place, and the json comes last, so a cache whose
json matches is whole. A cache that does not match (other videos, other size, files changed
since, or truncated) is rebuilt. Pixels are stored as frames would be stored: HWC, so a batch
gathered from them is already channels_last once permuted to NCHW.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from vidseg.atomic import atomic_path
from vidseg.data.layout import FRAMES, Video
from vidseg.segment.frames import DecodeFailure, VideoFrames
from vidseg.task import TOTAL_FRAMES

__all__ = ["FrameCache", "frame_cache", "DeviceFrames", "frame_index"]

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def _fingerprint(videos: list[Video]) -> str:
    """Hash of every video file's name, size and mtime: a regenerated dataset makes a new cache."""
    digest = hashlib.sha256()
    for video in videos:
        digest.update(f"{video.split}/{video.video_id}\n".encode())
        for entry in sorted(os.scandir(video.path), key=lambda e: e.name):
            if entry.is_file():
                stat = entry.stat()
                digest.update(f"{entry.name} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class FrameCache:
    """A split's decoded frames, memory-mapped (copy-on-write: torch may view them, writes stay private)."""

    images: np.ndarray  # (N, T, H, W, 3) uint8
    masks: np.ndarray  # (N, T, H, W) uint8
    video_ids: tuple[int, ...]
    json_path: Path

    @property
    def num_frames(self) -> int:
        return self.images.shape[1]

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.images.shape[2:4])


def _paths(cache_dir: Path, name: str) -> tuple[Path, Path, Path]:
    return cache_dir / f"{name}-images.npy", cache_dir / f"{name}-masks.npy", cache_dir / f"{name}.json"


def _key(videos: list[Video], size: tuple[int, int]) -> dict:
    return {"version": CACHE_VERSION, "split": videos[0].split if videos else None, "size": list(size),
            "frames": FRAMES[videos[0].split] if videos else 0, "video_ids": [v.video_id for v in videos],
            "fingerprint": _fingerprint(videos)}


def _open(cache_dir: Path, name: str, key: dict) -> FrameCache | None:
    """The cache if it is whole and was built from exactly these videos at this size, else None."""
    images_path, masks_path, json_path = _paths(cache_dir, name)
    try:
        meta = json.loads(json_path.read_text())
        if {k: meta.get(k) for k in key} != key:
            return None
        if (images_path.stat().st_size, masks_path.stat().st_size) != (meta["images_bytes"], meta["masks_bytes"]):
            log.warning("rebuilding the frame cache %s: its arrays are not the size it recorded", json_path)
            return None
        images = np.load(images_path, mmap_mode="c")
        masks = np.load(masks_path, mmap_mode="c")
    except (OSError, ValueError, KeyError, TypeError):  # missing, unreadable or truncated: rebuild
        return None
    n, t, (h, w) = len(key["video_ids"]), key["frames"], key["size"]
    if (images.shape, masks.shape, images.dtype, masks.dtype) != ((n, t, h, w, 3), (n, t, h, w), np.uint8, np.uint8):
        return None
    return FrameCache(images, masks, tuple(key["video_ids"]), json_path)


def _build(videos: list[Video], size: tuple[int, int], cache_dir: Path, name: str, key: dict, workers: int,
           progress: bool) -> None:
    from tqdm import tqdm

    images_path, masks_path, json_path = _paths(cache_dir, name)
    cache_dir.mkdir(parents=True, exist_ok=True)
    json_path.unlink(missing_ok=True)  # from here on the arrays on disk are not trusted
    for pattern in (f".{name}-*.npy.tmp*", f".{name}.json.tmp*"):  # half-written by a killed run
        for stale in cache_dir.glob(pattern):
            stale.unlink(missing_ok=True)
    n, t, (h, w) = len(videos), key["frames"], tuple(size)
    loader = DataLoader(VideoFrames(videos, size), batch_size=None, num_workers=min(workers, n))
    started = time.perf_counter()
    with atomic_path(images_path, suffix=".npy") as images_tmp, atomic_path(masks_path, suffix=".npy") as masks_tmp:
        images = np.lib.format.open_memmap(images_tmp, mode="w+", dtype=np.uint8, shape=(n, t, h, w, 3))
        masks = np.lib.format.open_memmap(masks_tmp, mode="w+", dtype=np.uint8, shape=(n, t, h, w))
        bar = tqdm(loader, total=n, desc=f"decoding {name} frames", unit="video", disable=not progress,
                   leave=False, dynamic_ncols=True)
        for index, item in enumerate(bar):
            if isinstance(item, DecodeFailure):
                raise item.error()
            images[index], masks[index] = item[0].numpy(), item[1].numpy()
        images.flush()
        masks.flush()
        del images, masks  # close the maps before the rename
    meta = {**key, "images_bytes": images_path.stat().st_size, "masks_bytes": masks_path.stat().st_size}
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(meta))
    log.info("decoded %d %s videos at %dx%d into %s (%.0f s)", n, key["split"], h, w, images_path,
             time.perf_counter() - started)


def frame_cache(videos: list[Video], size: tuple[int, int], cache_dir: Path | str, workers: int = 0,
                progress: bool = True) -> FrameCache:
    """The cache of these labeled videos' frames at ``size`` (H, W) in ``cache_dir``, built if
    missing or stale. ``workers`` DataLoader processes decode the PNGs (0: this process)."""
    if not videos:
        raise ValueError("a frame cache needs at least one video")
    cache_dir, size = Path(cache_dir), (int(size[0]), int(size[1]))
    name = f"{videos[0].split}-{size[0]}x{size[1]}"
    key = _key(videos, size)
    cache = _open(cache_dir, name, key)
    if cache is not None:
        log.info("reusing the frame cache %s", cache.json_path)
        return cache
    _build(videos, size, cache_dir, name, key, workers, progress)
    cache = _open(cache_dir, name, key)
    if cache is None:
        raise OSError(f"{cache_dir / name}.json: the frame cache just written does not read back")
    return cache


def frame_index(num_videos: int, frames: range | list[int], num_frames: int = TOTAL_FRAMES) -> torch.Tensor:
    """Flat indices ``video * num_frames + t`` (int64) of the given frames of every video, video-major."""
    t = torch.as_tensor(list(frames), dtype=torch.int64)
    return (torch.arange(num_videos, dtype=torch.int64)[:, None] * num_frames + t[None, :]).reshape(-1)


class DeviceFrames:
    """A frame cache as seen from ``device``: ``take(index)`` gathers a batch of frames there.

    On CUDA the whole cache moves to GPU memory once when it takes at most ``resident_share`` of
    the free memory (a 1000-video split at the full frame size is 3.4 GB), so a step reads no host memory at
    all; otherwise each batch is gathered into pinned memory and copied without blocking. On the
    CPU the batch is gathered straight from the memory map.
    """

    def __init__(self, cache: FrameCache, device: torch.device, resident_share: float = 0.25) -> None:
        self.device = device
        self.images = torch.from_numpy(cache.images).flatten(0, 1)  # (N*T, H, W, 3) uint8, a view of the map
        self.masks = torch.from_numpy(cache.masks).flatten(0, 1)  # (N*T, H, W) uint8
        self.pinned = False
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if self.images.nbytes + self.masks.nbytes <= resident_share * free:
                self.images, self.masks = self.images.to(device), self.masks.to(device)
            else:
                self.pinned = True
        log.debug("frames of %s on %s: %s", cache.json_path.name, device, "pinned host" if self.pinned else "there")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def index_device(self) -> torch.device:
        """Where ``take``'s index should live (move an epoch's order there once, not every step)."""
        return self.images.device

    def take(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames ``index`` (B,) as ``(images (B, H, W, 3) uint8, masks (B, H, W) uint8)`` on the device."""
        if not self.pinned:
            images, masks = self.images[index], self.masks[index]
            return images.to(self.device, non_blocking=True), masks.to(self.device, non_blocking=True)
        images = torch.empty((len(index), *self.images.shape[1:]), dtype=torch.uint8, pin_memory=True)
        masks = torch.empty((len(index), *self.masks.shape[1:]), dtype=torch.uint8, pin_memory=True)
        torch.index_select(self.images, 0, index, out=images)
        torch.index_select(self.masks, 0, index, out=masks)
        return images.to(self.device, non_blocking=True), masks.to(self.device, non_blocking=True)
