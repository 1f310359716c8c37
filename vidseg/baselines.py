"""The copy-last-frame baseline: the last input frame's mask taken as the target frame's, scored over a split."""

from __future__ import annotations

import numpy as np
import torch

from vidseg.data.shards import ShardSet
from vidseg.metrics import JaccardAccumulator
from vidseg.task import LAST_INPUT_INDEX, TARGET_INDEX

__all__ = ["copy_last_frame"]


def copy_last_frame(shards: ShardSet, split: str = "val", batch: int = 64) -> dict[str, float]:
    """``{"unet": IoU with the UNet's mask of the last input frame, "true": IoU with the true one}`` against
    the true target frame."""
    part = shards.split(split)
    if part.true is None:
        raise ValueError(f"split {split!r} has no true masks to score against")
    scores = {}
    for kind in ("unet", "true"):
        acc = JaccardAccumulator()
        for start in range(0, len(part), batch):
            index = range(start, min(start + batch, len(part)))
            last_input = np.stack([getattr(part, kind)[i][LAST_INPUT_INDEX] for i in index])
            target = np.stack([part.true[i][TARGET_INDEX] for i in index])
            acc.update(torch.from_numpy(last_input), torch.from_numpy(target))
        scores[kind] = acc.compute()
    return scores
