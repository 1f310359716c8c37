"""Batched augmentation: exact geometry, image and mask paired, the paper's rates, foreground windows."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from vidseg.data.layout import Dataset
from vidseg.segment.augment import Augmentation, Warp, augment, sample_warp, warp
from vidseg.segment.cache import frame_cache


def _ids_batch(batch: int, size: tuple[int, int], block: int = 1, seed: int = 0):
    """Masks of random class ids in ``block``-sized squares, and images whose channels all hold id / 255."""
    generator = torch.Generator().manual_seed(seed)
    h, w = size
    ids = torch.randint(0, 49, (batch, -(-h // block), -(-w // block)), generator=generator)
    ids = ids.repeat_interleave(block, 1).repeat_interleave(block, 2)[:, :h, :w]
    return (ids.float() / 255)[:, None].expand(-1, 3, -1, -1).contiguous(), ids


def test_warp_moves_pixels_exactly():
    images, masks = _ids_batch(2, (6, 8))
    identity = Warp.identity(2, (6, 8))
    out_images, out_masks = warp(images, masks, identity, (6, 8))
    assert torch.equal(out_masks, masks) and torch.allclose(out_images, images, atol=1e-5)

    flipped = dataclasses.replace(identity, flip_x=torch.tensor([True, False]), flip_y=torch.tensor([False, True]))
    _, out_masks = warp(images, masks, flipped, (6, 8))
    assert torch.equal(out_masks[0], masks[0].flip(-1)) and torch.equal(out_masks[1], masks[1].flip(-2))

    windows = dataclasses.replace(identity, centre_x=torch.tensor([1 + 2.0, 4 + 2.0]),
                                  centre_y=torch.tensor([0 + 1.5, 3 + 1.5]))  # 3x4 windows at (0, 1), (3, 4)
    out_images, out_masks = warp(images, masks, windows, (3, 4))
    assert torch.equal(out_masks[0], masks[0, 0:3, 1:5]) and torch.equal(out_masks[1], masks[1, 3:6, 4:8])
    assert torch.allclose(out_images[:, 0] * 255, out_masks.float(), atol=1e-3)

    square_images, square = _ids_batch(1, (6, 6))
    quarter = dataclasses.replace(Warp.identity(1, (6, 6)), angle=torch.tensor([math.pi / 2]))
    out_images, out_masks = warp(square_images, square, quarter, (6, 6))
    assert torch.equal(out_masks[0], torch.rot90(square[0], 1))  # a rotation is rigid: no pixel lost
    assert torch.allclose(out_images[0, 0] * 255, out_masks[0].float(), atol=1e-3)

    tilted = dataclasses.replace(Warp.identity(1, (6, 6)), angle=torch.tensor([math.radians(30)]))
    _, out_masks = warp(square_images, square, tilted, (6, 6))
    assert out_masks[0, 0, 0] == 0 and out_masks[0, -1, -1] == 0  # corners from outside the frame: background


@pytest.mark.parametrize("crop", [(16, 24), None])
def test_augment_keeps_image_and_mask_paired(crop):
    images, masks = _ids_batch(64, (32, 48))
    generator = torch.Generator().manual_seed(0)
    aug = Augmentation(crop=crop, rotate_p=0.0)
    out_images, out_masks = augment(images, masks, aug, generator)
    assert out_images.shape == (64, 3, *(crop or (32, 48))) and out_masks.shape == (64, *(crop or (32, 48)))
    exact = [torch.equal((i[0] * 255).round().long(), m) for i, m in zip(out_images, out_masks)]
    # a window at the frame's scale (and flips) moves pixels without resampling; the paper's crop rescales half
    assert all(exact) if crop else 0.3 < np.mean(exact) < 0.7

    # with rotations and rescaling too: on a ramp (class = column, or row), the bilinear image at a
    # pixel is where it sampled, and the nearest mask is within half a pixel of it
    for axis in (-1, -2):
        coords = torch.arange(48 if axis == -1 else 32).float()
        ramp = (coords if axis == -1 else coords[:, None]).expand(32, 48)
        images = torch.stack([ramp / 255, torch.zeros(32, 48), torch.ones(32, 48)])[None].repeat(64, 1, 1, 1)
        out_images, out_masks = augment(images, ramp.long()[None].repeat(64, 1, 1),
                                        Augmentation(crop=crop, rotate_p=1.0), torch.Generator().manual_seed(1))
        inside = out_images[:, 2] > 1 - 1e-4  # no sample from beyond the frame's edge
        assert inside.float().mean() > 0.5
        assert ((out_images[:, 0] * 255 - out_masks).abs() <= 0.5 + 1e-3)[inside].all()


def test_augment_draws_the_papers_rates_and_is_seeded():
    masks = torch.zeros(4000, 32, 48, dtype=torch.uint8)
    g = sample_warp(masks, Augmentation(crop=(16, 24)), torch.Generator().manual_seed(0))
    assert abs(g.flip_x.float().mean() - 0.5) < 0.03 and abs(g.flip_y.float().mean() - 0.5) < 0.03
    rotated = g.angle != 0
    assert abs(rotated.float().mean() - 0.3) < 0.03
    assert g.angle.abs().max() <= math.radians(10) and g.angle.abs().max() > math.radians(9.5)
    top, left = g.centre_y - 8, g.centre_x - 12
    assert (top == top.round()).all() and set(top.long().tolist()) == set(range(0, 17))  # every window fits, all used
    assert set(left.long().tolist()) == set(range(0, 25)) and (g.scale == 1).all()

    g = sample_warp(masks, Augmentation(), torch.Generator().manual_seed(0))  # the paper's RandomResizedCrop
    rescaled = g.scale < 1
    assert abs(rescaled.float().mean() - 0.5) < 0.03
    assert g.scale.min() >= math.sqrt(0.6) - 1e-6 and g.scale.max() <= 1
    half_w, half_h = 24 * g.scale, 16 * g.scale  # the window stays inside the frame
    assert ((g.centre_x - half_w) >= -1e-4).all() and ((g.centre_x + half_w) <= 48 + 1e-4).all()
    assert ((g.centre_y - half_h) >= -1e-4).all() and ((g.centre_y + half_h) <= 32 + 1e-4).all()

    images, masks = _ids_batch(8, (32, 48))
    runs = [augment(images, masks, Augmentation(crop=(16, 24)), torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    other = augment(images, masks, Augmentation(crop=(16, 24)), torch.Generator().manual_seed(6))
    assert not torch.equal(runs[0][1], other[1])


def test_foreground_windows_hold_an_object(tiny_dataset, tmp_path):
    videos = Dataset.open(tiny_dataset).videos("train")
    cache = frame_cache(videos, (80, 120), tmp_path, progress=False)
    masks = torch.from_numpy(np.asarray(cache.masks)).flatten(0, 1)  # (88, 80, 120)
    images = torch.from_numpy(np.asarray(cache.images)).flatten(0, 1).permute(0, 3, 1, 2).float() / 255
    assert (masks > 0).flatten(1).any(1).all()  # every tiny frame has an object
    generator = torch.Generator().manual_seed(0)
    share = {}
    for p in (0.0, 1.0):
        _, windows = augment(images, masks, Augmentation(crop=(16, 16), foreground_crops=p, rotate_p=0.0), generator)
        assert windows.shape == (88, 16, 16)
        share[p] = (windows > 0).flatten(1).any(1).float().mean().item()
    assert share[1.0] == 1.0 and share[0.0] < 0.8, share
    _, windows = augment(images, masks, Augmentation(crop=(16, 16), foreground_crops=1.0), generator)
    assert (windows > 0).flatten(1).any(1).float().mean() > 0.95  # a rotation may turn a rim object out
    with pytest.raises(ValueError, match="foreground_crops is 0.5, but must be"):
        Augmentation(foreground_crops=0.5)
