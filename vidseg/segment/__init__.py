"""The segmentation stage: train the UNet on frames, then pre-segment every split into Arrow shards.

    python -m vidseg.segment --data DIR --out SHARDS_DIR [--epochs E] [--width W] [--size HxW]
"""

from vidseg.segment.train import UNetConfig, UNetResult, load_unet, train_unet

__all__ = ["UNetConfig", "UNetResult", "load_unet", "train_unet"]
