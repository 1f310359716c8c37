"""The paper's three losses, and the soft-Jaccard term (the model's codec is ``vidseg.train.codec``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["compute_loss", "soft_jaccard_loss", "divergence_loss", "DIVERGENCE_TEMPERATURE"]

DIVERGENCE_TEMPERATURE = 0.1  # TAU's (OpenSTL's diff_div_reg)


def compute_loss(output: torch.Tensor, target: torch.Tensor, loss: str, last_frame_weight: float = 1.0,
                 iou_weight: float = 0.0, divergence_weight: float = 0.0) -> torch.Tensor:
    """Loss of SimVP's output (B, T, C, H, W) against integer target masks (B, T, H, W).

    ``weighted_ce`` scales the last frame's cross-entropy by ``last_frame_weight`` and divides the
    sum by ``T - 1 + last_frame_weight``, so a weight of 1 equals plain ``ce``. ``iou_weight``
    adds that multiple of ``soft_jaccard_loss`` of the last frame (the metric's frame) to a CE loss;
    ``divergence_weight`` that multiple of ``divergence_loss`` to any loss.
    """
    value = _base_loss(output, target, loss, last_frame_weight, iou_weight)
    if divergence_weight:
        value = value + divergence_weight * divergence_loss(output, target, loss)
    return value


def _base_loss(output: torch.Tensor, target: torch.Tensor, loss: str, last_frame_weight: float,
               iou_weight: float) -> torch.Tensor:
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


def divergence_loss(output: torch.Tensor, target: torch.Tensor, loss: str, eps: float = 1e-12) -> torch.Tensor:
    """TAU's differential divergence (OpenSTL's ``diff_div_reg``): the frame-to-frame differences of
    the prediction and of the truth, each softmaxed over a frame's values at temperature
    ``DIVERGENCE_TEMPERATURE``, and KL(prediction || truth) averaged over every element. Its values are
    the class probabilities against the target's one-hot for CE losses, the regressed ids against the
    target's ids for ``mse``. Zero for two output frames or fewer, as in TAU."""
    b, t = target.shape[:2]
    if t <= 2:
        return output.new_zeros((), dtype=torch.float32)
    if loss == "mse":
        pred, true = output[:, :, 0].float(), target.float()
    else:
        pred = output.float().softmax(2)
        true = F.one_hot(target.long(), output.shape[2]).permute(0, 1, 4, 2, 3).float()
    gap_pred = (pred[:, 1:] - pred[:, :-1]).reshape(b, t - 1, -1) / DIVERGENCE_TEMPERATURE
    gap_true = (true[:, 1:] - true[:, :-1]).reshape(b, t - 1, -1) / DIVERGENCE_TEMPERATURE
    p, q = gap_pred.softmax(-1), gap_true.softmax(-1)
    return (p * torch.log(p / (q + eps) + eps)).mean()
