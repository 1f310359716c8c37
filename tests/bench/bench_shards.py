"""Per-video load time: memory-mapped Arrow shards against decoding the PNG/npy layout, in one run.

    python tests/bench/bench_shards.py                 # generates 16 train videos at 240x160
    python tests/bench/bench_shards.py --data DIR      # a dataset root of your own (its train split)

The shard side copies out what a SimVP trial reads (a video's UNet and true masks); the layout
side decodes what it would otherwise start from (22 PNG frames and mask.npy, before any UNet). Both run on a
warm page cache, several rounds, best round kept. Not part of the tests.
"""

from __future__ import annotations

import argparse
import platform
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from vidseg.data.layout import Dataset
from vidseg.data.shards import ShardSet, sha256_file, write_manifest, write_shard
from vidseg.data.synth import SynthConfig, generate


def make_shards(dataset: Dataset, out: Path) -> ShardSet:
    videos = dataset.videos("train")
    masks = np.stack([v.masks().astype(np.uint8) for v in videos])
    ids = np.array([v.video_id for v in videos])
    path = out / "train-00000.arrow"
    write_shard(path, "train", ids, masks, masks, "bench")  # I/O only: true masks stand in for the UNet's
    write_manifest(out, {"resolution": {"height": masks.shape[2], "width": masks.shape[3]},
                         "unet": {"sha256": "bench"},
                         "splits": {"train": {"frames": 22, "labeled": True, "num_videos": len(ids), "shards": [
                             {"file": path.name, "video_ids": ids.tolist(), "num_videos": len(ids),
                              "bytes": path.stat().st_size, "sha256": sha256_file(path)}]}}})
    return ShardSet.open(out)


def best_seconds(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="dataset root (default: generate one)")
    parser.add_argument("--videos", type=int, default=16, help="videos to generate (default 16)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_shards_") as tmp:
        root = args.data
        if root is None:
            root = Path(tmp) / "data"
            generate(root, {"train": args.videos, "val": 1, "unlabeled": 0, "hidden": 0}, SynthConfig(seed=0),
                     workers=os.cpu_count() or 1, progress=False)
        dataset = Dataset.open(root)
        videos = dataset.videos("train")
        shards = make_shards(dataset, Path(tmp)).split("train")

        # Each side ends with the video's arrays in ordinary memory, as a batch would need them.
        def from_shards():
            for i in range(len(shards)):
                np.array(shards.unet[i]), np.array(shards.true[i])

        def from_layout():
            for video in videos:
                video.frames(), video.masks()

        shard_s = best_seconds(from_shards, args.rounds) / len(videos)
        layout_s = best_seconds(from_layout, args.rounds) / len(videos)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; {len(videos)} videos, 22 frames at 240x160")
    print(f"{'source':<28} {'ms/video':>9}")
    print(f"{'Arrow shards (mmap)':<28} {shard_s * 1e3:>9.3f}")
    print(f"{'layout (22 PNG + mask.npy)':<28} {layout_s * 1e3:>9.3f}")
    print(f"summary: shards load {layout_s / shard_s:.0f}x faster than decoding the layout")


if __name__ == "__main__":
    main()
