"""How a trial's output for the target frame becomes a mask: as it is (``plain``), restricted to the
classes the input frames show (``known``), or that and a repair of the mask's regions (``known+regions``).

Few objects enter the scene between the input frames and the target frame, so a class that no input
frame's mask holds is rarely right there (on the stand-in's val split, measure it with
``unseen_class_share``). A Spring 2023 entry (ChanukyaVardhan/DL_Competition, val about 0.42)
post-processed its predictions with that knowledge; these are the same ideas, written against the
class table of ``vidseg.data.classes``:

- ``known``: classes absent from the input frames' masks (at test time the UNet's) get no
  probability. For the CE losses that is the softmax over the known classes' logits; for ``mse``,
  whose output is a regressed class id, a pixel whose id decodes to an unknown class takes the
  known class whose decoding point is nearest (``codec.class_probabilities`` gives the points), and
  its probabilities are shared between the nearest known points below and above it. A pixel whose
  plain class is known keeps it, so ``known`` changes nothing where every predicted class is known.
- ``known+regions``: then the region heuristic on each class's region of the mask (all its pixels):
  a region of an unknown class becomes the known object it borders most; without one, background
  if it is small, else the known object class nearest in attributes (colour weighs 4, shape 2,
  material 1); and a small region of a known object becomes background. "Small" is under
  ``SMALL_REGION_PIXELS`` at the competition's frame size, scaled to the frame's area. On a ``known``
  mask no unknown class is left, so there only the last rule acts; the rest repairs any mask
  (``repair_regions``).

The soft val IoU (the scheduler's tie score) uses the restricted probabilities of ``known`` for
both restricted decodings: the region step has no probabilities of its own.
"""

from __future__ import annotations

import functools
import math

import torch

from vidseg.data.classes import BACKGROUND, NUM_CLASSES, attributes
from vidseg.task import FRAME_SIZE
from vidseg.train.codec import class_probabilities, predict_masks
from vidseg.train.config import DECODES

__all__ = ["DECODES", "SMALL_REGION_PIXELS", "ATTRIBUTE_WEIGHTS", "known_classes", "known_masks",
           "known_probabilities", "repair_regions", "decode_frame", "unseen_class_share", "attribute_distance"]

SMALL_REGION_PIXELS = 100  # the entry's threshold, at the competition's frame size
ATTRIBUTE_WEIGHTS = {"color": 4, "shape": 2, "material": 1}  # what a differing attribute costs (the entry's)


def known_classes(masks: torch.Tensor) -> torch.Tensor:
    """(B, K) bool: the classes that any of a clip's frames (B, T, H, W) shows; background always."""
    flat = masks.reshape(len(masks), -1).long()
    known = torch.zeros((len(masks), NUM_CLASSES), dtype=torch.bool, device=masks.device)
    known.scatter_(1, flat, True)
    known[:, BACKGROUND] = True
    return known


def _point_offset(rounding: str) -> float:
    """Where class c's decoding point lies for ``mse``: c + this (``codec.class_probabilities``)."""
    return 0.5 if rounding == "floor" else 0.0


def known_masks(output: torch.Tensor, known: torch.Tensor, loss: str, rounding: str = "floor") -> torch.Tensor:
    """One frame of output (B, C, H, W) decoded to masks (B, H, W) of known classes only."""
    if loss != "mse":
        return output.float().masked_fill(~known[:, :, None, None], -math.inf).argmax(1)
    plain = predict_masks(output[:, None], loss, rounding)[:, 0]
    ids = output[:, 0].float().nan_to_num(0.0)
    points = torch.arange(NUM_CLASSES, device=output.device, dtype=torch.float32) + _point_offset(rounding)
    distance = (ids[:, None] - points[None, :, None, None]).abs().masked_fill(~known[:, :, None, None], math.inf)
    nearest = distance.argmin(1)  # ties: the lower class
    plain_known = known.gather(1, plain.flatten(1)).view_as(plain)
    return torch.where(plain_known, plain, nearest)


def known_probabilities(output: torch.Tensor, known: torch.Tensor | None, loss: str,
                        rounding: str = "floor") -> torch.Tensor:
    """One frame of output (B, C, H, W) as probabilities (B, K, H, W) over the known classes (B, K);
    with ``known`` None, over all of them (``codec.class_probabilities``)."""
    if known is None:
        return class_probabilities(output, loss, rounding)
    if loss != "mse":
        return output.float().masked_fill(~known[:, :, None, None], -math.inf).softmax(1)
    ids = output[:, 0].float().nan_to_num(0.0)
    position = ids - _point_offset(rounding)  # class c's point sits at c
    classes = torch.arange(NUM_CLASSES, device=output.device, dtype=torch.float32)[None, :, None, None]
    allowed = known[:, :, None, None]
    at = position[:, None]
    below = torch.where(allowed & (classes <= at), classes, -math.inf).amax(1)
    above = torch.where(allowed & (classes >= at), classes, math.inf).amin(1)
    low = torch.where(torch.isfinite(below), below, above)  # under every known point: all to the lowest
    high = torch.where(torch.isfinite(above), above, low)  # over every known point: all to the highest
    gap = high - low
    high_share = torch.where(gap > 0, (position - low) / gap.clamp_min(1e-12), torch.zeros_like(gap)).clamp(0, 1)
    probs = torch.zeros((ids.shape[0], NUM_CLASSES, *ids.shape[1:]), dtype=torch.float32, device=ids.device)
    probs.scatter_(1, low.long().unsqueeze(1), (1 - high_share).unsqueeze(1))
    return probs.scatter_add_(1, high.long().unsqueeze(1), high_share.unsqueeze(1))


