"""Pre-segment every split with the trained UNet into Arrow shards, one shard per Ray task.

This is the one module of ``vidseg`` that uses Ray. On a cluster each task takes a GPU share
where there are GPUs; on one machine the same code runs on a local Ray instance. Shards are
written atomically, and a rerun skips every shard that is already complete and valid.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidseg.atomic import atomic_path
from vidseg.checkpoint import load_checkpoint
from vidseg.data.layout import FRAMES, LABELED_SPLITS, Dataset, Video
from vidseg.data.shards import MANIFEST, ShardError, read_shard, sha256_file, write_manifest, write_shard
from vidseg.errors import InputError
from vidseg.models import UNet
from vidseg.segment.frames import resize_images, resize_masks
from vidseg.task import FRAME_SIZE, INPUT_FRAMES, NUM_CLASSES

__all__ = ["ShardPlan", "plan_shards", "segment_video", "presegment", "UNET_FRAMES"]

log = logging.getLogger(__name__)

# The frames of each split the UNet segments: what the trials read. A labeled video's UNet masks are
# only ever inputs (its targets are the true masks), so its input frames; an unlabeled video's are
# pseudo-labels, inputs and targets, so all; a hidden video has only its input frames. Half the
# frames of train and val: the pre-segmentation's time, nearly halved.
UNET_FRAMES = {split: INPUT_FRAMES if split in LABELED_SPLITS else frames for split, frames in FRAMES.items()}


@dataclass(frozen=True)
class ShardPlan:
    split: str
    file: str  # name inside the shard folder
    video_ids: tuple[int, ...]
    video_paths: tuple[str, ...]

    @property
    def labeled(self) -> bool:
        return self.split in LABELED_SPLITS


def plan_shards(dataset: Dataset, videos_per_shard: int) -> list[ShardPlan]:
    """Cut each split's videos, in numeric order, into shards of ``videos_per_shard``."""
    if videos_per_shard < 1:
        raise InputError(f"videos_per_shard is {videos_per_shard}, but must be >= 1")
    plans = []
    for split, videos in dataset.splits.items():
        for index, start in enumerate(range(0, len(videos), videos_per_shard)):
            chunk = videos[start:start + videos_per_shard]
            plans.append(ShardPlan(split, f"{split}-{index:05d}.arrow", tuple(v.video_id for v in chunk),
                                   tuple(str(v.path) for v in chunk)))
    return plans


@torch.inference_mode()
def segment_video(model: UNet, video: Video, unet_size: tuple[int, int], out_size: tuple[int, int],
                  device: torch.device, batch_size: int = 32, background_weight: float = 1.0,
                  frames: int | None = None, score=None) -> tuple[np.ndarray, np.ndarray | None]:
    """The UNet's masks of the first ``frames`` frames (default: all) (T, H, W) uint8 at ``out_size``,
    and the true masks of every frame if labeled. With ``score`` (a ``JaccardAccumulator``) and a
    labeled video, the UNet's masks of those frames are scored against the true ones at the UNet's
    own size, as ``vidseg.segment.pretrained.val_jaccard`` scores them.

    ``background_weight`` is the one the UNet was trained with; its effect is undone (prior_correction).
    """
    from vidseg.segment.train import predict, prior_correction

    bias = prior_correction(background_weight, device)
    images_in = torch.from_numpy(video.frames(size=None, count=frames)).permute(0, 3, 1, 2)  # (T, 3, H0, W0) uint8
    predicted = []
    for start in range(0, len(images_in), batch_size):
        images = resize_images(images_in[start:start + batch_size].to(device).float() / 255.0, unet_size)
        predicted.append(predict(model, images.contiguous(memory_format=torch.channels_last), bias).to(torch.uint8))
    predicted = torch.cat(predicted)
    unet_masks = resize_masks(predicted, out_size).cpu().numpy()
    true_masks = None
    if video.labeled:
        true = torch.from_numpy(video.masks(size=None).astype(np.uint8))
        true_masks = resize_masks(true, out_size).numpy()
        if score is not None:
            score.update(predicted, resize_masks(true[:len(predicted)], unet_size).to(predicted.device))
    return unet_masks, true_masks


SCORED = "val"  # the split whose shards score the UNet as they are made: its val Jaccard here


