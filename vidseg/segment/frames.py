"""Frames and masks of labeled videos, decoded and resized for the UNet, and the resizers that
pre-segmentation shares with it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset as TorchDataset

from vidseg.data.layout import FRAMES, LayoutError, Video, read_frame
from vidseg.errors import InputError

__all__ = ["resize_images", "resize_masks", "VideoFrames", "DecodeFailure"]


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Float images (..., 3, H, W) to ``size`` by area averaging (exact for integer factors)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    lead = images.shape[:-3]
    flat = images.reshape(-1, *images.shape[-3:])
    return F.interpolate(flat, size=size, mode="area").reshape(*lead, images.shape[-3], *size)


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Integer masks (..., H, W) to ``size`` by nearest neighbour, keeping the dtype."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    lead = masks.shape[:-2]
    flat = masks.reshape(-1, 1, *masks.shape[-2:]).float()
    out = F.interpolate(flat, size=size, mode="nearest")
    return out.reshape(*lead, *size).to(masks.dtype)


@dataclass(frozen=True)
class DecodeFailure:
    """A ``LayoutError`` as a DataLoader worker can send it (the error itself does not pickle)."""

    path: str
    problem: str

    def error(self) -> LayoutError:
        return LayoutError(Path(self.path), self.problem)


class VideoFrames(TorchDataset):
    """Every frame of each labeled video, resized to ``size``: item ``i`` is video ``i``'s
    ``(frames (T, H, W, 3) uint8, masks (T, H, W) uint8)``.

    A bad file gives a ``DecodeFailure`` as the item instead of raising: a DataLoader worker would
    turn the ``LayoutError`` into a RuntimeError, and the CLI's one-line message would be lost.
    """

    def __init__(self, videos: list[Video], size: tuple[int, int]) -> None:
        for video in videos:
            if not video.labeled:
                raise InputError(f"{video.path}: the {video.split} split has no masks to train on")
        self.videos = videos
        self.size = (int(size[0]), int(size[1]))

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | DecodeFailure:
        video = self.videos[index]
        try:
            frames = np.stack([read_frame(video.frame_path(t), size=None) for t in range(FRAMES[video.split])])
            masks = video.masks(size=None)  # validated: class ids 0..48
        except LayoutError as err:
            return DecodeFailure(str(err.path), err.problem)
        images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0  # (T, 3, H0, W0)
        images = resize_images(images, self.size)
        images = (images * 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()  # (T, H, W, 3)
        masks = resize_masks(torch.from_numpy(masks.astype(np.uint8)), self.size)  # (T, H, W)
        return images, masks
