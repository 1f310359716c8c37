"""The paper's three losses, and the soft-Jaccard term (the model's codec is ``vidseg.train.codec``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["compute_loss", "soft_jaccard_loss"]


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
