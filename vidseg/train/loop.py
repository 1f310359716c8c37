"""One SimVP trial: train on shards, validate as at test time, report every epoch.

``fit(config, shards, report)`` is the single training core. Ray Tune's trainable wraps it;
tests pass a list's ``append``. Nothing here imports Ray.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidseg.accel import (autocast, bf16_dtype, fast_defaults, finite_check_steps, keep_freed_memory, pick_device,
                          step_timer)
from vidseg.checkpoint import load_checkpoint, save_checkpoint
from vidseg.data.shards import ShardedArray, ShardSet
from vidseg.errors import InputError
from vidseg.metrics import JaccardAccumulator, SoftJaccardAccumulator
from vidseg.task import INPUT_FRAMES
from vidseg.train.config import TrainConfig
from vidseg.train.cost import inference_cost
from vidseg.train.decoding import DECODES, known_classes
from vidseg.train.losses import compute_loss
from vidseg.train.memory import GIB
from vidseg.train.model import build_model, compile_core

__all__ = ["fit", "probe", "FitResult", "TrialDiverged", "build_model", "MaskTable", "CHECKPOINT", "self_fed_share",
           "decoding_metric"]

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
MAX_SELF_FED = 5  # scheduled sampling: at most this many of a clip's inputs are the model's own predictions


class TrialDiverged(FloatingPointError):
    """The loss became NaN or infinite at ``epoch`` (1-based): the search ends the trial as diverged."""

    def __init__(self, message: str, epoch: int = 0) -> None:
        super().__init__(message)
        self.epoch = epoch


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def val_iou(self) -> float:
        return self.history[-1]["val_iou"] if self.history else float("nan")

    @property
    def best_val_iou(self) -> float:
        return max((r["val_iou"] for r in self.history), default=float("nan"))


class MaskTable:
    """Some mask arrays of a shard set as the rows of one (M, frames, H, W) uint8 table.

    On the device (``on_device``) the table is one tensor, uploaded once, and a batch is one
    on-device gather. Otherwise the rows stay memory-mapped views of the shards: a batch is
    stacked straight into one (pinned, on CUDA) buffer, its only copy, and sent with
    ``non_blocking`` so that the host gathers the next batch while the device computes.
    """

    def __init__(self, arrays: list[ShardedArray], device: torch.device, on_device: bool) -> None:
        self.arrays, self.device = arrays, device
        self.starts = np.cumsum([0] + [len(a) for a in arrays])
        self.table: torch.Tensor | None = None
        if on_device:  # rows of the most frames: an array of fewer (a labeled split's UNet masks) fills the first
            self.table = torch.zeros(self.shape, dtype=torch.uint8, device=device)  # no garbage past a narrow row
            row = 0
            with warnings.catch_warnings():  # the shards are read-only maps; the copy never writes them
                warnings.simplefilter("ignore", UserWarning)
                for array in arrays:
                    for part in array.parts:
                        self.table[row:row + len(part), :part.shape[1]].copy_(torch.from_numpy(part))
                        row += len(part)

    @property
    def shape(self) -> tuple[int, ...]:
        """(rows, the most frames of any array, H, W): the table on the device."""
        return (int(self.starts[-1]), max(a.shape[1] for a in self.arrays), *self.arrays[0].shape[2:])

    @property
    def nbytes(self) -> int:
        """Bytes of the masks it holds on the device (what ``vidseg.train.memory.data_bytes`` counts)."""
        return int(np.prod(self.shape))

    def row(self, array: int, index: int) -> int:
        return int(self.starts[array]) + index

    def rows_for(self, rows: np.ndarray) -> np.ndarray | torch.Tensor:
        """Row numbers as ``gather`` wants them: for a table on the device, a device tensor (made once
        per epoch: a copy from pageable host memory waits for the device)."""
        return torch.as_tensor(rows, device=self.device) if self.table is not None else rows

    def gather(self, rows: np.ndarray | torch.Tensor, frames: slice) -> torch.Tensor:
        """The chosen frames of some rows (from ``rows_for``), (B, T, H, W) uint8 on the device."""
        if self.table is not None:
            return self.table[rows, frames]
        views = []
        for r in rows:
            a = int(np.searchsorted(self.starts, r, side="right")) - 1
            views.append(self.arrays[a][int(r - self.starts[a])][frames])
        pin = self.device.type == "cuda"
        batch = torch.empty((len(views), *views[0].shape), dtype=torch.uint8, pin_memory=pin)
        np.stack(views, out=batch.numpy())
        return batch.to(self.device, non_blocking=pin)


@dataclass
class _Clips:
    """Training clips as rows of the trial's mask table: inputs (the input frames) and targets (the later ones)."""

    inputs: np.ndarray  # (N,) rows
    targets: np.ndarray  # (N,) rows

    def __len__(self) -> int:
        return len(self.inputs)