def _shard_entry(path: Path, plan: ShardPlan, confusion: list[list[int]] | None = None) -> dict[str, Any]:
    """A shard's manifest entry; a scored split's carries the UNet's confusion counts on its videos,
    ``[[true, predicted, pixels], ...]`` (nonzero cells only), kept for a rerun that reuses the shard."""
    entry = {"file": plan.file, "video_ids": list(plan.video_ids), "num_videos": len(plan.video_ids),
             "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    if confusion is not None:
        entry["unet_confusion"] = confusion
    return entry


def _confusion_cells(confmat: torch.Tensor) -> list[list[int]]:
    cells = torch.nonzero(confmat)
    return [[int(i), int(j), int(confmat[i, j])] for i, j in cells.tolist()]


def unet_val_jaccard(entries: list[dict[str, Any]]) -> float | None:
    """The UNet's Jaccard index over the scored split's shards (their ``unet_confusion``), None where
    one lacks it (a shard set made before shards were scored)."""
    from vidseg.metrics import jaccard_from_confusion

    if not entries or any("unet_confusion" not in entry for entry in entries):
        return None
    confmat = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.int64)
    for entry in entries:
        for i, j, pixels in entry["unet_confusion"]:
            confmat[i, j] += pixels
    return float(jaccard_from_confusion(confmat))


def _valid_existing(path: Path, plan: ShardPlan, out_size: tuple[int, int], unet_sha: str) -> bool:
    if not path.is_file():
        return False
    try:
        info, _, _ = read_shard(path)
    except ShardError as err:
        log.warning("redoing %s", err)
        return False
    return (info.split, info.frames, (info.height, info.width), info.labeled, tuple(info.video_ids),
            info.unet_sha256, info.unet_frames) == (plan.split, FRAMES[plan.split], tuple(out_size), plan.labeled,
                                                    plan.video_ids, unet_sha, UNET_FRAMES[plan.split])


def _segment_shard(plan: ShardPlan, checkpoint: bytes, unet_sha: str, out_dir: str, unet_size: tuple[int, int],
                   out_size: tuple[int, int], device: str, threads: int) -> dict[str, Any]:
    """One unit of work: load the UNet, segment a shard's videos (scoring them, in the scored split),
    write the shard atomically."""
    from vidseg.accel import keep_freed_memory
    from vidseg.metrics import JaccardAccumulator
    from vidseg.segment.train import load_unet, pick_device

    if threads:
        torch.set_num_threads(threads)
    keep_freed_memory()  # a video's logits (every frame's class scores) are mapped once, not per video
    dev = pick_device(device)
    model, state = load_unet(checkpoint, dev)
    model = model.to(memory_format=torch.channels_last)  # as it trained: 1.6x faster than NCHW here (bf16 CPU)
    background_weight = state["config"]["background_weight"]
    unet_masks, true_masks = [], []
    score = JaccardAccumulator(device=dev) if plan.split == SCORED else None
    for vid, path in zip(plan.video_ids, plan.video_paths):
        unet, true = segment_video(model, Video(plan.split, vid, Path(path)), unet_size, out_size, dev,
                                   background_weight=background_weight, frames=UNET_FRAMES[plan.split], score=score)
        unet_masks.append(unet)
        if true is not None:
            true_masks.append(true)
    path = Path(out_dir) / plan.file
    write_shard(path, plan.split, np.asarray(plan.video_ids), np.stack(unet_masks),
                np.stack(true_masks) if plan.labeled else None, unet_sha)
    return _shard_entry(path, plan, None if score is None else _confusion_cells(score.confmat.cpu()))


def presegment(data_root: Path | str, out_dir: Path | str, checkpoint: Path | str,
               out_size: tuple[int, int] = FRAME_SIZE, videos_per_shard: int = 64, address: str | None = None,
               use_ray: bool = True, device: str = "auto", progress: bool = True) -> Path:
    """Write every split's shards and ``manifest.json``; returns the manifest's path.

    With ``use_ray`` (the default) each shard is a Ray task: on the cluster at ``address``, or on
    a local Ray instance started here. Without it the shards are made one by one in this process.
    """
    from tqdm import tqdm

    data_root, out_dir, checkpoint = Path(data_root), Path(out_dir), Path(checkpoint)
    dataset = Dataset.open(data_root)
    payload = checkpoint.read_bytes()  # read once: hashed here, loaded by every task
    state = load_checkpoint(payload, name=str(checkpoint))
    unet_sha = hashlib.sha256(payload).hexdigest()
    unet_size = tuple(state["config"]["size"])
    out_dir.mkdir(parents=True, exist_ok=True)
    plans = plan_shards(dataset, videos_per_shard)
    for stale in out_dir.glob(".*.arrow.tmp*"):  # half-written by a killed run
        stale.unlink()
    entries: dict[str, dict[str, Any]] = {}
    todo = []
    kept = _kept_entries(out_dir)
    for plan in plans:
        path = out_dir / plan.file
        if _valid_existing(path, plan, out_size, unet_sha):
            entries[plan.file] = _shard_entry(path, plan, kept.get(plan.file, {}).get("unet_confusion"))
        else:
            todo.append(plan)
    if entries:
        log.info("reusing %d finished shard(s); %d to make", len(entries), len(todo))
    if todo:  # the old manifest no longer describes the folder
        (out_dir / MANIFEST).unlink(missing_ok=True)
    started = time.perf_counter()
    bar = tqdm(total=len(todo), desc="shards", unit="shard", disable=not progress or not todo, dynamic_ncols=True)
    if todo and use_ray:
        entries.update(_run_on_ray(todo, payload, unet_sha, out_dir, unet_size, out_size, device,
                                   address, bar))
    else:
        for plan in todo:
            entries[plan.file] = _segment_shard(plan, payload, unet_sha, str(out_dir), unet_size, out_size,
                                                device, 0)
            bar.update()
    bar.close()
    if todo:
        seconds = time.perf_counter() - started
        videos = sum(len(p.video_ids) for p in todo)
        log.info("segmented %d videos in %.1f s (%.1f videos/s)", videos, seconds, videos / max(seconds, 1e-9))

    return write_manifest(out_dir, _manifest(dataset, data_root, out_dir, checkpoint, state, unet_sha, unet_size,
                                             out_size, plans, entries))


