"""Decoding: ``known`` never predicts a class the input frames lack and leaves known predictions
alone, its probabilities are the codec's over fewer classes, and the region repair does what the
entry's heuristic does, on masks built by hand from the class table."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidseg.data.classes import BACKGROUND, NUM_CLASSES, class_id
from vidseg.task import FRAME_SIZE, INPUT_FRAMES
from vidseg.train import TrainConfig, fit
from vidseg.train.codec import class_probabilities, predict_masks
from vidseg.train.decoding import (DECODES, SMALL_REGION_PIXELS, attribute_distance, decode_frame, known_classes,
                                   known_masks, known_probabilities, repair_regions, small_region_pixels,
                                   unseen_class_share)
from vidseg.train.losses import compute_loss, divergence_loss
from vidseg.train.loop import decoding_metric

H, W = 12, 16
RED_RUBBER_SPHERE = class_id("sphere", "rubber", "red")
RED_METAL_SPHERE = class_id("sphere", "metal", "red")
BLUE_METAL_CUBE = class_id("cube", "metal", "blue")
GREEN_RUBBER_CYLINDER = class_id("cylinder", "rubber", "green")


def inputs_with(classes_per_clip: list[list[int]], seed: int = 0) -> torch.Tensor:
    """Input frames (B, T, H, W) whose masks show exactly these classes (and background)."""
    rng = np.random.default_rng(seed)
    clips = np.zeros((len(classes_per_clip), INPUT_FRAMES, H, W), dtype=np.uint8)
    for b, classes in enumerate(classes_per_clip):
        for i, c in enumerate(classes):
            t, y, x = rng.integers(INPUT_FRAMES), rng.integers(H), rng.integers(W)
            clips[b, t, y, x] = c
    return torch.from_numpy(clips)


def outputs(loss: str, batch: int, seed: int = 0) -> torch.Tensor:
    """A frame of random output (B, C, H, W): logits, or ids over the whole range for mse."""
    g = torch.Generator().manual_seed(seed)
    if loss == "mse":
        return torch.rand((batch, 1, H, W), generator=g) * (NUM_CLASSES + 2) - 1
    return torch.randn((batch, NUM_CLASSES, H, W), generator=g) * 3


@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("rounding", ["floor", "round"])
@pytest.mark.parametrize("decode", ["known", "known+regions"])
def test_known_never_predicts_a_class_the_input_frames_lack(loss, rounding, decode):
    clips = inputs_with([[RED_RUBBER_SPHERE, BLUE_METAL_CUBE], [GREEN_RUBBER_CYLINDER], []])
    output = outputs(loss, len(clips))
    plain = decode_frame(output, clips, loss, rounding, "plain")
    masks = decode_frame(output, clips, loss, rounding, decode)
    known = known_classes(clips)
    assert not known.gather(1, plain.flatten(1)).all()  # the plain decoding does predict unknown classes here
    assert known.gather(1, masks.flatten(1)).all()
    assert set(masks[2].unique().tolist()) == {BACKGROUND}  # a clip with no objects predicts none


@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("rounding", ["floor", "round"])
def test_known_leaves_predictions_alone_where_every_predicted_class_is_known(loss, rounding):
    output = outputs(loss, 2, seed=1)
    plain = predict_masks(output[:, None], loss, rounding)[:, 0]
    # inputs that show every class the plain decoding predicts (and for the second clip one more)
    clips = inputs_with([plain[0].unique().tolist(), plain[1].unique().tolist() + [RED_METAL_SPHERE]])
    assert torch.equal(known_masks(output, known_classes(clips), loss, rounding), plain)
    # and pixels whose plain class is known keep it where others change
    fewer = inputs_with([plain[0].unique().tolist()[:3], []])
    restricted = known_masks(output, known_classes(fewer), loss, rounding)
    kept = known_classes(fewer).gather(1, plain.flatten(1)).view_as(plain)
    assert torch.equal(restricted[kept], plain[kept]) and not torch.equal(restricted, plain)


@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("rounding", ["floor", "round"])
def test_known_probabilities_are_the_codecs_over_the_known_classes(loss, rounding):
    output = outputs(loss, 3, seed=2)
    every = torch.ones((3, NUM_CLASSES), dtype=torch.bool)
    assert torch.allclose(known_probabilities(output, every, loss, rounding),
                          class_probabilities(output, loss, rounding), atol=1e-6)
    known = known_classes(inputs_with([[RED_RUBBER_SPHERE, BLUE_METAL_CUBE], [GREEN_RUBBER_CYLINDER], []]))
    probs = known_probabilities(output, known, loss, rounding)
    assert torch.allclose(probs.sum(1), torch.ones(3, H, W), atol=1e-5)
    assert float(probs.masked_select(~known[:, :, None, None].expand_as(probs)).abs().max()) == 0.0
    if loss == "ce":  # the most probable known class is the known decoding
        assert torch.equal(probs.argmax(1), known_masks(output, known, loss, rounding))


def test_mse_known_decoding_takes_the_nearest_known_point():
    known = torch.zeros((1, NUM_CLASSES), dtype=torch.bool)
    known[0, [BACKGROUND, 10, 20]] = True
    ids = torch.tensor([[[[10.2, 14.0, 16.2, 30.0, 0.7]]]])  # floor: 10 (known), 14 -> 10, 16 -> 20, 30 -> 20, 0
    assert known_masks(ids, known, "mse", "floor")[0, 0].tolist() == [10, 10, 20, 20, 0]
    probs = known_probabilities(ids, known, "mse", "floor")[0, :, 0]  # points at 0.5, 10.5, 20.5
    assert probs[:, 2][[10, 20]].tolist() == pytest.approx([(20.5 - 16.2) / 10, (16.2 - 10.5) / 10])
    assert probs[20, 3] == 1.0  # above every known point: all to the highest


def test_attribute_distance_weighs_colour_shape_material():
    distance = attribute_distance()
    assert distance[RED_RUBBER_SPHERE, RED_METAL_SPHERE] == 1
    assert distance[RED_RUBBER_SPHERE, class_id("cube", "rubber", "red")] == 2
    assert distance[RED_RUBBER_SPHERE, class_id("sphere", "rubber", "blue")] == 4
    assert distance[RED_METAL_SPHERE, BLUE_METAL_CUBE] == 6
    assert distance[RED_RUBBER_SPHERE, RED_RUBBER_SPHERE] == 0 and math.isinf(distance[BACKGROUND, 1])
    assert torch.equal(distance, distance.T)


def test_region_repair_follows_the_entrys_rules():
    size = FRAME_SIZE  # at the competition's size the threshold is the entry's own
    assert small_region_pixels(*size) == SMALL_REGION_PIXELS
    masks = torch.zeros((1, *size), dtype=torch.long)
    masks[0, 0:20, 0:20] = RED_RUBBER_SPHERE  # a known object, 400 px
    masks[0, 0:20, 20:30] = GREEN_RUBBER_CYLINDER  # unknown, bordering it: becomes it
    masks[0, 50:55, 50:55] = BLUE_METAL_CUBE  # known but 25 px: background
    masks[0, 100:103, 100:103] = class_id("cube", "rubber", "gray")  # unknown, 9 px, alone: background
    masks[0, 100:130, 200:230] = RED_METAL_SPHERE  # unknown, 900 px, alone: the nearest known class
    known = torch.zeros((1, NUM_CLASSES), dtype=torch.bool)
    known[0, [BACKGROUND, RED_RUBBER_SPHERE, BLUE_METAL_CUBE]] = True
    repaired = repair_regions(masks, known)[0]
    assert (repaired[0:20, 0:30] == RED_RUBBER_SPHERE).all()
    assert (repaired[50:55, 50:55] == BACKGROUND).all() and (repaired[100:103, 100:103] == BACKGROUND).all()
    assert (repaired[100:130, 200:230] == RED_RUBBER_SPHERE).all()  # material differs (1), not shape+colour (6)
    assert int((repaired != BACKGROUND).sum()) == 20 * 30 + 900
    nothing_known = torch.zeros_like(known)
    nothing_known[0, BACKGROUND] = True  # no known object at all: every object becomes background
    assert int(repair_regions(masks, nothing_known).count_nonzero()) == 0


def test_unseen_class_share_counts_videos_and_pixels():
    videos = torch.zeros((2, 2 * INPUT_FRAMES, H, W), dtype=torch.uint8)
    videos[:, :INPUT_FRAMES, 0, 0] = RED_RUBBER_SPHERE
    videos[:, -1, 0:2, 0:2] = RED_RUBBER_SPHERE  # 4 known object pixels in both targets
    videos[1, -1, 5, 5:9] = BLUE_METAL_CUBE  # 4 unseen ones in the second
    share = unseen_class_share(videos, INPUT_FRAMES, 2 * INPUT_FRAMES - 1)
    assert share == {"videos": 0.5, "object_pixels": 4 / 12}


def test_divergence_is_taus_kl_of_softmaxed_differences():
    g = torch.Generator().manual_seed(3)
    target = torch.randint(0, NUM_CLASSES, (2, 4, H, W), generator=g)
    logits = torch.randn((2, 4, NUM_CLASSES, H, W), generator=g)
    value = divergence_loss(logits, target, "ce")

    def gaps(x):  # (B, T, ...) -> log-softmax of the scaled frame differences, (B, T-1, N)
        return F.log_softmax((x[:, 1:] - x[:, :-1]).flatten(2) / 0.1, -1)
    probs, truth = logits.softmax(2), F.one_hot(target, NUM_CLASSES).permute(0, 1, 4, 2, 3).float()
    expected = F.kl_div(gaps(truth), gaps(probs), log_target=True, reduction="none").mean()
    assert float(value) == pytest.approx(float(expected), rel=1e-3) and float(value) > 0
    ids = target.float().unsqueeze(2)
    assert float(divergence_loss(ids, target, "mse")) == pytest.approx(0.0, abs=1e-9)  # exact ids: no divergence
    assert float(divergence_loss(ids + torch.randn_like(ids), target, "mse")) > 0
    assert float(divergence_loss(logits[:, :2], target[:, :2], "ce")) == 0.0  # two frames or fewer: none, as TAU
    base = compute_loss(logits, target, "ce")
    assert float(compute_loss(logits, target, "ce", divergence_weight=0.1)) == pytest.approx(
        float(base + 0.1 * value), rel=1e-6)


def test_every_decoding_is_reported_and_the_trials_own_is_val_iou(tiny_shards):
    reports = []
    config = TrainConfig(N_S=2, N_T=2, hid_S=8, hid_T=16, groups=2, batch_size=4, device="cpu", epochs=1,
                         loss="ce", decode="known", divergence_weight=0.1)
    fit(config, tiny_shards, reports.append)
    keys = {decoding_metric(decode) for decode in DECODES}
    assert keys == {"val_iou_plain", "val_iou_known", "val_iou_known_regions"} and keys <= set(reports[0])
    assert reports[0]["val_iou"] == reports[0]["val_iou_known"]
    assert all(0.0 <= reports[0][key] <= 1.0 for key in keys)
