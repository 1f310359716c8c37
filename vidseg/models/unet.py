"""UNet for per-frame segmentation: the architecture of milesial/Pytorch-UNet, which the paper used.

At ``width=64`` it is that model layer for layer (DoubleConv, four Down, four Up, OutConv). A
smaller ``width`` scales every channel count, so CPU runs can use a narrow net.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from vidseg.task import NUM_CLASSES


__all__ = ["DoubleConv", "Down", "Up", "OutConv", "UNet"]


class DoubleConv(nn.Module):
    """(conv 3x3 => BN => ReLU) twice."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None) -> None:
        super().__init__()
        mid_channels = mid_channels or out_channels
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Down(nn.Module):
    """Max-pool by 2, then DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    """Upsample by 2 (transposed conv, or bilinear), pad to the skip's size, concat, DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool = False) -> None:
        super().__init__()
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(in_channels, out_channels, in_channels // 2)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        x1 = self.up(x1)
        # Odd sizes (e.g. 15 -> 7 -> 14) leave the upsampled map short of the skip: pad it.
        diff_y = x2.size(2) - x1.size(2)
        diff_x = x2.size(3) - x1.size(3)
        x1 = F.pad(x1, [diff_x // 2, diff_x - diff_x // 2, diff_y // 2, diff_y - diff_y // 2])
        return self.conv(torch.cat([x2, x1], dim=1))


class OutConv(nn.Module):
    """1x1 conv to class logits."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class UNet(nn.Module):
    """``UNet(n_channels=3, n_classes=NUM_CLASSES, bilinear=False, width=64)``: (B, C, H, W) -> (B, classes, H, W) logits."""

    def __init__(self, n_channels: int = 3, n_classes: int = NUM_CLASSES, bilinear: bool = False, width: int = 64) -> None:
        super().__init__()
        if width < 2 or width % 2:
            raise ValueError(f"width is {width}, but must be an even number >= 2")
        if n_channels < 1 or n_classes < 2:
            raise ValueError(f"need n_channels >= 1 and n_classes >= 2, got {n_channels} and {n_classes}")
        self.n_channels, self.n_classes, self.bilinear, self.width = n_channels, n_classes, bilinear, width
        w = width
        factor = 2 if bilinear else 1
        self.inc = DoubleConv(n_channels, w)
        self.down1 = Down(w, 2 * w)
        self.down2 = Down(2 * w, 4 * w)
        self.down3 = Down(4 * w, 8 * w)
        self.down4 = Down(8 * w, 16 * w // factor)
        self.up1 = Up(16 * w, 8 * w // factor, bilinear)
        self.up2 = Up(8 * w, 4 * w // factor, bilinear)
        self.up3 = Up(4 * w, 2 * w // factor, bilinear)
        self.up4 = Up(2 * w, w, bilinear)
        self.outc = OutConv(w, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)  # (B, w, H, W)
        x2 = self.down1(x1)  # (B, 2w, H/2, W/2)
        x3 = self.down2(x2)  # (B, 4w, H/4, W/4)
        x4 = self.down3(x3)  # (B, 8w, H/8, W/8)
        x5 = self.down4(x4)  # (B, 16w/f, H/16, W/16)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)  # (B, w, H, W)
        return self.outc(x)  # (B, n_classes, H, W)
