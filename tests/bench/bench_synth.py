"""Generation speed of the synthetic dataset: videos/s, and videos/s per core.

    python tests/bench/bench_synth.py              # 24 videos at 240x160, 1 worker then all cores
    python tests/bench/bench_synth.py --videos 200 # a longer run

Each run writes a full dataset (PNG frames, masks, manifest) into a temporary folder, so the
figure includes simulation, rendering, shading and file writing. It is not part of the tests.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from vidseg.data.synth import SynthConfig, generate


def run(videos: int, workers: int, seed: int) -> tuple[float, float]:
    val = max(1, videos // 4)
    counts = {"train": videos - val, "val": val, "unlabeled": 0, "hidden": 0}
    out = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    try:
        start = time.perf_counter()
        manifest = generate(out / "d", counts, SynthConfig(seed=seed), workers=workers, progress=False)
        return time.perf_counter() - start, manifest["motion"]["copy_last_frame_iou_val"]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=24, help="videos per run (default 24)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores; 240x160, 22 frames")
    print(f"{'workers':>7} {'videos':>6} {'seconds':>8} {'videos/s':>9} {'videos/s/core':>14}")
    rows = []
    for workers in sorted({1, cores}):
        seconds, copy_last_iou = run(args.videos, workers, args.seed)
        rate = args.videos / seconds
        rows.append((workers, rate))
        print(f"{workers:>7} {args.videos:>6} {seconds:>8.1f} {rate:>9.2f} {rate / workers:>14.2f}")
    best = max(rows, key=lambda r: r[1])
    print(f"copy-last-frame IoU over the {max(1, args.videos // 4)} val videos: {copy_last_iou:.3f} "
          "(the default motion aims at 0.2-0.5)")
    print(f"summary: {best[1]:.2f} videos/s on {best[0]} workers "
          f"({rows[0][1]:.2f} videos/s per core single-process)")


if __name__ == "__main__":
    main()
