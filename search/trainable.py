"""The Ray Tune trainable: one SimVP trial, reported every epoch, checkpointed every epoch.

``vidseg.train.fit`` does the work. This wrapper restores from ``tune.get_checkpoint()`` (so a
trial whose worker died, or whose driver was restarted, goes on from its last epoch), and turns
each epoch's report into ``tune.report(metrics, checkpoint=...)``.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import torch

from vidseg.data.remote import cached_shards
from vidseg.train.config import TrainConfig
from vidseg.train.fit import CHECKPOINT, fit

__all__ = ["train_simvp", "trial_resources", "gpu_fraction", "estimate_gpu_bytes"]

GIB = 1024 ** 3


def train_simvp(config: dict[str, Any], shards: str) -> None:
    """Ray Tune function trainable; ``shards`` (a path, or a URI cached once per node) comes through
    ``tune.with_parameters``."""
    from ray import tune
    from ray.tune import Checkpoint

    from search.space import train_config

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # not a line per saved checkpoint
    train = train_config(config)
    state = None
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder:
            state = torch.load(Path(folder) / CHECKPOINT, map_location="cpu", weights_only=False)
    with tempfile.TemporaryDirectory(prefix="vidseg-trial-") as folder:
        def report(metrics: dict[str, Any]) -> None:
            # fit saved this epoch's checkpoint to ``folder`` just before; Ray copies it to storage now.
            tune.report(metrics, checkpoint=Checkpoint.from_directory(folder))

        fit(train, cached_shards(shards), report, checkpoint=state, checkpoint_dir=folder)


def estimate_gpu_bytes(config: TrainConfig, resolution: tuple[int, int]) -> int:
    """A rough upper bound of one trial's GPU memory: weights, gradients and Adam moments in fp32,
    plus the activations kept for the backward pass (bf16 under AMP), plus the CUDA context."""
    from vidseg.train.fit import build_model

    h, w = resolution
    with torch.device("meta"):
        params = sum(p.numel() for p in build_model(config, h, w).parameters())
    frames = 11 * config.batch_size
    scale = 2 ** (config.N_S // 2)
    act_bytes = 2 if config.amp and config.loss != "mse" else 4
    # encoder and decoder: ~6 tensors of hid_S channels per ConvSC layer, at full and reduced size
    spatial = frames * config.hid_S * h * w * 6 * (2 + config.N_S)
    # translator: per Inception block, 4 branches of hid_T channels plus norms, on the latent grid
    temporal = config.batch_size * config.hid_T * (h // scale) * (w // scale) * 12 * 2 * config.N_T
    # the output: C channels per frame, with the loss's softmax and its gradient
    output = frames * config.channels * h * w * 4
    return int(params * 16 + (spatial + temporal) * act_bytes + output * 4 + 0.5 * GIB)


def gpu_fraction(config: TrainConfig, resolution: tuple[int, int], gpu_memory_gb: float) -> float:
    """The share of one GPU a trial asks for, in eighths, so that small trials pack onto one GPU."""
    need = estimate_gpu_bytes(config, resolution) / (gpu_memory_gb * GIB)
    return min(1.0, max(1, math.ceil(need * 8)) / 8)


def trial_resources(cpus: float, gpus_available: bool, resolution: tuple[int, int], gpu_memory_gb: float):
    """A function of a trial's config that gives its resources, for ``tune.with_resources``."""
    from search.space import train_config

    def resources(config: dict[str, Any]) -> dict[str, float]:
        if not gpus_available:
            return {"cpu": cpus}
        return {"cpu": cpus, "gpu": gpu_fraction(train_config(config), resolution, gpu_memory_gb)}

    return resources