def _train_arrays(shards: ShardSet, config: TrainConfig) -> dict[str, ShardedArray]:
    """The arrays a trial trains on, in table order: train true, train UNet (if used), unlabeled UNet."""
    train = shards.split("train")
    arrays = {"true": train.true}
    if config.train_inputs != "true":
        arrays["unet"] = train.unet
    if config.pseudo_labels and "unlabeled" in shards.splits:
        arrays["pseudo"] = shards.split("unlabeled").unet
    return arrays


def _training_clips(shards: ShardSet, config: TrainConfig, rng: np.random.Generator, starts: dict[str, int]) -> _Clips:
    train = shards.split("train")
    n = len(train) if config.max_train_videos is None else min(len(train), config.max_train_videos)
    true_rows = starts["true"] + np.arange(n)
    if config.train_inputs == "mix":
        unet_rows = starts["unet"] + np.arange(n)
        inputs = np.where(rng.random(n) < config.unet_input_fraction, unet_rows, true_rows)
    else:
        inputs = starts["unet"] + np.arange(n) if config.train_inputs == "unet" else true_rows
    targets = true_rows
    if "pseudo" in starts:
        pseudo = starts["pseudo"] + np.arange(len(shards.split("unlabeled")))
        inputs, targets = np.concatenate([inputs, pseudo]), np.concatenate([targets, pseudo])
    return _Clips(inputs, targets)


def _load_checkpoint(checkpoint: dict | str | Path | None, device: torch.device) -> dict | None:
    if checkpoint is None or isinstance(checkpoint, dict):
        return checkpoint
    path = Path(checkpoint)
    if path.is_dir():
        path = path / CHECKPOINT
    return load_checkpoint(path, map_location=device)


