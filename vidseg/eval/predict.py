"""A trained SimVP's predictions of the target frame: from a checkpoint, for a split's masks, and
as the competition's submission."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vidseg.checkpoint import load_checkpoint
from vidseg.data.shards import ShardSet
from vidseg.metrics import JaccardAccumulator
from vidseg.task import FRAME_SIZE, INPUT_FRAMES
from vidseg.train.config import TrainConfig
from vidseg.train.loop import build_model

__all__ = ["load_trial_model", "predict_last_frame", "frame_iou", "submission", "SUBMISSION_SIZE"]

SUBMISSION_SIZE = FRAME_SIZE  # the competition's mask size


def load_trial_model(checkpoint_file: Path, resolution: tuple[int, int]) -> tuple[torch.nn.Module, TrainConfig, dict]:
    """The model of a trial's checkpoint (plain data: a planted pickle is refused), in eval mode,
    with its config and the checkpoint's state."""
    state = load_checkpoint(checkpoint_file)
    config = TrainConfig.from_dict(state["config"])
    model = build_model(config, *resolution)
    model.load_state_dict(state["model"])
    return model.eval(), config, state


@torch.inference_mode()
def predict_last_frame(model: torch.nn.Module, masks: np.ndarray, batch: int = 16) -> np.ndarray:
    """The target frame (N, H, W) uint8 from the input frames of integer masks (N, >= INPUT_FRAMES, H, W)."""
    out = []
    for start in range(0, len(masks), batch):
        inputs = torch.from_numpy(np.ascontiguousarray(masks[start:start + batch, :INPUT_FRAMES]))
        output = model(inputs)
        out.append(model.predict(output, inputs).to(torch.uint8).numpy())  # the trial's decoding
    return np.concatenate(out) if out else np.zeros((0, *masks.shape[2:]), np.uint8)


def frame_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """The competition's Jaccard index of one predicted frame against the truth."""
    acc = JaccardAccumulator()
    acc.update(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(truth.astype(np.int64)))
    return acc.compute()


def submission(model: torch.nn.Module, shards: ShardSet) -> tuple[torch.Tensor, np.ndarray]:
    """The hidden split's predicted target frames at the competition's size (uint8), and their video ids."""
    hidden = shards.split("hidden")
    masks = np.stack([hidden.unet[i] for i in range(len(hidden))])
    pred = torch.from_numpy(predict_last_frame(model, masks))
    if tuple(pred.shape[1:]) != SUBMISSION_SIZE:  # nearest, as masks are always resized
        pred = torch.nn.functional.interpolate(pred[:, None].float(), size=SUBMISSION_SIZE, mode="nearest")[:, 0]
    return pred.to(torch.uint8).contiguous(), hidden.video_ids
