"""How a trial's model turns masks into SimVP's inputs and its outputs back into masks or class
probabilities, for each loss: the model's codec (``vidseg.train.model.MaskPredictor`` calls it;
nothing else needs the loss type to read an output)."""

from __future__ import annotations

import torch

from vidseg.task import NUM_CLASSES

__all__ = ["encode_inputs", "predict_masks", "class_probabilities"]


def encode_inputs(masks: torch.Tensor, loss: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Integer masks (B, T, H, W) to SimVP input (B, T, C, H, W) in ``dtype``: class ids for mse,
    one-hot for CE. The one-hot is written straight into ``dtype`` (no int64 or fp32 copy of it);
    bf16 holds the ids 0..48 exactly."""
    if loss == "mse":
        return masks.unsqueeze(2).to(dtype)  # (B, T, 1, H, W), raw class ids as in the paper
    b, t, h, w = masks.shape
    one_hot = torch.zeros((b, t, NUM_CLASSES, h, w), dtype=dtype, device=masks.device)
    return one_hot.scatter_(2, masks.unsqueeze(2).long(), 1)  # (B, T, K, H, W)


def predict_masks(output: torch.Tensor, loss: str, mse_rounding: str = "floor") -> torch.Tensor:
    """SimVP's output (B, T, C, H, W) to integer masks (B, T, H, W)."""
    if loss == "mse":
        ids = output[:, :, 0].float().nan_to_num(0.0).clamp(0, NUM_CLASSES - 1)  # a diverged model still gives ids
        return (ids.floor() if mse_rounding == "floor" else ids.round()).long()
    return output.argmax(2)


def class_probabilities(output: torch.Tensor, loss: str, mse_rounding: str = "floor") -> torch.Tensor:
    """One frame of SimVP's output (B, C, H, W) as class probabilities (B, K, H, W) in fp32, for a
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
