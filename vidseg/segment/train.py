"""Train the UNet on single frames, as the paper did: per-frame cross-entropy, Adam, flips, crops
and rotations, and model selection by val Jaccard.

The frames are decoded once into a memory-mapped cache (``cache.py``); each step gathers a batch
from it onto the device, and augments it there, a batch at a time (``augment.py``). The step
loop reads nothing back from the device but the loss, a few times an epoch (``finite_check_steps``).

Each epoch writes ``unet_last.pt`` (everything needed to resume) and, when val Jaccard improves,
``unet_best.pt``. Both carry the config, so a checkpoint alone rebuilds its model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from vidseg.accel import (autocast, bf16_dtype, cpu_has_bf16,  # re-exported: the UNet and the trials share them
                          finite_check_steps, pick_device, step_timer)
from vidseg.checkpoint import load_checkpoint, save_checkpoint
from vidseg.config import from_dict, validate
from vidseg.task import NUM_CLASSES
from vidseg.data.layout import Dataset
from vidseg.errors import InputError
from vidseg.metrics import JaccardAccumulator
from vidseg.models import UNet
from vidseg.segment.augment import Augmentation, augment
from vidseg.segment.cache import DeviceFrames, frame_cache, frame_index
from vidseg.task import FRAME_SIZE, TOTAL_FRAMES

__all__ = ["UNetConfig", "UNetResult", "train_unet", "load_unet", "evaluate", "predict", "pick_device",
           "settings_key", "cpu_has_bf16"]

log = logging.getLogger(__name__)

LAST, BEST = "unet_last.pt", "unet_best.pt"
RUNTIME = ("epochs", "num_workers", "amp")  # UNetConfig fields that may change on a resume
CACHE_DIR = "frame_cache"  # inside the UNet's folder: the decoded train and val frames


@dataclass(frozen=True)
class UNetConfig:
    """How the segmentation UNet is trained."""

    width: int = 16  # channels of the first block; 64 is the paper's full model
    size: tuple[int, int] = FRAME_SIZE  # (H, W) the UNet sees; frames are area-downscaled to it
    epochs: int = 20
    batch_size: int = 16
    lr: float = 2e-3  # Adam, cosine-annealed to zero over `epochs`
    background_weight: float = 0.1  # cross-entropy weight of class 0; 1 is the paper's plain CE, < 1 leaves
    # the all-background plateau sooner (measured: val IoU 0.089 vs 0.060 after 200 steps)
    augment: bool = True  # flips, crops and rotations, on image and mask together
    train_frame_stride: int = 1  # train on every k-th frame per epoch, the offset moving each epoch
    val_frame_stride: int = 1  # validate on every k-th frame of each val video
    max_train_videos: int | None = None  # cap on train videos (None: all)
    num_workers: int = 1  # DataLoader processes decoding the PNGs, once, into the frame cache
    crop: tuple[int, int] | None = None  # train on random (h, w) crops at `size`, without rescaling; None:
    # the paper's scale-changing crop of whole frames. A 96x128 crop of a full frame costs a third of it
    foreground_crops: float = 0.0  # share of crops centred on an object pixel (nnU-Net uses 1/3); needs crop
    amp: bool = True  # bf16 autocast on CUDA, and on CPUs with native bf16 (AMX or AVX512-BF16)
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        if self.crop is not None:
            object.__setattr__(self, "crop", tuple(int(v) for v in self.crop))
        checks = [
            (self.width >= 2 and self.width % 2 == 0, f"width is {self.width}, but must be an even number >= 2"),
            (len(self.size) == 2 and min(self.size) >= 16, f"size is {self.size}, but must be (H, W) with H, W >= 16"),
            (self.crop is None or (len(self.crop) == 2 and 16 <= min(self.crop)
                                   and all(c <= s for c, s in zip(self.crop, self.size))),
             f"crop is {self.crop}, but must be (h, w) with 16 <= h <= {self.size[0]} and 16 <= w <= {self.size[1]}"),
            (0 <= self.foreground_crops <= 1 and (self.crop is not None or self.foreground_crops == 0),
             f"foreground_crops is {self.foreground_crops}, but must be in [0, 1], and 0 without a crop"),
            (self.crop is None or self.augment, f"crop is {self.crop}, but needs augment: the windows are random"),
            (self.epochs >= 1, f"epochs is {self.epochs}, but must be >= 1"),
            (self.batch_size >= 1, f"batch_size is {self.batch_size}, but must be >= 1"),
            (self.lr > 0, f"lr is {self.lr}, but must be > 0"),
            (0 < self.background_weight <= 1, f"background_weight is {self.background_weight}, but must be in (0, 1]"),
            (self.val_frame_stride >= 1, f"val_frame_stride is {self.val_frame_stride}, but must be >= 1"),
            (1 <= self.train_frame_stride <= TOTAL_FRAMES,
             f"train_frame_stride is {self.train_frame_stride}, but must be in 1..{TOTAL_FRAMES}"),
            (self.val_frame_stride <= TOTAL_FRAMES, f"val_frame_stride is {self.val_frame_stride}, but must be <= {TOTAL_FRAMES}"),
            (self.max_train_videos is None or self.max_train_videos >= 1,
             f"max_train_videos is {self.max_train_videos}, but must be >= 1"),
            (self.num_workers >= 0, f"num_workers is {self.num_workers}, but must be >= 0"),
        ]
        validate(checks)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "UNetConfig":
        return from_dict(cls, values, "UNet config")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def settings_key(config: UNetConfig) -> str:
    """8 hex digits naming the settings a UNet folder can resume with (all but RUNTIME), so that a
    cache keeps one folder per recipe instead of refusing a changed one."""
    settings = {k: v for k, v in config.to_dict().items() if k not in RUNTIME}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


@dataclass
class UNetResult:
    checkpoint: Path  # the best checkpoint
    val_iou: float
    epochs_done: int
    history: list[dict] = field(default_factory=list)


def load_unet(checkpoint: Path | str | bytes, device: torch.device | str = "cpu") -> tuple[UNet, dict]:
    """Rebuild a UNet from a checkpoint; returns the model (eval mode) and the checkpoint dict."""
    state = load_checkpoint(checkpoint, map_location=device)
    config = UNetConfig.from_dict(state["config"])
    model = UNet(3, NUM_CLASSES, bilinear=False, width=config.width).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    return model, state


def _autocast(device: torch.device, enabled: bool):
    return autocast(device, bf16_dtype(device, enabled))


def prior_correction(background_weight: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-class logit offsets (K, 1, 1) that undo the loss's background weight at inference.

    A class weighted w in the cross-entropy ends up with its posterior scaled by w, so with
    w = 0.1 the UNet draws objects too big. Adding log(1 / w) to the background logit restores the
    unweighted posterior (measured on the 600-video run: val IoU 0.793 -> 0.834).
    """
    bias = torch.zeros(NUM_CLASSES, 1, 1, device=device)
    bias[0] = -math.log(background_weight)
    return bias


