"""One SimVP trial's epoch: this checkout's ``fit`` against the trial loop of an earlier commit, in one run.

    python tests/bench/bench_trial.py                       # 40x60, 2/4/16/64 ce, against 518052e
    python tests/bench/bench_trial.py --against none        # this checkout only
    python tests/bench/bench_trial.py --size 160x240 --videos 64 --N-S 4 --N-T 8 --hid-S 64 --hid-T 256 --groups 4

It generates a synthetic set, writes shards from its true masks (no UNet needed: the masks'
content does not change the cost), and runs ``fit`` for a few epochs with the same config and
seed: first the trial loop as it was at ``--against`` (its ``vidseg/train/fit.py`` and
``losses.py``, read with ``git show`` and run against this checkout's models and data code; the
default, 518052e, is the last commit before the trial loop lost its per-step host syncs and
gained bf16 on CPUs), then this checkout's. It prints each epoch's seconds, samples/s and val
IoU, and the speed-up of the median epoch. Not part of the tests.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from vidseg.accel import cpu_has_bf16
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


def fit_at(revision: str):
    """``fit`` as it was at ``revision``: its fit.py and losses.py, on this checkout's other modules."""
    repo = Path(__file__).resolve().parents[2]

    def source(path: str) -> str:
        if path == "vidseg/train/fit.py":  # renamed loop.py later: whichever the revision has
            found = subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{revision}:{path}"], capture_output=True)
            path = path if found.returncode == 0 else "vidseg/train/loop.py"
        return subprocess.run(["git", "-C", str(repo), "show", f"{revision}:{path}"], capture_output=True, text=True,
                              check=True).stdout

    modules = {}
    for name, path, text in (("losses", "vidseg/train/losses.py", None), ("fit", "vidseg/train/fit.py", None)):
        text = source(path).replace("from vidseg.train.losses import", "from vidseg.train._then_losses import")
        spec = importlib.util.spec_from_loader(f"vidseg.train._then_{name}", loader=None)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        exec(compile(text, f"{revision}:{path}", "exec"), module.__dict__)
        modules[name] = module
    return modules["fit"].fit


def run(fit_function, config: TrainConfig, shards: Path) -> list[dict]:
    reports: list[dict] = []
    fit_function(config, shards, reports.append)
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="40x60", help="shard resolution HxW (default 40x60)")
    parser.add_argument("--videos", type=int, default=96, help="train videos (default 96; val: a quarter)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--loss", default="ce")
    parser.add_argument("--last-frame-skip", action="store_true", help="start near copy-last-frame (val IoU moves sooner)")
    parser.add_argument("--against", default="518052e", help="the commit whose trial loop is the baseline; none: skip it")
    for name, default in (("N-S", 2), ("N-T", 4), ("hid-S", 16), ("hid-T", 64), ("groups", 2)):
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    config = TrainConfig(N_S=args.N_S, N_T=args.N_T, hid_S=args.hid_S, hid_T=args.hid_T, groups=args.groups,
                         loss=args.loss, epochs=args.epochs, batch_size=args.batch_size,
                         last_frame_skip=args.last_frame_skip)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench_trial_") as tmp:
        root = Path(tmp) / "data"
        generate(root, {"train": args.videos, "val": max(4, args.videos // 4), "unlabeled": 0, "hidden": 0},
                 SynthConfig(seed=0), workers=os.cpu_count() or 1, progress=False)
        shards = shard_set(root, Path(tmp), size)
        if args.against != "none":
            print(f"running the trial loop of {args.against} ...", flush=True)
            runs[args.against] = run(fit_at(args.against), config, shards)
        print("running this checkout's trial loop ...", flush=True)
        runs["now"] = run(fit, config, shards)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else \
        f"CPU ({platform.machine()}, {os.cpu_count()} cores, bf16 {'native' if cpu_has_bf16() else 'absent'})"
    print(f"device: {device}; shards {size[0]}x{size[1]}, {args.videos} train videos; SimVP {args.N_S}/{args.N_T}/"
          f"{args.hid_S}/{args.hid_T} groups {args.groups}, {args.loss}, batch {args.batch_size}, "
          f"last-frame skip {args.last_frame_skip}, torch {torch.__version__}")
    print(f"{'loop':>8} {'epoch':>5} {'seconds':>8} {'samples/s':>10} {'step ms':>8} {'data share':>10} {'val IoU':>8}")
    for name, reports in runs.items():
        for r in reports:
            print(f"{name:>8} {r['epoch']:>5} {r['epoch_seconds']:>8.2f} {r['samples_per_second']:>10.1f} "
                  f"{1e3 * args.batch_size / r['samples_per_second']:>8.1f} {r['data_fraction']:>10.2%} {r['val_iou']:>8.4f}")
    median = {name: statistics.median(r["epoch_seconds"] for r in reports) for name, reports in runs.items()}
    best = {name: max(r["val_iou"] for r in reports) for name, reports in runs.items()}
    now = runs["now"][-1]
    line = (f"summary: median epoch {median['now']:.2f} s, best val IoU {best['now']:.4f}, "
            f"data loading {now['data_fraction']:.2%} of training")
    if args.against != "none":
        line += (f"; the loop of {args.against}: {median[args.against]:.2f} s, best val IoU {best[args.against]:.4f}: "
                 f"{median[args.against] / median['now']:.2f}x faster now")
    print(line)


if __name__ == "__main__":
    main()
