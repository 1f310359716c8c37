"""One SimVP trial's step time, and the share of it spent loading data from shards.

    python tests/bench/bench_trial.py                       # 40x60, the CPU demo's model
    python tests/bench/bench_trial.py --size 160x240 --videos 64 --N-S 4 --N-T 8 --hid-S 64 --hid-T 256 --groups 4

It generates a small synthetic set, writes shards from its true masks (no UNet needed: the
masks' content does not change the cost), and runs ``fit`` for a few epochs. The target is a
data-loading share under 5% of the training time. Not part of the tests.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from vidseg.data.layout import Dataset
from vidseg.data.shards import sha256_file, write_manifest, write_shard
from vidseg.data.synth import SynthConfig, generate
from vidseg.segment.frames import resize_masks
from vidseg.train import TrainConfig, fit


def shard_set(root: Path, out: Path, size: tuple[int, int]) -> Path:
    dataset = Dataset.open(root)
    splits = {}
    for split in ("train", "val"):
        videos = dataset.videos(split)
        masks = resize_masks(torch.from_numpy(np.stack([v.masks().astype(np.uint8) for v in videos])), size).numpy()
        ids = np.array([v.video_id for v in videos])
        path = out / f"{split}-00000.arrow"
        write_shard(path, split, ids, masks, masks, "bench")
        splits[split] = {"frames": 22, "labeled": True, "num_videos": len(ids), "shards": [
            {"file": path.name, "video_ids": ids.tolist(), "num_videos": len(ids), "bytes": path.stat().st_size,
             "sha256": sha256_file(path)}]}
    write_manifest(out, {"resolution": {"height": size[0], "width": size[1]}, "unet": {"sha256": "bench"},
                         "splits": splits})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="40x60", help="shard resolution HxW (default 40x60)")
    parser.add_argument("--videos", type=int, default=48, help="train videos (default 48)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--loss", default="weighted_ce")
    for name, default in (("N-S", 2), ("N-T", 4), ("hid-S", 16), ("hid-T", 64), ("groups", 2)):
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    config = TrainConfig(N_S=args.N_S, N_T=args.N_T, hid_S=args.hid_S, hid_T=args.hid_T, groups=args.groups,
                         loss=args.loss, epochs=args.epochs, batch_size=args.batch_size)
    with tempfile.TemporaryDirectory(prefix="bench_trial_") as tmp:
        root = Path(tmp) / "data"
        generate(root, {"train": args.videos, "val": max(4, args.videos // 6), "unlabeled": 0, "hidden": 0},
                 SynthConfig(seed=0), workers=os.cpu_count() or 1, progress=False)
        shards = shard_set(root, Path(tmp), size)
        reports: list[dict] = []
        fit(config, shards, reports.append)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    print(f"device: {device}; shards {size[0]}x{size[1]}; SimVP {args.N_S}/{args.N_T}/{args.hid_S}/{args.hid_T} "
          f"groups {args.groups}, {args.loss}, batch {args.batch_size}")
    print(f"{'epoch':>5} {'seconds':>8} {'samples/s':>10} {'step ms':>8} {'data share':>10}")
    for r in reports:
        print(f"{r['epoch']:>5} {r['epoch_seconds']:>8.2f} {r['samples_per_second']:>10.1f} "
              f"{1e3 * args.batch_size / r['samples_per_second']:>8.1f} {r['data_fraction']:>10.2%}")
    last = reports[-1]
    print(f"summary: data loading is {last['data_fraction']:.2%} of training time "
          f"({1e3 * args.batch_size / last['samples_per_second']:.0f} ms per step of {args.batch_size} clips)")


if __name__ == "__main__":
    main()
