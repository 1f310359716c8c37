"""Models: pure ``nn.Module``s, no I/O."""

from vidseg.models.unet import UNet

__all__ = ["UNet"]
