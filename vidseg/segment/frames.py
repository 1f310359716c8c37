"""Frames and masks of labeled videos, decoded and resized for the UNet, and the resizers that
pre-segmentation shares with it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset as TorchDataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from vidseg.data.layout import FRAMES, LayoutError, Video, read_frame

__all__ = ["resize_images", "resize_masks", "VideoFrames", "DecodeFailure", "FrameDataset", "augmentation"]


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
                raise ValueError(f"{video.path}: the {video.split} split has no masks to train on")
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


def augmentation(size: tuple[int, int], rotate_degrees: float = 10.0,
                 crop: tuple[int, int] | None = None) -> v2.Transform:
    """The paper's augmentation, applied to image and mask together: flips, crops, rotations.

    With ``crop``, every sample is a random ``crop``-sized window of the frame, at the frame's own
    scale; without, half the frames are cropped and scaled back up to ``size``.
    """
    fill = {tv_tensors.Image: 0.0, tv_tensors.Mask: 0}
    if crop is not None:
        cropping = v2.RandomCrop(crop)
    else:
        cropping = v2.RandomApply([v2.RandomResizedCrop(size, scale=(0.6, 1.0), ratio=(size[1] / size[0],) * 2,
                                                        antialias=True)], p=0.5)
    return v2.Compose([
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        v2.RandomApply([v2.RandomRotation(rotate_degrees, fill=fill)], p=0.3),
        cropping,
    ])


class FrameDataset(TorchDataset):
    """Every (video, frame) of some labeled videos: ``(image (3, H, W) float 0..1, mask (H, W) int64)``.

    Frames are decoded on demand (DataLoader workers parallelise that) and resized to ``size``.
    """

    def __init__(self, videos: list[Video], size: tuple[int, int], frames: list[int] | None = None,
                 augment: bool = False, crop: tuple[int, int] | None = None,
                 foreground_crops: float = 0.0) -> None:
        for video in videos:
            if not video.labeled:
                raise ValueError(f"{video.path}: the {video.split} split has no masks to train on")
        self.videos = videos
        self.size = tuple(size)
        self.frames = list(range(22)) if frames is None else list(frames)
        if crop is not None and not augment:
            raise ValueError("crop needs augment: the crops are random")
        if foreground_crops and crop is None:
            raise ValueError("foreground_crops needs crop")
        self.crop = crop
        self.foreground_crops = foreground_crops
        self.transform = augmentation(self.size, crop=crop) if augment else None

    def __len__(self) -> int:
        return len(self.videos) * len(self.frames)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        video = self.videos[index // len(self.frames)]
        t = self.frames[index % len(self.frames)]
        image = torch.from_numpy(read_frame(video.frame_path(t), size=None)).permute(2, 0, 1).float() / 255.0
        mask = np.load(video.mask_path, mmap_mode="r")[t]
        mask = torch.from_numpy(np.asarray(mask, dtype=np.int64))
        image = resize_images(image, self.size)
        mask = resize_masks(mask, self.size)
        if self.foreground_crops and torch.rand(()) < self.foreground_crops:
            image, mask = self._around_an_object(image, mask)
        if self.transform is not None:
            image, mask = self.transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
            image, mask = image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)
        return image, mask

    def _around_an_object(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A ``crop`` window centred (where the frame allows) on a random object pixel, as nnU-Net
        oversamples foreground: objects cover about 2% of a frame, so random crops are mostly floor.
        The augmentation's own random crop then leaves this window as it is."""
        objects = mask.nonzero()
        if len(objects) == 0:
            return image, mask
        y, x = objects[torch.randint(len(objects), ())].tolist()
        (h, w), (height, width) = self.crop, mask.shape
        top = min(max(y - h // 2, 0), height - h)
        left = min(max(x - w // 2, 0), width - w)
        return image[:, top:top + h, left:left + w], mask[top:top + h, left:left + w]
