"""One SimVP trial: train on shards, validate as at test time, report every epoch.

``fit(config, shards, report)`` is the single training core. Ray Tune's trainable wraps it;
tests pass a list's ``append``. Nothing here imports Ray.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidseg.atomic import atomic_path
from vidseg.config import check_device
from vidseg.data.shards import ShardSet, SplitShards
from vidseg.metrics import JaccardAccumulator
from vidseg.models import SimVP
from vidseg.train.config import TrainConfig
from vidseg.train.losses import compute_loss, encode_inputs, predict_masks

__all__ = ["fit", "FitResult", "TrialDiverged", "build_model", "CHECKPOINT"]

log = logging.getLogger(__name__)

INPUT_FRAMES = 11  # frames 1-11 in, frames 12-22 out; frame 22 is output index -1
CHECKPOINT = "checkpoint.pt"
SKIP_LOGIT = 4.0  # the last-frame skip's initial logit margin for the CE losses


class TrialDiverged(FloatingPointError):
    """The loss became NaN or infinite: the search records the trial as failed."""


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def val_iou(self) -> float:
        return self.history[-1]["val_iou"] if self.history else float("nan")

    @property
    def best_val_iou(self) -> float:
        return max((r["val_iou"] for r in self.history), default=float("nan"))


class LastFrameSkip(torch.nn.Module):
    """SimVP plus a learnable multiple of the last input frame, added to every predicted frame.

    With one-hot inputs (the CE losses) the skip adds ``scale`` to the logit of each pixel's last
    seen class; with class ids (mse) it adds the last frame's ids. At initialisation the model thus
    predicts about what copy-last-frame predicts, and training learns the motion on top of it.
    This is this project's extension (``TrainConfig.last_frame_skip``), not the reference SimVP.
    """

    def __init__(self, simvp: SimVP, scale: float) -> None:
        super().__init__()
        self.simvp = simvp
        self.scale = torch.nn.Parameter(torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C, H, W) -> (B, T, C, H, W)
        return self.simvp(x) + self.scale * x[:, -1:]


def build_model(config: TrainConfig, height: int, width: int) -> torch.nn.Module:
    """SimVP for 11 frames of (channels, height, width); raises ValueError for invalid groups."""
    model = SimVP((INPUT_FRAMES, config.channels, height, width), hid_S=config.hid_S, hid_T=config.hid_T,
                  N_S=config.N_S, N_T=config.N_T, groups=config.groups, translator=config.translator)
    if config.last_frame_skip:
        return LastFrameSkip(model, 1.0 if config.loss == "mse" else SKIP_LOGIT)
    return model


@dataclass
class _Clips:
    """Training clips: where each clip's input and target masks come from (no copies)."""

    inputs: list[tuple[SplitShards, str, int]]  # (split, "true" | "unet", index)
    targets: list[tuple[SplitShards, str, int]]

    def __len__(self) -> int:
        return len(self.inputs)


def _training_clips(shards: ShardSet, config: TrainConfig, rng: np.random.Generator) -> _Clips:
    train = shards.split("train")
    n = len(train) if config.max_train_videos is None else min(len(train), config.max_train_videos)
    if config.train_inputs == "mix":
        sources = np.where(rng.random(n) < config.unet_input_fraction, "unet", "true")
    else:
        sources = [config.train_inputs] * n
    inputs = [(train, str(src), i) for i, src in enumerate(sources)]
    targets = [(train, "true", i) for i in range(n)]
    if config.pseudo_labels and "unlabeled" in shards.splits:
        unlabeled = shards.split("unlabeled")
        inputs += [(unlabeled, "unet", i) for i in range(len(unlabeled))]
        targets += [(unlabeled, "unet", i) for i in range(len(unlabeled))]
    return _Clips(inputs, targets)


def _gather(items: list[tuple[SplitShards, str, int]], frames: slice) -> torch.Tensor:
    """Stack the chosen frames of some videos into one new (B, T, H, W) uint8 batch."""
    return torch.from_numpy(np.stack([getattr(split, kind)[i][frames] for split, kind, i in items]))


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def _load_checkpoint(checkpoint: dict | str | Path | None, device: torch.device) -> dict | None:
    if checkpoint is None or isinstance(checkpoint, dict):
        return checkpoint
    path = Path(checkpoint)
    if path.is_dir():
        path = path / CHECKPOINT
    return torch.load(path, map_location=device, weights_only=False)


def _save_checkpoint(state: dict, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / CHECKPOINT) as tmp:
        torch.save(state, tmp)


