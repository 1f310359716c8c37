"""The paper's augmentations on whole batches, on the device the UNet trains on.

Every sample gets its own random flips, rotation and crop window, drawn from a ``torch.Generator``
on that device, and all of them together become one affine map per sample from output pixels to
input pixels. One ``grid_sample`` then applies it: bilinear for the image, nearest for the mask,
so image and mask stay paired pixel for pixel. Nothing here reads a value back to the host.

Geometry (continuous pixel coordinates, pixel ``j`` spans ``[j, j + 1)``): an output pixel's offset
from the output's centre is flipped, scaled to input pixels, rotated, and added to the window's
centre in the input. A window at the frame's own scale, unrotated, therefore copies pixels exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vidseg.config import validate

__all__ = ["Augmentation", "Warp", "sample_warp", "warp", "augment"]


@dataclass(frozen=True)
class Augmentation:
    """What ``augment`` draws per sample; the defaults are the paper's."""

    crop: tuple[int, int] | None = None  # (h, w) windows at the frame's scale; None: the paper's rescaling crop
    foreground_crops: float = 0.0  # share of windows centred on a random object pixel; needs crop
    flip_p: float = 0.5  # each of horizontal and vertical
    rotate_p: float = 0.3
    rotate_degrees: float = 10.0  # uniform in +-this; corners outside the frame are filled with 0 (background)
    rescale_p: float = 0.5  # without crop: share of frames cropped to rescale_area of the frame, scaled back up
    rescale_area: tuple[float, float] = (0.6, 1.0)  # the crop keeps the frame's aspect

    def __post_init__(self) -> None:
        validate([
            (self.crop is None or (len(self.crop) == 2 and min(self.crop) >= 1),
             f"crop is {self.crop}, but must be (h, w) with h, w >= 1"),
            (0 <= self.foreground_crops <= 1 and (self.crop is not None or self.foreground_crops == 0),
             f"foreground_crops is {self.foreground_crops}, but must be in [0, 1], and 0 without a crop"),
            (0 <= self.flip_p <= 1, f"flip_p is {self.flip_p}, but must be in [0, 1]"),
            (0 <= self.rotate_p <= 1, f"rotate_p is {self.rotate_p}, but must be in [0, 1]"),
            (0 <= self.rescale_p <= 1, f"rescale_p is {self.rescale_p}, but must be in [0, 1]"),
            (0 < self.rescale_area[0] <= self.rescale_area[1] <= 1,
             f"rescale_area is {self.rescale_area}, but must be (lo, hi) with 0 < lo <= hi <= 1"),
        ])

    def out_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the augmented frames, for frames of ``size``."""
        return tuple(self.crop) if self.crop is not None else tuple(size)


@dataclass(frozen=True)
class Warp:
    """Per-sample geometry of a batch, each field (B,): output pixel -> input pixel."""

    flip_x: torch.Tensor  # bool, mirror left-right
    flip_y: torch.Tensor  # bool, mirror top-bottom
    angle: torch.Tensor  # radians
    centre_x: torch.Tensor  # the window's centre in the input, in pixels
    centre_y: torch.Tensor
    scale: torch.Tensor  # input pixels per output pixel

    @classmethod
    def identity(cls, batch: int, size: tuple[int, int], device: torch.device | str = "cpu") -> "Warp":
        """The whole frame as it is; fields may be edited (``dataclasses.replace``) for exact tests."""
        zeros = torch.zeros(batch, device=device)
        return cls(zeros.bool(), zeros.bool(), zeros, zeros + size[1] / 2, zeros + size[0] / 2, zeros + 1)


def sample_warp(masks: torch.Tensor, aug: Augmentation, generator: torch.Generator) -> Warp:
    """Random geometry for a batch of frames, given their masks (B, H, W) (foreground windows need them).

    ``generator`` must live on the masks' device; the draws are all made there, without a host sync.
    """
    batch, height, width = masks.shape
    device = masks.device
    u = torch.rand(batch, 8, generator=generator, device=device)  # one draw for every per-sample choice
    flip_x, flip_y = u[:, 0] < aug.flip_p, u[:, 1] < aug.flip_p
    angle = (u[:, 3] * 2 - 1) * math.radians(aug.rotate_degrees) * (u[:, 2] < aug.rotate_p)
    if aug.crop is not None:
        h, w = aug.crop
        # integer offsets, so an unrotated window copies pixels exactly
        top = (u[:, 4] * (height - h + 1)).floor().clamp_(max=height - h)
        left = (u[:, 5] * (width - w + 1)).floor().clamp_(max=width - w)
        if aug.foreground_crops > 0:
            # a uniformly random object pixel per frame: the largest of uniform scores on object pixels
            objects = masks.reshape(batch, -1) > 0
            scores = (torch.rand(objects.shape, generator=generator, device=device) + 1) * objects
            pick = scores.argmax(1)
            y, x = torch.div(pick, width, rounding_mode="floor"), pick % width
            on_object = (u[:, 6] < aug.foreground_crops) & objects.any(1)
            top = torch.where(on_object, (y - h // 2).clamp(0, height - h).float(), top)
            left = torch.where(on_object, (x - w // 2).clamp(0, width - w).float(), left)
        return Warp(flip_x, flip_y, angle, left + w / 2, top + h / 2, torch.ones(batch, device=device))
    lo, hi = aug.rescale_area
    rescaled = u[:, 4] < aug.rescale_p
    side = torch.where(rescaled, (lo + (hi - lo) * u[:, 5]).sqrt(), torch.ones_like(u[:, 5]))  # of the frame's
    left = u[:, 6] * width * (1 - side)
    top = u[:, 7] * height * (1 - side)
    return Warp(flip_x, flip_y, angle, left + width * side / 2, top + height * side / 2, side)


def warp(images: torch.Tensor, masks: torch.Tensor, geometry: Warp,
         out_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, C, H, W) float and masks (B, H, W) integer, resampled to (B, C, h, w), (B, h, w).

    Bilinear for images, nearest for masks; outside the frame both are 0.
    """
    batch, _, height, width = images.shape
    h, w = out_size
    g = geometry
    # offsets in input pixels per unit of the output's normalised coordinates ([-1, 1] edge to edge)
    sx = torch.where(g.flip_x, -1.0, 1.0) * g.scale * (w / 2)
    sy = torch.where(g.flip_y, -1.0, 1.0) * g.scale * (h / 2)
    cos, sin = g.angle.cos(), g.angle.sin()
    theta = torch.stack([  # (B, 2, 3): output normalised -> input normalised
        torch.stack([cos * sx * 2 / width, -sin * sy * 2 / width, g.centre_x * 2 / width - 1], -1),
        torch.stack([sin * sx * 2 / height, cos * sy * 2 / height, g.centre_y * 2 / height - 1], -1),
    ], 1).to(images.dtype)
    grid = F.affine_grid(theta, [batch, 1, h, w], align_corners=False)  # (B, h, w, 2)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    labels = F.grid_sample(masks[:, None].to(images.dtype), grid, mode="nearest", padding_mode="zeros",
                           align_corners=False)
    return images, labels[:, 0].round().to(masks.dtype)


def augment(images: torch.Tensor, masks: torch.Tensor, aug: Augmentation,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Flips, rotation and crop of a batch, drawn per sample: (B, C, H, W), (B, H, W) -> at ``aug.out_size``."""
    return warp(images, masks, sample_warp(masks, aug, generator), aug.out_size(images.shape[-2:]))
