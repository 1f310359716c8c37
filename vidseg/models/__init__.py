"""Models: pure ``nn.Module``s, no I/O."""

from vidseg.models.simvp import SimVP
from vidseg.models.unet import UNet

__all__ = ["SimVP", "UNet"]
