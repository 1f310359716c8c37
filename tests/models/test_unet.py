import pytest
import torch

from vidseg.models import UNet


def reference_parameter_count(n_channels: int, n_classes: int, w: int) -> int:
    """Counted by hand from milesial/Pytorch-UNet's layers (bilinear=False)."""
    def double_conv(cin, cout):  # two bias-free 3x3 convs, two BatchNorms (weight + bias)
        return 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout

    def up(cin, cout):  # ConvTranspose2d(cin, cin // 2, 2, stride 2) with bias, then DoubleConv(cin, cout)
        return 4 * cin * (cin // 2) + cin // 2 + double_conv(cin, cout)

    total = double_conv(n_channels, w)
    total += double_conv(w, 2 * w) + double_conv(2 * w, 4 * w) + double_conv(4 * w, 8 * w) + double_conv(8 * w, 16 * w)
    total += up(16 * w, 8 * w) + up(8 * w, 4 * w) + up(4 * w, 2 * w) + up(2 * w, w)
    total += w * n_classes + n_classes
    return total


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_full_width_is_the_papers_model():
    model = UNet(n_channels=3, n_classes=49, bilinear=False, width=64)
    assert count(model) == reference_parameter_count(3, 49, 64) == 31_040_753
    assert count(UNet(3, 2, bilinear=False)) == 31_037_698  # the reference's well-known 31.0M
    assert isinstance(model.up1.up, torch.nn.ConvTranspose2d)


@pytest.mark.parametrize("size", [(160, 240), (80, 120), (40, 60), (37, 53)])
def test_output_shape_matches_input_for_any_size(size):
    model = UNet(width=4).eval()
    with torch.inference_mode():
        out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, 49, *size)


def test_width_scales_the_net():
    assert count(UNet(width=8)) == reference_parameter_count(3, 49, 8)
    assert count(UNet(width=8)) < count(UNet(width=16)) < count(UNet(width=64))


@pytest.mark.parametrize("width", [0, 3, -2])
def test_bad_width_is_refused(width):
    with pytest.raises(ValueError, match=f"width is {width}"):
        UNet(width=width)