def _manifest(dataset: Dataset, data_root: Path, out_dir: Path, checkpoint: Path, state: dict[str, Any],
              unet_sha: str, unet_size: tuple[int, int], out_size: tuple[int, int], plans,
              entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The shard set's manifest: its resolution, the UNet that segmented it (with its val IoU as measured on
    this dataset's val shards), the splits' shards, and the hidden split's answers where the dataset has them."""
    splits: dict[str, Any] = {}
    for plan in plans:
        split = splits.setdefault(plan.split, {"frames": FRAMES[plan.split], "unet_frames": UNET_FRAMES[plan.split],
                                               "labeled": plan.labeled, "num_videos": 0, "shards": []})
        split["num_videos"] += len(plan.video_ids)
        split["shards"].append(entries[plan.file])
    measured = unet_val_jaccard(splits.get(SCORED, {}).get("shards", []))
    manifest = {
        "resolution": {"height": out_size[0], "width": out_size[1]},
        "num_classes": NUM_CLASSES,
        "dataset": {"root": str(data_root.resolve())},
        # val_iou: on this dataset's val videos, the frames the trials read, scored as they were segmented
        # (else the checkpoint's own); val_iou_checkpoint: what the checkpoint says of itself
        "unet": {"checkpoint": str(checkpoint.resolve()), "sha256": unet_sha,
                 "val_iou": measured if measured is not None else state.get("val_iou"),
                 "val_iou_checkpoint": state.get("val_iou"),
                 "epoch": state.get("epoch"), "width": state["config"]["width"], "size": list(unet_size)},
        "splits": splits,
    }
    answers = _carry_hidden_answers(dataset, out_dir, splits)
    if answers is not None:
        manifest["hidden_answers"] = answers
    return manifest


def _kept_entries(out_dir: Path) -> dict[str, dict[str, Any]]:
    """The shard entries of the folder's manifest, where one is there: what a reused shard keeps."""
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
        return {entry["file"]: entry for split in manifest["splits"].values() for entry in split["shards"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


HIDDEN_ANSWERS = "hidden_answers.npy"


def _carry_hidden_answers(dataset: Dataset, out_dir: Path, splits: dict[str, Any]) -> dict[str, Any] | None:
    """Copy the dataset's known hidden answers (the synthetic set has them; the competition keeps
    its own) into the shard set, so that they travel with it to any machine that scores a search."""
    source = dataset.hidden_answers_path
    if not source.is_file() or "hidden" not in splits:
        return None
    ids = [v for shard in splits["hidden"]["shards"] for v in shard["video_ids"]]
    with atomic_path(out_dir / HIDDEN_ANSWERS) as tmp:
        shutil.copyfile(source, tmp)
    return {"file": HIDDEN_ANSWERS, "sha256": sha256_file(out_dir / HIDDEN_ANSWERS), "video_ids": ids}


def _run_on_ray(todo: list[ShardPlan], checkpoint: bytes, unet_sha: str, out_dir: Path, unet_size, out_size,
                device: str, address: str | None, bar) -> dict[str, dict[str, Any]]:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, log_to_driver=False, include_dashboard=False, configure_logging=False)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        use_gpu = gpus > 0 and device in ("auto", "cuda")
        # On GPUs a shard is light work: share each GPU between a few tasks.
        task = ray.remote(_segment_shard).options(num_cpus=1, num_gpus=0.25 if use_gpu else 0, max_retries=2)
        threads = 0 if use_gpu else 1
        ref_checkpoint = ray.put(checkpoint)
        pending = {task.remote(plan, ref_checkpoint, unet_sha, str(out_dir), unet_size, out_size,
                               "cuda" if use_gpu else "cpu", threads): plan for plan in todo}
        entries = {}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                plan = pending.pop(ref)
                try:
                    entries[plan.file] = ray.get(ref)
                except ray.exceptions.RayTaskError as err:
                    cause = getattr(err, "cause", None)
                    raise (cause if isinstance(cause, Exception) else RuntimeError(str(err).splitlines()[0])) from None
                bar.update()
        return entries
    finally:
        if started_here:
            ray.shutdown()
