import pytest
import torch
import torch.nn.functional as F

from vidseg.train.codec import encode_inputs, predict_masks
from vidseg.train.losses import compute_loss


def test_encodings():
    masks = torch.tensor([[[[0, 5], [48, 1]]]])  # (B=1, T=1, 2, 2)
    ids = encode_inputs(masks, "mse")
    assert ids.shape == (1, 1, 1, 2, 2) and ids[0, 0, 0].tolist() == [[0.0, 5.0], [48.0, 1.0]]
    one_hot = encode_inputs(masks, "ce")
    assert one_hot.shape == (1, 1, 49, 2, 2)
    assert one_hot[0, 0, 48, 1, 0] == 1 and one_hot[0, 0].sum(0).eq(1).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_encodings_in_the_compute_dtype_match_one_hot(dtype):
    masks = torch.randint(0, 49, (2, 3, 5, 7), dtype=torch.uint8)
    one_hot = encode_inputs(masks, "ce", dtype)
    assert one_hot.dtype == dtype
    assert torch.equal(one_hot, F.one_hot(masks.long(), 49).permute(0, 1, 4, 2, 3).to(dtype))
    ids = encode_inputs(masks, "mse", dtype)  # bf16 holds 0..48 exactly
    assert ids.dtype == dtype and torch.equal(ids[:, :, 0].long(), masks.long())


def test_weighted_ce_scales_the_last_frame_and_normalises():
    g = torch.Generator().manual_seed(0)
    output = torch.randn(2, 3, 49, 4, 4, generator=g)
    target = torch.randint(0, 49, (2, 3, 4, 4), generator=g)
    frames = [F.cross_entropy(output[:, t], target[:, t]) for t in range(3)]
    expected = (frames[0] + frames[1] + 4.0 * frames[2]) / 6.0
    assert float(compute_loss(output, target, "weighted_ce", 4.0)) == pytest.approx(float(expected), rel=1e-5)
    assert float(compute_loss(output, target, "weighted_ce", 1.0)) == pytest.approx(
        float(compute_loss(output, target, "ce")), rel=1e-6)
    assert float(compute_loss(output, target, "ce")) == pytest.approx(
        float(F.cross_entropy(output.flatten(0, 1), target.flatten(0, 1))), rel=1e-6)


def test_mse_and_its_predictions():
    output = torch.tensor([-3.0, 0.4, 2.6, 47.9, 60.0]).reshape(1, 1, 1, 1, 5)
    target = torch.tensor([0, 0, 3, 48, 48]).reshape(1, 1, 1, 5)
    assert float(compute_loss(output, target, "mse")) == pytest.approx(
        float(((output.flatten() - target.flatten().float()) ** 2).mean()))
    assert predict_masks(output, "mse", "floor").flatten().tolist() == [0, 0, 2, 47, 48]
    assert predict_masks(output, "mse", "round").flatten().tolist() == [0, 0, 3, 48, 48]


def test_ce_prediction_is_argmax():
    output = torch.zeros(1, 2, 49, 1, 1)
    output[0, 0, 7], output[0, 1, 30] = 5.0, 2.0
    assert predict_masks(output, "ce").flatten().tolist() == [7, 30]
