"""Preparing a search's data: dataset -> UNet -> Arrow shards, each step cached and reused.

``DataSource`` says where the data comes from: the demo generator (the default), a dataset root in
the competition layout (``--data``), or a shard set made before (``--shards``, a folder or a URI).
``prepare_dataset`` runs before Ray starts (the generator's worker processes must not inherit
Ray's handlers); ``prepare_shards`` trains the profile's UNet and pre-segments every split.
``fit_space`` narrows the profile's space to what the shard set can run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.run.settings import UsageError
from search.space import Profile
from vidseg.data.remote import is_uri

__all__ = ["DataSource", "DATA_DIR", "prepare_dataset", "prepare_shards", "shard_counts", "fit_space", "demo_root"]

log = logging.getLogger("vidseg.search")

DATA_DIR = Path("data")  # the default --data-dir


@dataclass(frozen=True)
class DataSource:
    data: Path | None = None  # a dataset root in the competition layout
    shards: str | None = None  # a shard set made before
    data_dir: Path | None = None  # where prepared data is cached
    workers: int | None = None  # processes for the demo generator
    train_unet: bool = False  # demo: train the UNet instead of using the shipped one

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DataSource:
        return cls(args.data, args.shards, args.data_dir, args.workers, bool(getattr(args, "train_unet", False)))


def prepare_dataset(source: DataSource, profile: Profile, seed: int) -> Path | None:
    """The dataset root, generated for the demo and checked; None when shards are given (they are
    checked here instead: ShardError names the file)."""
    from vidseg.data.check import check_dataset, print_errors
    from vidseg.data.remote import cached_shards
    from vidseg.data.shards import ShardSet

    if source.shards is not None:
        ShardSet.open(cached_shards(source.shards), verify=True)
        return None
    if source.data is not None:
        if not source.data.is_dir():
            raise UsageError(f"{source.data}: no such dataset folder")
        root = source.data
    else:
        root = _demo_dataset(source, profile, seed)
    log.info("[1/4] checking the dataset %s", root)
    report = check_dataset(root, progress=sys.stderr.isatty())
    if not report.ok:
        print_errors(report, max_errors=20)
        raise UsageError(f"{root}: not a valid dataset (see the errors above)")
    return root


def prepare_shards(source: DataSource, profile: Profile, seed: int, root: Path | None, *, address: str | None = None,
                   use_ray: bool = True) -> str:
    """The shard set the trials read: given, or made (and cached) from the dataset root, each shard
    a Ray task (on the Ray this process joined, else on one started for them at ``address``, or
    locally) unless not ``use_ray``."""
    from vidseg.segment.presegment import presegment

    if root is None:
        return source.shards if is_uri(source.shards) else str(Path(source.shards).resolve())
    if source.data is not None:
        cache = (source.data_dir or DATA_DIR) / "shards" / f"{root.resolve().name}-{profile.name}"
    else:
        cache = root.parent / f"{root.name}-shards-{profile.resolution[0]}x{profile.resolution[1]}"
    progress = sys.stderr.isatty()
    if profile.unet_shipped and source.data is None and not source.train_unet:
        checkpoint = _shipped_unet(root, cache)
    else:
        checkpoint = _train_unet(root, cache, profile, seed, progress)
    log.info("[3/4] pre-segmenting every split into shards at %dx%d: %s", *profile.resolution, cache)
    started = time.perf_counter()
    manifest = json.loads(presegment(root, cache, checkpoint, out_size=profile.resolution,
                                     videos_per_shard=16 if profile.name != "full" else 64, address=address,
                                     use_ray=use_ray, progress=progress).read_text())
    log.info("      UNet val Jaccard %.3f on this dataset's val videos, the frames the trials read (scored as they "
             "were segmented)", manifest["unet"]["val_iou"])
    log.info("      shards ready (%.0f s)", time.perf_counter() - started)
    return str(cache.resolve())


def _shipped_unet(root: Path, cache: Path) -> Path:
    """The shipped UNet (refused, in one line, when its generator version is not this one), copied
    into the cache. Its val Jaccard on this dataset is scored as the val videos are segmented
    (``vidseg.segment.presegment``: the manifest's ``unet.val_iou``), not in a pass of its own."""
    import hashlib

    from vidseg.atomic import atomic_path
    from vidseg.checkpoint import save_checkpoint
    from vidseg.segment.pretrained import SHIPPED, check_shipped

    state = check_shipped(SHIPPED)
    digest = hashlib.sha256(SHIPPED.read_bytes()).hexdigest()[:8]
    unet_dir = cache / f"unet-shipped-{digest}"
    checkpoint = unet_dir / "unet_best.pt"
    log.info("[2/4] UNet shipped with the project, %s (width %d at %dx%d, val Jaccard %.3f on its recipe's val "
             "videos; --train-unet trains one instead)", SHIPPED, state["config"]["width"], *state["config"]["size"],
             state["val_iou"])
    started = time.perf_counter()
    if not checkpoint.is_file():
        unet_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(checkpoint) as tmp:
            save_checkpoint(state, tmp)
    log.info("      UNet ready (%.0f s)", time.perf_counter() - started)
    return checkpoint


def _train_unet(root: Path, cache: Path, profile: Profile, seed: int, progress: bool) -> Path:
    from vidseg.segment.train import UNetConfig, settings_key, train_unet

    unet = UNetConfig(width=profile.unet_width, size=profile.unet_size, epochs=profile.unet_epochs,
                      train_frame_stride=profile.unet_frame_stride, crop=profile.unet_crop,
                      foreground_crops=profile.unet_foreground_crops, lr=profile.unet_lr,
                      num_workers=min(8, os.cpu_count() or 1),  # decode once into the frame cache
                      seed=seed)
    unet_dir = cache / f"unet-{settings_key(unet)}"  # a profile's new UNet recipe trains anew, beside the old
    log.info("[2/4] UNet (width %d at %dx%d, %d epochs) in %s", unet.width, *unet.size, unet.epochs, unet_dir)
    started = time.perf_counter()
    result = train_unet(root, unet_dir, unet, progress=progress)
    log.info("      UNet val IoU %.3f (%.0f s)", result.val_iou, time.perf_counter() - started)
    return result.checkpoint


def demo_root(data_dir: Path, profile: Profile, seed: int) -> Path:
    """Where the demo dataset of ``profile`` is cached, e.g. ``data/demo/seed0-240t-48v-24u-12h``: named
    by its counts too, so that a profile whose counts change makes a new one beside the old (the
    generator refuses to add to a dataset made with other settings)."""
    counts = "-".join(f"{n}{split[0]}" for split, n in profile.counts.items())
    return data_dir / profile.name / f"seed{seed}-{counts}"


def _demo_dataset(source: DataSource, profile: Profile, seed: int) -> Path:
    from vidseg.data import synth

    root = demo_root(source.data_dir or DATA_DIR, profile, seed)
    log.info("[0/4] demo dataset %s (%s)", root, ", ".join(f"{k} {v}" for k, v in profile.counts.items()))
    started = time.perf_counter()
    manifest = synth.generate(root, profile.counts, synth.SynthConfig(seed=seed), workers=source.workers or os.cpu_count() or 1)
    log.info("      copy-last-frame IoU on val: %.3f (%.0f s)", manifest["motion"]["copy_last_frame_iou_val"],
             time.perf_counter() - started)
    return root


def shard_counts(shards: str, manifest: dict | None = None) -> dict[str, int]:
    """Videos per split of a shard set (a folder or a URI), from its manifest (read here unless given)."""
    from vidseg.data.remote import read_manifest

    manifest = manifest or read_manifest(shards)
    return {split: sum(len(shard["video_ids"]) for shard in entry["shards"]) for split, entry in manifest["splits"].items()}


def fit_space(profile: Profile, shards: str) -> tuple[Profile, dict[str, Any]]:
    """The profile narrowed to what the shard set can run (``search.space.fit_to_shards``), one
    line logged per value left out, and the limits to keep in the settings (for --resume)."""
    from search.space import fit_to_shards, limits_of
    from vidseg.data.remote import read_manifest

    manifest = read_manifest(shards)
    resolution = manifest["resolution"]
    labeled = tuple(name for name, entry in manifest["splits"].items() if entry.get("labeled"))
    fitted, notes = fit_to_shards(profile, (resolution["height"], resolution["width"]), shard_counts(shards, manifest),
                                  labeled)
    for note in notes:
        log.warning("%s", note)
    return fitted, {**limits_of(fitted), "notes": notes}