@torch.inference_mode()
def _validate(model: torch.nn.Module, val: SplitShards, config: TrainConfig, device: torch.device,
              amp: bool) -> dict[str, float]:
    """Frame 22 from UNet inputs (as at test time) and from true inputs (the oracle), plus val loss."""
    model.eval()
    test_time, oracle = JaccardAccumulator(device=device), JaccardAccumulator(device=device)
    loss_sum, count = 0.0, 0
    batch = max(config.batch_size, 1) * 2
    for start in range(0, len(val), batch):
        index = range(start, min(start + batch, len(val)))
        target = _gather([(val, "true", i) for i in index], slice(INPUT_FRAMES, None)).to(device).long()
        for kind, acc in (("unet", test_time), ("true", oracle)):
            masks = _gather([(val, kind, i) for i in index], slice(0, INPUT_FRAMES)).to(device)
            with _autocast(device, amp):
                output = model(encode_inputs(masks, config.loss))
            if not bool(torch.isfinite(output).all()):
                raise TrialDiverged("the model's output became NaN or infinite (validation)")
            acc.update(predict_masks(output, config.loss, config.mse_rounding)[:, -1], target[:, -1])
            if kind == "unet":
                loss_sum += float(compute_loss(output, target, config.loss, config.last_frame_weight)) * len(index)
                count += len(index)
    return {"val_iou": test_time.compute(), "val_iou_true_inputs": oracle.compute(),
            "val_loss": loss_sum / max(count, 1)}


def fit(config: TrainConfig, shards: ShardSet | str | Path, report: Callable[[dict[str, Any]], Any],
        checkpoint: dict | str | Path | None = None, checkpoint_dir: str | Path | None = None,
        progress: bool = False) -> FitResult:
    """Train one SimVP configuration; call ``report(metrics)`` after every epoch.

    ``checkpoint`` (a dict, a ``checkpoint.pt`` or its folder) resumes where it stopped. With
    ``checkpoint_dir``, each epoch's state (model, optimizer, scheduler, epoch, config) is saved
    there, atomically, before ``report`` is called.
    """
    from tqdm import tqdm

    check_device(config.device)
    if not isinstance(shards, ShardSet):
        shards = ShardSet.open(shards, verify=False)  # sizes, schemas and ids; checksums are the driver's job
    if config.pseudo_labels and "unlabeled" not in shards.splits:
        raise ValueError(f"{shards.root}: pseudo_labels needs an unlabeled split, and this shard set has none")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" \
        else torch.device(config.device)
    # bf16 cannot hold class ids 32..48 exactly: the mse readout stays in fp32.
    amp = config.amp and config.loss != "mse"
    height, width = shards.resolution
    torch.manual_seed(config.seed)  # the initial weights depend on the seed only
    model = build_model(config, height, width).to(device)
    if device.type == "cuda" and config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    state = _load_checkpoint(checkpoint, device)
    if state is not None:
        saved = TrainConfig.from_dict(state["config"]).result_fields()
        wanted = config.result_fields()
        if saved != wanted:
            differing = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
            raise ValueError(f"checkpoint was made with another config (differs in {', '.join(differing)})")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, history = state["epoch"], list(state["history"])
    step_model = torch.compile(model) if config.compile else model
    val = shards.split("val")

    for epoch in range(start_epoch, config.epochs):
        seed = config.seed * 1_000_003 + epoch  # per epoch, so a resumed run matches an uninterrupted one
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        clips = _training_clips(shards, config, rng)
        order = rng.permutation(len(clips))
        model.train()
        started = time.perf_counter()
        data_seconds, loss_sum, seen = 0.0, 0.0, 0
        batches = range(0, len(order), config.batch_size)
        for start in tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress, leave=False):
            fetch = time.perf_counter()
            chosen = order[start:start + config.batch_size]
            inputs = _gather([clips.inputs[i] for i in chosen], slice(0, INPUT_FRAMES)).to(device, non_blocking=True)
            target = _gather([clips.targets[i] for i in chosen], slice(INPUT_FRAMES, None)).to(device).long()
            data_seconds += time.perf_counter() - fetch
            with _autocast(device, amp):
                output = step_model(encode_inputs(inputs, config.loss))  # (B, 11, C, H, W)
                loss = compute_loss(output, target, config.loss, config.last_frame_weight)
            if not torch.isfinite(loss):
                raise TrialDiverged(f"loss became {loss.item()} at epoch {epoch + 1}, batch {start // config.batch_size + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            loss_sum += loss.item() * len(chosen)
            seen += len(chosen)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        train_seconds = time.perf_counter() - started
        metrics = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), **_validate(model, val, config, device, amp),
                   "lr": lr, "epoch_seconds": time.perf_counter() - started,
                   "samples_per_second": seen / max(train_seconds, 1e-9),
                   "data_fraction": data_seconds / max(train_seconds, 1e-9)}
        if not math.isfinite(metrics["val_loss"]):
            raise TrialDiverged(f"validation loss became {metrics['val_loss']} at epoch {epoch + 1}")
        history.append(metrics)
        if checkpoint_dir is not None:
            _save_checkpoint({"config": config.to_dict(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "history": history},
                             Path(checkpoint_dir))
        report(metrics)
    return FitResult(history)