def predict(model: UNet, images: torch.Tensor, bias: torch.Tensor, amp: bool = True) -> torch.Tensor:
    """Class ids (B, H, W) of a batch of images (B, 3, H, W), prior-corrected."""
    with _autocast(images.device, amp):
        logits = model(images)
    return (logits.float() + bias).argmax(1)


@torch.inference_mode()
def evaluate(model: UNet, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device,
             amp: bool = True, background_weight: float = 1.0) -> float:
    """Jaccard index over every pixel of every frame the loader gives (one confusion matrix).

    ``loader`` yields ``(images (B, 3, H, W), masks (B, H, W))``: images float 0..1, or uint8 0..255.
    """
    model.eval()
    acc = JaccardAccumulator(device=device)
    bias = prior_correction(background_weight, device)
    for images, masks in loader:
        images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
        if not images.is_floating_point():
            images = images.float().div_(255.0)
        # no range check (a host sync per batch): predictions are argmax over the classes, and an id
        # out of range in the masks still fails, in the confusion matrix's index_add_ or's reshape
        acc.update(predict(model, images.contiguous(memory_format=torch.channels_last), bias, amp), masks,
                   check_range=False)
    return acc.compute()


def _batches(frames: DeviceFrames, index: torch.Tensor,
             batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images (B, 3, H, W) uint8 channels_last, masks (B, H, W) uint8)`` of ``index``, in order."""
    for chunk in index.to(frames.index_device).split(batch_size):
        images, masks = frames.take(chunk)
        yield images.permute(0, 3, 1, 2), masks  # NHWC storage viewed as NCHW: channels_last


def train_unet(data_root: Path | str, out_dir: Path | str, config: UNetConfig, device: str = "auto",
               progress: bool = True) -> UNetResult:
    """Train (or resume, or reuse) the UNet in ``out_dir``; returns the best checkpoint and its val IoU.

    The train and val frames are decoded once into ``out_dir/frame_cache/`` (``vidseg.segment.cache``)
    and augmented on ``device`` a batch at a time (``vidseg.segment.augment``). Each epoch appends
    to ``UNetResult.history`` a dict with:

    - ``epoch`` (1-based), ``train_loss`` (mean over the epoch's frames), ``val_iou``;
    - ``seconds``: the whole epoch, validation included (not the frame cache's one-off decoding);
    - ``frames``: training frames seen; ``frames_per_second``: those over the wall time of the
      step loop (gathering, augmentation, forward, backward, optimizer step; no validation);
    - ``gpu_busy_fraction``: on CUDA, the time between CUDA events recorded around each step's
      compute (augmentation to optimizer step), summed, over that same wall time; ``None`` elsewhere.
      Near 1 the GPU never waits for the host; well below 1 it starves.
    """
    out_dir = Path(out_dir)
    dataset = Dataset.open(data_root)  # a bad dataset is named before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    from vidseg.accel import keep_freed_memory

    keep_freed_memory()  # each step's activations reuse the last step's pages (vidseg.accel)
    dev = pick_device(device)
    train_videos = dataset.videos("train")[: config.max_train_videos]
    val_videos = dataset.videos("val")

    torch.manual_seed(config.seed)  # the initial weights depend on the seed only
    model = UNet(3, NUM_CLASSES, bilinear=False, width=config.width).to(dev)
    model = model.to(memory_format=torch.channels_last)  # faster on CUDA, and on CPU (1.25x, bench_unet.py)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    start_epoch, best_iou, history = 0, -1.0, []

    last = out_dir / LAST
    if last.is_file():
        scheduler, start_epoch, best_iou, history = _resume(last, config, model, optimizer, scheduler, dev)
        if start_epoch >= config.epochs:
            log.info("UNet already trained: %s (val IoU %.4f)", out_dir / BEST, best_iou)
            return UNetResult(out_dir / BEST, best_iou, start_epoch, history)
        log.info("resuming UNet training at epoch %d of %d", start_epoch + 1, config.epochs)

    caches = {split: frame_cache(videos, config.size, out_dir / CACHE_DIR, config.num_workers, progress)
              for split, videos in (("train", train_videos), ("val", val_videos))}
    train_frames = DeviceFrames(caches["train"], dev)
    val_frames = DeviceFrames(caches["val"], dev)
    num_frames = caches["train"].num_frames
    val_index = frame_index(len(val_videos), range(0, num_frames, config.val_frame_stride), num_frames)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one batch shape all epoch: pick the fastest kernels once
    (out_dir / "unet_config.json").write_text(json.dumps(config.to_dict(), indent=1))
    step = _Step(model, optimizer, config, dev)

    for epoch in range(start_epoch, config.epochs):
        order, aug_generator = _epoch_order(config, epoch, len(train_videos), num_frames, dev)
        started = time.perf_counter()
        mean_loss, seen, train_seconds, gpu_busy = step.epoch(train_frames, order, aug_generator, epoch, progress)
        scheduler.step()
        val_iou = evaluate(model, _batches(val_frames, val_index, config.batch_size * 2), dev, config.amp,
                           config.background_weight)
        record = {"epoch": epoch + 1, "train_loss": mean_loss, "val_iou": val_iou,
                  "seconds": time.perf_counter() - started, "frames": seen,
                  "frames_per_second": seen / train_seconds, "gpu_busy_fraction": gpu_busy}
        history.append(record)
        improved = val_iou > best_iou
        best_iou = max(best_iou, val_iou)
        log.info("unet epoch %d/%d  loss %.4f  val IoU %.4f%s  (%.0f s, %.0f frames/s%s)", epoch + 1, config.epochs,
                 record["train_loss"], val_iou, "  best" if improved else "", record["seconds"],
                 record["frames_per_second"], "" if gpu_busy is None else f", GPU busy {gpu_busy:.0%}")
        state = {"config": config.to_dict(), "model": model.state_dict(), "epoch": epoch + 1,
                 "val_iou": val_iou, "best_val_iou": best_iou, "history": history}
        if improved:
            save_checkpoint(state, out_dir / BEST)
        save_checkpoint({**state, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                           last)
    return UNetResult(out_dir / BEST, best_iou, config.epochs, history)


def _epoch_order(config: UNetConfig, epoch: int, videos: int, num_frames: int,
                 dev: torch.device) -> tuple[torch.Tensor, torch.Generator]:
    """The epoch's training frames in their order, and its augmentation's generator: seeded by the
    seed and the epoch, so that a resumed run trains as one straight through."""
    seed = config.seed * 100_003 + epoch
    torch.manual_seed(seed)
    order_generator = torch.Generator().manual_seed(seed)
    aug_generator = torch.Generator(device=dev).manual_seed(seed)
    index = frame_index(videos, range(epoch % config.train_frame_stride, num_frames, config.train_frame_stride),
                        num_frames)
    return index[torch.randperm(len(index), generator=order_generator)], aug_generator


def _resume(last: Path, config: UNetConfig, model, optimizer, scheduler, dev):
    """The model, optimizer and learning-rate schedule as ``last`` saved them (a longer run anneals
    over its new horizon from where it was); the schedule, the next epoch, the best val IoU and the
    history. A checkpoint trained with other settings is refused, naming it."""
    state = load_checkpoint(last, map_location=dev)
    saved = UNetConfig.from_dict(state["config"])  # settings added since take their defaults
    if settings_key(saved) != settings_key(config):
        raise InputError(f"{last}: holds a UNet trained with other settings; use another --out, or delete it")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if saved.epochs == config.epochs:
        scheduler.load_state_dict(state["scheduler"])
    else:  # more epochs asked for: keep the learning rate where it was, anneal over the new horizon
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs,
                                                               last_epoch=state["epoch"] - 1)
    return scheduler, state["epoch"], state["best_val_iou"], state["history"]


class _Step:
    """The UNet's training steps: augmented on the device, weighted cross-entropy, Adam."""

    def __init__(self, model, optimizer, config: UNetConfig, dev: torch.device) -> None:
        self.model, self.optimizer, self.config, self.dev = model, optimizer, config, dev
        self.aug = Augmentation(crop=config.crop, foreground_crops=config.foreground_crops) if config.augment else None
        self.class_weight = torch.ones(NUM_CLASSES, device=dev)
        self.class_weight[0] = config.background_weight

    def epoch(self, frames: DeviceFrames, order: torch.Tensor, aug_generator: torch.Generator, epoch: int,
              progress: bool) -> tuple[float, int, float, float | None]:
        """One epoch over ``order``: its mean loss, the frames seen, the step loop's wall seconds and
        the GPU's busy share of them (None off CUDA). A loss that is not finite raises."""
        from tqdm import tqdm

        config, dev, model = self.config, self.dev, self.model
        model.train()
        started = time.perf_counter()
        total_loss, seen, steps = torch.zeros((), device=dev), 0, math.ceil(len(order) / config.batch_size)
        mark, busy = step_timer(dev)
        checks = finite_check_steps(steps)
        bar = tqdm(_batches(frames, order, config.batch_size), total=steps,
                   desc=f"unet epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not progress,
                   leave=False, dynamic_ncols=True)
        for step, (images, masks) in enumerate(bar, 1):
            mark()
            images = images.float().div_(255.0)  # (B, 3, H, W) channels_last
            if self.aug is not None:
                images, masks = augment(images, masks, self.aug, aug_generator)
            images = images.contiguous(memory_format=torch.channels_last)
            with _autocast(dev, config.amp):
                loss = F.cross_entropy(model(images), masks.long(), weight=self.class_weight)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total_loss += loss.detach() * len(images)
            seen += len(images)
            mark()
            if step - 1 in checks:
                mean_loss = total_loss.item() / seen  # a CPU-GPU sync point, a few times an epoch
                if not math.isfinite(mean_loss):
                    raise FloatingPointError(f"UNet loss became {mean_loss} at epoch {epoch + 1}")
                bar.set_postfix(loss=f"{mean_loss:.4f}")
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        train_seconds = time.perf_counter() - started
        return total_loss.item() / max(seen, 1), seen, train_seconds, busy(train_seconds)

