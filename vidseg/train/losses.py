"""The paper's three losses, and how each turns masks into SimVP inputs and outputs into masks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vidseg.data.classes import NUM_CLASSES

__all__ = ["encode_inputs", "compute_loss", "predict_masks", "soft_jaccard_loss", "class_probabilities"]


def encode_inputs(masks: torch.Tensor, loss: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Integer masks (B, T, H, W) to SimVP input (B, T, C, H, W) in ``dtype``: class ids for mse,
    one-hot for CE. The one-hot is written straight into ``dtype`` (no int64 or fp32 copy of it);
    bf16 holds the ids 0..48 exactly."""
    if loss == "mse":
        return masks.unsqueeze(2).to(dtype)  # (B, T, 1, H, W), raw class ids as in the paper
    b, t, h, w = masks.shape
    one_hot = torch.zeros((b, t, NUM_CLASSES, h, w), dtype=dtype, device=masks.device)
    return one_hot.scatter_(2, masks.unsqueeze(2).long(), 1)  # (B, T, 49, H, W)


def compute_loss(output: torch.Tensor, target: torch.Tensor, loss: str, last_frame_weight: float = 1.0,
                 iou_weight: float = 0.0) -> torch.Tensor:
    """Loss of SimVP's output (B, T, C, H, W) against integer target masks (B, T, H, W).

    ``weighted_ce`` scales the last frame's cross-entropy by ``last_frame_weight`` and divides the
    sum by ``T - 1 + last_frame_weight``, so a weight of 1 equals plain ``ce``. ``iou_weight``
    adds that multiple of ``soft_jaccard_loss`` of the last frame (the metric's frame) to a CE loss.
    """
    if loss == "mse":
        return F.mse_loss(output[:, :, 0].float(), target.float())
    b, t = target.shape[:2]
    per_pixel = F.cross_entropy(output.flatten(0, 1).float(), target.flatten(0, 1).long(), reduction="none")
    per_frame = per_pixel.reshape(b, t, -1).mean(-1)  # (B, T)
    if loss == "ce":
        value = per_frame.mean()
    else:
        weights = torch.ones(t, device=output.device)
        weights[-1] = last_frame_weight
        value = (per_frame * weights).sum(1).mean() / weights.sum()
    if iou_weight:
        value = value + iou_weight * soft_jaccard_loss(output[:, -1], target[:, -1])
    return value


def soft_jaccard_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - the soft Jaccard index of class probabilities (B, C, H, W) against integer masks (B, H, W),
    averaged over the classes present in the target: a differentiable stand-in for the metric."""
    probs = logits.float().softmax(1)
    one_hot = F.one_hot(target.long(), probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    inter = (probs * one_hot).sum((0, 2, 3))
    union = probs.sum((0, 2, 3)) + one_hot.sum((0, 2, 3)) - inter
    present = (one_hot.sum((0, 2, 3)) > 0).to(probs.dtype)  # a weight, not an index: no host sync
    return 1 - (inter / union.clamp_min(1e-6) * present).sum() / present.sum().clamp_min(1)


def predict_masks(output: torch.Tensor, loss: str, mse_rounding: str = "floor") -> torch.Tensor:
    """SimVP's output (B, T, C, H, W) to integer masks (B, T, H, W)."""
    if loss == "mse":
        ids = output[:, :, 0].float().nan_to_num(0.0).clamp(0, NUM_CLASSES - 1)  # a diverged model still gives ids
        return (ids.floor() if mse_rounding == "floor" else ids.round()).long()
    return output.argmax(2)


def class_probabilities(output: torch.Tensor, loss: str, mse_rounding: str = "floor") -> torch.Tensor:
    """One frame of SimVP's output (B, C, H, W) as class probabilities (B, 49, H, W) in fp32, for a
    score that every loss type shares (``vidseg.metrics.SoftJaccardAccumulator``).

    CE losses: the softmax of the logits. ``mse`` has no probabilities, so the regressed id is
    shared between the two classes whose decoding points are nearest, in proportion to how near it
    is to each: the decoding point of class c is c + 0.5 under ``floor`` rounding (the middle of the
    ids that floor to c) and c under ``round``. So an output at a class's point is all that class,
    one half-way between two is half each, and the most probable class is the decoded one
    (``predict_masks``; exactly half-way, the lower)."""
    if loss != "mse":
        return output.float().softmax(1)
    ids = output[:, 0].float().nan_to_num(0.0)
    position = (ids - 0.5 if mse_rounding == "floor" else ids).clamp(0, NUM_CLASSES - 1)
    low = position.floor().clamp(max=NUM_CLASSES - 2)
    high_share = (position - low).unsqueeze(1)  # (B, 1, H, W)
    probs = torch.zeros((ids.shape[0], NUM_CLASSES, *ids.shape[1:]), dtype=torch.float32, device=ids.device)
    probs.scatter_(1, low.long().unsqueeze(1), 1 - high_share)
    return probs.scatter_add_(1, low.long().unsqueeze(1) + 1, high_share)