def _save_checkpoint(state: dict, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    save_checkpoint(state, directory / CHECKPOINT)


def self_fed_share(config: TrainConfig, epoch: int) -> float:
    """Scheduled sampling: the chance that each of a clip's up to ``MAX_SELF_FED`` newest inputs is
    the model's own prediction, at ``epoch`` (0-based): 0 throughout for ``none`` (teacher
    forcing); from 0 at the first epoch, steadily to 1 at the last (``linear``), or fast at first to
    0.95 (``exponential``: 1 - 0.05 ** progress, the complement of scheduled sampling's
    exponentially decaying teacher-forcing chance)."""
    progress = epoch / max(config.epochs - 1, 1)
    if config.sampling == "linear":
        return progress
    if config.sampling == "exponential":
        return 1 - 0.05 ** progress
    return 0.0


def _next_frame_clip(model: torch.nn.Module, inputs: torch.Tensor, target: torch.Tensor, config: TrainConfig,
                     device: torch.device, dtype: torch.dtype | None, rng: np.random.Generator,
                     share: float) -> tuple[torch.Tensor, torch.Tensor]:
    """An autoregressive training example from a batch of whole clips: T consecutive frames (T
    input frames' worth, from a random offset) and the frame after them, (B, T, H, W) and (B, 1, H, W). With
    ``share`` > 0, some of the newest inputs are the model's own predictions, made without
    gradients (Binomial(MAX_SELF_FED, share) of them): the model learns to go on from its mistakes."""
    self_fed = int(rng.binomial(MAX_SELF_FED, share)) if share > 0 else 0
    start = int(rng.integers(0, INPUT_FRAMES - self_fed))  # the target, start + T + self_fed, is in the clip
    frames = torch.cat([inputs, target], 1)  # the whole clips
    window = frames[:, start:start + INPUT_FRAMES]
    if self_fed:
        with torch.no_grad(), autocast(device, dtype):
            for _ in range(self_fed):
                predicted = model.decode(model.step(window))
                window = torch.cat([window[:, 1:], predicted.to(window.dtype)], 1)
    stop = start + INPUT_FRAMES + self_fed
    return window, frames[:, stop:stop + 1]


@torch.inference_mode()
def _validate(model: torch.nn.Module, val: MaskTable, count: int, config: TrainConfig, device: torch.device,
              dtype: torch.dtype | None, batch: int, epoch: int) -> dict[str, float]:
    """The target frame from UNet inputs (as at test time) and from true inputs (the oracle), plus val loss
    and ``val_soft_iou``: the test-time Jaccard index with class probabilities in place of masks
    (``SoftJaccardAccumulator``), one continuous score for every loss type, which the scheduler
    reads to break ties in val IoU.

    Masks and probabilities are decoded as the trial's ``decode`` says (``vidseg.train.decoding``);
    the test-time IoU under every decoding is reported beside (``val_iou_plain``, ``val_iou_known``,
    ``val_iou_known_regions``), so that what a decoding gains shows per trial.

    ``val`` holds the true masks in rows 0..count-1 and the UNet's after them. Everything is
    accumulated on the device; the host reads it back once, at the end.
    """
    model.eval()
    by_decoding = {decode: JaccardAccumulator(device=device) for decode in DECODES}
    test_time, oracle = by_decoding[config.decode], JaccardAccumulator(device=device)  # the trial's own decoding
    soft = SoftJaccardAccumulator(device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    finite = torch.ones((), dtype=torch.bool, device=device)
    all_rows = val.rows_for(np.arange(2 * count))
    for start in range(0, count, batch):
        rows = all_rows[start:min(start + batch, count)]
        target = val.gather(rows, slice(INPUT_FRAMES, None))
        for offset in (count, 0):  # the UNet's input masks (test time), then the true ones (the oracle)
            masks = val.gather(rows + offset, slice(0, INPUT_FRAMES))
            with autocast(device, dtype):
                output = model(masks)  # an autoregressive model rolls out every step, as at test time
            finite &= torch.isfinite(output).all()
            known = known_classes(masks)  # once for every decoding of this batch
            if not offset:
                oracle.update(model.predict(output, masks, known=known), target[:, -1], check_range=False)
                continue
            for decode, each in by_decoding.items():
                each.update(model.predict(output, masks, decode, known), target[:, -1], check_range=False)
            soft.update(model.probabilities(output[:, -1], masks, known), target[:, -1])
            loss_sum += compute_loss(output, target, config.loss, config.last_frame_weight,
                                     config.iou_loss_weight, config.divergence_weight).double() * len(rows)
    val_loss, ok = torch.stack([loss_sum / max(count, 1), finite.double()]).tolist()  # one host sync
    if not ok:
        raise TrialDiverged(f"the model's output became NaN or infinite at epoch {epoch} (validation)", epoch)
    return {"val_iou": test_time.compute(), "val_iou_true_inputs": oracle.compute(), "val_loss": val_loss,
            "val_soft_iou": soft.compute(test_time.confmat),
            **{decoding_metric(decode): each.compute() for decode, each in by_decoding.items()}}


def decoding_metric(decode: str) -> str:
    """The report key of the test-time val IoU under ``decode``: ``val_iou_plain``, ``val_iou_known``, ..."""
    return "val_iou_" + decode.replace("+", "_")


@dataclass
class _Run:
    """One fit's working state: the device and its settings, the model (and what steps it), the
    optimiser and its schedule, and the mask tables."""

    config: TrainConfig
    shards: ShardSet
    device: torch.device
    dtype: torch.dtype | None
    micro: int
    model: torch.nn.Module
    step_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    budget: int | None = None
    train_table: MaskTable | None = None
    val_table: MaskTable | None = None
    starts: dict[str, int] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def _set_up(config: TrainConfig, shards: ShardSet) -> _Run:
    """The device and its fast settings, the allocator's cap on CUDA, the seeded model, its optimiser
    and cosine schedule."""
    device = pick_device(config.device)
    keep_freed_memory()  # no page faults on each step's large tensors (vidseg.accel)
    if config.pseudo_labels and "unlabeled" not in shards.splits:
        raise InputError(f"{shards.root}: pseudo_labels needs an unlabeled split, and this shard set has none")
    speed = {k: v if (v := getattr(config, k)) is not None else default for k, default in fast_defaults(device).items()}
    budget = None
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = speed["tf32"]
        total = torch.cuda.get_device_properties(device).total_memory
        # set every time: the cap is per process, and a later fit in the same process must not inherit it
        fraction = 1.0 if config.memory_budget_gb is None else min(1.0, config.memory_budget_gb * GIB / total)
        torch.cuda.set_per_process_memory_fraction(fraction, device)
        budget = int(fraction * total) if config.memory_budget_gb is not None else torch.cuda.mem_get_info(device)[0]
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(config.seed)  # the initial weights depend on the seed only
    model = build_model(config, *shards.resolution).to(device)
    if speed["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if speed["compile"]:
        torch._dynamo.reset()  # a process that ran other trials must not hit dynamo's recompile limit
    step_model = compile_core(model) if speed["compile"] else model  # SimVP compiled, in place
    dtype = bf16_dtype(device, config.amp)  # mse too: its readout (fp32_readout) and loss stay in fp32
    return _Run(config, shards, device, dtype, config.micro_batch_size or config.batch_size, model, step_model,
                optimizer, scheduler, budget)


def _resume(run: _Run, checkpoint: dict | str | Path | None) -> tuple[int, list[dict[str, Any]]]:
    """The epoch to start from and the history so far: a checkpoint's, refused where it was made with
    a config that learns differently; (0, []) without one."""
    state = _load_checkpoint(checkpoint, run.device)
    if state is None:
        return 0, []
    saved = TrainConfig.from_dict(state["config"]).result_fields()
    wanted = run.config.result_fields()
    if saved != wanted:
        differing = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
        raise InputError(f"checkpoint was made with another config (differs in {', '.join(differing)})")
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    return state["epoch"], list(state["history"])


def _load_tables(run: _Run) -> None:
    """The trial's masks as tables: on the device where they fit its budget (or the free memory)
    beside the modelled peak, else memory-mapped on the host."""
    from vidseg.train.memory import data_bytes, estimate_peak_bytes

    config, shards = run.config, run.shards
    arrays = _train_arrays(shards, config)
    val_split = shards.split("val")
    on_device = config.data_on_device
    if on_device is None:
        counts = {split: len(shards.split(split)) for split in shards.splits}
        need = data_bytes(config, counts, shards.resolution) + estimate_peak_bytes(config, shards.resolution, run.micro)
        on_device = run.cuda and need <= run.budget
    run.train_table = MaskTable(list(arrays.values()), run.device, on_device)
    run.starts = dict(zip(arrays, (int(s) for s in run.train_table.starts)))
    run.val_table = MaskTable([val_split.true, val_split.unet], run.device, on_device)


def _train_epoch(run: _Run, epoch: int, progress: bool) -> dict[str, float]:
    """One epoch of training (0-based ``epoch``, seeded by it, so a resumed run matches an
    uninterrupted one): the mean training loss, the samples, and where the time went."""
    from tqdm import tqdm

    config, model, device, table = run.config, run.model, run.device, run.train_table
    seed = config.seed * 1_000_003 + epoch
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    rollout_rng = np.random.default_rng([seed, 1])  # offsets and self-fed steps of autoregressive clips
    clips = _training_clips(run.shards, config, rng, run.starts)
    order = rng.permutation(len(clips))
    input_rows = table.rows_for(clips.inputs[order])  # in the epoch's order, on the table's device
    target_rows = table.rows_for(clips.targets[order])
    flips = torch.from_numpy(rng.random(len(order)) < 0.5).to(device) if config.flip_augment else None
    model.train()
    started, data_seconds = time.perf_counter(), 0.0
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    finite = torch.ones((), dtype=torch.bool, device=device)
    steps = math.ceil(len(order) / config.batch_size)
    checks = finite_check_steps(steps)
    mark, busy = step_timer(device)
    for step in tqdm(range(steps), desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress, leave=False):
        fetch = time.perf_counter()
        chosen = slice(step * config.batch_size, (step + 1) * config.batch_size)
        inputs = table.gather(input_rows[chosen], slice(0, INPUT_FRAMES))
        target = table.gather(target_rows[chosen], slice(INPUT_FRAMES, None))
        if flips is not None:  # the scene mirrored: physics and classes are left-right symmetric
            mirror = flips[chosen].view(-1, 1, 1, 1)
            inputs, target = torch.where(mirror, inputs.flip(-1), inputs), torch.where(mirror, target.flip(-1), target)
        data_seconds += time.perf_counter() - fetch
        if config.rollout == "autoregressive":  # one next frame per clip, after some self-fed steps
            inputs, target = _next_frame_clip(model, inputs, target, config, device, run.dtype, rollout_rng,
                                              self_fed_share(config, epoch))
        mark()
        loss_sum += _step(run, inputs, target, finite)
        mark()
        if step in checks and not bool(finite):  # a host sync, a constant number of times per epoch
            raise TrialDiverged(f"loss became NaN or infinite at epoch {epoch + 1} (by batch {step + 1} of {steps})",
                                epoch + 1)
    gpu_busy = busy(time.perf_counter() - started)  # on CUDA it waits for the device first
    return {"train_loss": float(loss_sum) / max(len(order), 1), "samples": len(order), "started": started,
            "train_seconds": time.perf_counter() - started, "data_seconds": data_seconds, "gpu_busy": gpu_busy}


def _step(run: _Run, inputs: torch.Tensor, target: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
    """One optimiser step over a batch, in micro-batches; returns the batch's summed loss, and
    records in ``finite`` (on the device) whether every loss was finite."""
    config, micro = run.config, run.micro
    run.optimizer.zero_grad(set_to_none=True)
    clips_in_batch = len(inputs)
    loss_sum = torch.zeros((), dtype=torch.float64, device=run.device)
    for part in range(0, clips_in_batch, micro):
        with autocast(run.device, run.dtype):
            clip = inputs[part:part + micro]
            output = run.step_model.step(clip) if config.rollout == "autoregressive" else run.step_model(clip)
            loss = compute_loss(output, target[part:part + micro], config.loss, config.last_frame_weight,
                                config.iou_loss_weight, config.divergence_weight)
        share = min(micro, clips_in_batch - part)
        (loss * (share / clips_in_batch)).backward()
        loss = loss.detach()
        loss_sum += loss.double() * share
        finite &= torch.isfinite(loss)
    if config.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip)
    run.optimizer.step()
    return loss_sum


def fit(config: TrainConfig, shards: ShardSet | str | Path, report: Callable[[dict[str, Any]], Any],
        checkpoint: dict | str | Path | None = None, checkpoint_dir: str | Path | None = None,
        progress: bool = False, share: float = 1.0) -> FitResult:
    """Train one SimVP configuration; call ``report(metrics)`` after every epoch.

    ``checkpoint`` (a dict, a ``checkpoint.pt`` or its folder) resumes where it stopped. With
    ``checkpoint_dir``, each epoch's state (model, optimizer, scheduler, epoch, config) is saved
    there, atomically, before ``report`` is called.

    The step loop never waits for the device: the loss is summed and checked for NaN on the
    device, and the host reads that back a constant number of times per epoch
    (``finite_check_steps``). On CUDA the trial's masks live on the GPU where they fit its memory
    budget (``data_on_device``), the budget is enforced on the allocator, and each report adds
    ``gpu_busy_fraction`` (the stream's time from the start to the end of each step, from CUDA
    events, against the epoch's wall time: gaps between kernels inside a step count as busy, only
    host time between steps as idle) and ``peak_memory_gb`` (``max_memory_allocated``).

    Every report carries the trial's cost (``vidseg.train.cost``): ``device_seconds``, the wall time
    since fit started (set-up included, an earlier run's carried on from the checkpoint) times
    ``share`` (the CPUs, or the share of a GPU, the trial holds), and of it the training and the
    validation time (``train_device_seconds``, ``val_device_seconds``); and its model's ``params``,
    ``macs`` and ``ms_per_clip`` for one clip on the trial's device.
    """
    if not isinstance(shards, ShardSet):
        shards = ShardSet.open(shards, verify=False)  # sizes, schemas and ids; checksums are the driver's job
    held_since = time.perf_counter()  # device time: from here, the set-up included
    run = _set_up(config, shards)
    start_epoch, history = _resume(run, checkpoint)
    _load_tables(run)
    with autocast(run.device, run.dtype):  # as it predicts at test time
        cost = inference_cost(run.model, *shards.resolution)
    val_count = len(shards.split("val"))
    for epoch in range(start_epoch, config.epochs):
        trained = _train_epoch(run, epoch, progress)
        lr = run.optimizer.param_groups[0]["lr"]
        run.scheduler.step()
        validating = time.perf_counter()
        validated = _validate(run.model, run.val_table, val_count, config, run.device, run.dtype, run.micro, epoch + 1)
        now = time.perf_counter()
        before = history[-1] if history else {}
        metrics = {"epoch": epoch + 1, "train_loss": trained["train_loss"], **validated,
                   "lr": lr, "epoch_seconds": now - trained["started"],
                   "samples_per_second": trained["samples"] / max(trained["train_seconds"], 1e-9),
                   "data_fraction": trained["data_seconds"] / max(trained["train_seconds"], 1e-9),
                   "train_seconds": trained["train_seconds"], "val_seconds": now - validating,
                   # device time so far (a checkpoint's history carries it on): share x wall seconds
                   "device_seconds": before.get("device_seconds", 0.0) + share * (now - held_since),
                   "train_device_seconds": before.get("train_device_seconds", 0.0) + share * trained["train_seconds"],
                   "val_device_seconds": before.get("val_device_seconds", 0.0) + share * (now - validating),
                   "device_share": share, **cost}
        held_since = now
        if run.cuda:
            metrics["gpu_busy_fraction"] = trained["gpu_busy"]
            metrics["peak_memory_gb"] = torch.cuda.max_memory_allocated(run.device) / GIB
        if not math.isfinite(metrics["val_loss"]):
            raise TrialDiverged(f"validation loss became {metrics['val_loss']} at epoch {epoch + 1}", epoch + 1)
        history.append(metrics)
        if checkpoint_dir is not None:
            _save_checkpoint({"config": config.to_dict(), "model": run.model.state_dict(),
                              "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                              "epoch": epoch + 1, "history": history}, Path(checkpoint_dir))
        report(metrics)
    return FitResult(history)


def probe(config: TrainConfig, shards: ShardSet | str | Path, steps: int = 3) -> dict[str, float]:
    """What one trial of ``config`` costs on this device, measured on a few steps of ``fit``'s own
    path (``search.tools.estimate`` interpolates between probes): the set-up (model, tables, the
    inference cost), seconds per training sample (``steps`` optimiser steps, each gathering its
    batch as an epoch does, after one that warms kernels and caches: ``warmup_s``, what it took
    beyond the others), seconds per validation clip (one batch of ``_validate``, after one that
    warms its path: ``warmup_s`` adds what that one took beyond it), a checkpoint's save, and the model's cost (``vidseg.train.cost.inference_cost``)."""
    import tempfile

    if not isinstance(shards, ShardSet):
        shards = ShardSet.open(shards, verify=False)
    started = time.perf_counter()
    run = _set_up(config, shards)
    _load_tables(run)
    with autocast(run.device, run.dtype):
        cost = inference_cost(run.model, *shards.resolution)
    setup_s = time.perf_counter() - started
    rng = np.random.default_rng(config.seed)
    clips = _training_clips(shards, config, rng, run.starts)
    batch = min(config.batch_size, len(clips))
    order = np.resize(rng.permutation(len(clips)), batch * (steps + 1))  # a new batch each step, as an epoch runs
    input_rows, target_rows = (run.train_table.rows_for(clips.inputs[order]),
                               run.train_table.rows_for(clips.targets[order]))
    finite = torch.ones((), dtype=torch.bool, device=run.device)
    run.model.train()

    def sync() -> None:
        if run.cuda:
            torch.cuda.synchronize(run.device)

    timed = 0.0
    for step in range(steps + 1):
        sync()
        mark = time.perf_counter()
        chosen = slice(step * batch, (step + 1) * batch)
        inputs = run.train_table.gather(input_rows[chosen], slice(0, INPUT_FRAMES))
        target = run.train_table.gather(target_rows[chosen], slice(INPUT_FRAMES, None))
        if config.rollout == "autoregressive":
            clip_in, clip_target = _next_frame_clip(run.model, inputs, target, config, run.device, run.dtype, rng,
                                                    self_fed_share(config, config.epochs // 2))
        else:
            clip_in, clip_target = inputs, target
        _step(run, clip_in, clip_target, finite)
        sync()
        if step:  # the first step warms caches and kernels: what it takes beyond the others is the trial's once
            timed += time.perf_counter() - mark
        else:
            first = time.perf_counter() - mark
    val_count = len(shards.split("val"))
    count = min(val_count, run.micro)
    val_s = []
    for _ in range(2):  # the first warms the validation path's kernels: its time beyond the second is the trial's once
        mark = time.perf_counter()
        _validate(run.model, run.val_table, count, config, run.device, run.dtype, run.micro, 1)
        sync()
        val_s.append(time.perf_counter() - mark)
    with tempfile.TemporaryDirectory(prefix="vidseg-probe-") as folder:
        mark = time.perf_counter()
        _save_checkpoint({"config": config.to_dict(), "model": run.model.state_dict(),
                          "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                          "epoch": 1, "history": []}, Path(folder))
        checkpoint_s = time.perf_counter() - mark
    return {"setup_s": setup_s, "warmup_s": max(0.0, first - timed / steps) + max(0.0, val_s[0] - val_s[1]),
            "train_s_per_sample": timed / (steps * batch), "val_s_per_clip": val_s[1] / max(count, 1),
            "checkpoint_s": checkpoint_s, **cost}