def attribute_distance() -> torch.Tensor:
    """(K, K) float: how far two object classes are apart in attributes (``ATTRIBUTE_WEIGHTS`` per
    attribute that differs); background's rows and columns are infinite."""
    distance = torch.full((NUM_CLASSES, NUM_CLASSES), math.inf)
    for a in range(NUM_CLASSES):
        for b in range(NUM_CLASSES):
            if BACKGROUND not in (a, b):
                first, second = attributes(a), attributes(b)
                distance[a, b] = sum(w for name, w in ATTRIBUTE_WEIGHTS.items()
                                     if getattr(first, name) != getattr(second, name))
    return distance


@functools.lru_cache(maxsize=None)
def _distance(device: str) -> torch.Tensor:
    """``attribute_distance`` on a device, made once per device."""
    return attribute_distance().to(device)


def small_region_pixels(height: int, width: int) -> float:
    """``SMALL_REGION_PIXELS`` scaled from the competition's frame size to a frame of height x width."""
    return SMALL_REGION_PIXELS * height * width / (FRAME_SIZE[0] * FRAME_SIZE[1])


def repair_regions(masks: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """The region heuristic (the module's doc) on masks (B, H, W) with the known classes (B, K)."""
    b, h, w = masks.shape
    k = NUM_CLASSES
    masks = masks.long()
    device = masks.device
    flat = masks.reshape(b, -1)
    area = torch.zeros((b, k), dtype=torch.float32, device=device).scatter_add_(
        1, flat, torch.ones_like(flat, dtype=torch.float32))
    # shared border: 4-neighbour pixel pairs of different classes, counted both ways
    pairs = [(masks[:, 1:, :], masks[:, :-1, :]), (masks[:, :, 1:], masks[:, :, :-1])]
    border = torch.zeros(b * k * k, dtype=torch.float32, device=device)
    offsets = (torch.arange(b, device=device) * k * k).view(b, 1, 1)
    for first, second in pairs:
        differ = (first != second).float()
        for x, y in ((first, second), (second, first)):
            border.index_add_(0, (offsets + x * k + y).reshape(-1), differ.reshape(-1))
    border = border.view(b, k, k)
    objects = known.clone()
    objects[:, BACKGROUND] = False  # the known object classes
    border_known = border.masked_fill(~objects[:, None, :], 0.0)
    neighbour_share, neighbour = border_known.max(2)  # (B, K): the known object each class borders most
    distance = _distance(str(device))[None].expand(b, k, k).masked_fill(~objects[:, None, :], math.inf)
    nearest_distance, nearest = distance.min(2)  # (B, K): the known object class nearest in attributes
    small = area < small_region_pixels(h, w)
    classes = torch.arange(k, device=device).expand(b, k)
    background = torch.full_like(classes, BACKGROUND)
    unknown = torch.where(neighbour_share > 0, neighbour,
                          torch.where(small | ~torch.isfinite(nearest_distance), background, nearest))
    mapping = torch.where(~known, unknown, torch.where(objects & small, background, classes))
    return mapping.gather(1, flat).view(b, h, w)


def decode_frame(output: torch.Tensor, inputs: torch.Tensor, loss: str, rounding: str, decode: str,
                 known: torch.Tensor | None = None) -> torch.Tensor:
    """One frame of output (B, C, H, W) to masks (B, H, W) by ``decode``, the known classes read
    from the input frames' masks (B, T, H, W), or given (``known_classes`` of them)."""
    if decode == "plain":
        return predict_masks(output[:, None], loss, rounding)[:, 0]
    known = known_classes(inputs) if known is None else known
    masks = known_masks(output, known, loss, rounding)
    return repair_regions(masks, known) if decode == "known+regions" else masks


def unseen_class_share(videos: torch.Tensor, inputs: int, target: int) -> dict[str, float]:
    """How often the target frame holds a class that no input frame shows, on true masks
    (N, frames, H, W): the share of videos with one, and the share of the target's object
    pixels that such classes cover."""
    known = known_classes(videos[:, :inputs])
    target_masks = videos[:, target].long()
    unseen = ~known.gather(1, target_masks.flatten(1)).view_as(target_masks)
    objects = target_masks != BACKGROUND
    return {"videos": float(unseen.flatten(1).any(1).float().mean()) if len(videos) else math.nan,
            "object_pixels": int(unseen.sum()) / max(int(objects.sum()), 1)}
