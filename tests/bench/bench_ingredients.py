"""What each of the top teams' ingredients buys per second of training, on data where SimVP learns motion.

    python tests/bench/bench_ingredients.py --shards data/ingredients/seed3-shards-40x60 --budget 240

The shards (600 train and 50 val videos at 40x60, about 4 minutes on 2 cores) come from

    python -m vidseg.data.synth --out data/ingredients/seed3 --train 600 --val 50 --unlabeled 0 --hidden 0 --seed 3
    python -c "from vidseg.segment.presegment import presegment; presegment('data/ingredients/seed3',
        'data/ingredients/seed3-shards-40x60', UNET, out_size=(40, 60), use_ray=False)"

with UNET any UNet checkpoint (the demo's: ``data/demo/seed0-shards-40x60/unet-*/unet_best.pt``).

Arms: the baseline, the family that learns motion at this size on a CPU (docs/performance.md's SimVP row:
2/4/16/64 groups 2, ce, batch 8, lr 2e-3), then each new ingredient alone on top of it
(``input_encoding`` embed, ``stem_stride`` 2, ``rollout`` autoregressive with exponential
scheduled sampling, ``iou_loss_weight`` 1), then all of them together.

Every arm gets the same wall-clock budget (``--budget`` seconds of training and validation): a
calibration run (one epoch on ``--calibration-videos`` train videos) measures its training speed
and its validation time, and the arm then trains from scratch for as many epochs as fit the
budget, its cosine schedule spread over them, as a search trial's would be. Reported: val IoU of
frame 22 with the UNet's masks as inputs (last epoch, and the best epoch), the oracle (true masks
as inputs), epochs, seconds per epoch and parameters; and copy-last-frame. One arm at a time: never
run two timings at once. Not part of the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_search, beside this file

from bench_search import REPO, chosen, machine  # noqa: E402

BASE = dict(N_S=2, N_T=4, hid_S=16, hid_T=64, groups=2, loss="ce", batch_size=8, lr=2e-3, device="cpu", seed=0)
ARMS = {
    "baseline": {},
    "embed": {"input_encoding": "embed", "embed_dim": 16},
    "stem2": {"stem_stride": 2},
    "autoregressive": {"rollout": "autoregressive", "sampling": "exponential"},
    "soft-iou": {"iou_loss_weight": 1.0},
    "all": {"input_encoding": "embed", "embed_dim": 16, "stem_stride": 2, "rollout": "autoregressive",
            "sampling": "exponential", "iou_loss_weight": 1.0},
}


def seconds_per_epoch(config, shards: str, videos: int) -> float:
    """An epoch's training plus validation, measured on ``videos`` train videos and scaled to all."""
    from vidseg.data.shards import ShardSet
    from vidseg.train import fit

    probe = dataclasses.replace(config, epochs=1, max_train_videos=videos)
    first = fit(probe, shards, lambda metrics: None).history[0]
    train = videos / first["samples_per_second"]
    validation = first["epoch_seconds"] - train
    return len(ShardSet.open(shards, verify=False).split("train")) / first["samples_per_second"] + validation


def run_arm(name: str, extra: dict, shards: str, budget: float, calibration_videos: int) -> dict:
    from vidseg.train import TrainConfig, build_model, fit
    from vidseg.data.shards import ShardSet

    config = TrainConfig(**{**BASE, **extra, "epochs": 1})
    estimate = seconds_per_epoch(config, shards, calibration_videos)
    epochs = max(1, math.floor(budget / estimate))
    config = dataclasses.replace(config, epochs=epochs)
    height, width = ShardSet.open(shards, verify=False).resolution
    params = sum(p.numel() for p in build_model(config, height, width).parameters())
    started = time.perf_counter()
    history = []

    def show(metrics: dict) -> None:
        history.append(metrics)
        print(f"  {name} epoch {metrics['epoch']}/{epochs}: val IoU {metrics['val_iou']:.4f} "
              f"(true inputs {metrics['val_iou_true_inputs']:.4f}), {metrics['epoch_seconds']:.0f} s", flush=True)

    fit(config, shards, show)
    seconds = time.perf_counter() - started
    best = max(history, key=lambda m: m["val_iou"])
    return {"arm": name, "ingredients": extra, "epochs": epochs, "estimated_seconds_per_epoch": estimate,
            "seconds": seconds, "seconds_per_epoch": seconds / epochs, "params": params,
            "val_iou": history[-1]["val_iou"], "val_iou_true_inputs": history[-1]["val_iou_true_inputs"],
            "best_val_iou": best["val_iou"], "best_epoch": best["epoch"], "history": history}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=Path, required=True, help="a shard set where SimVP learns motion")
    parser.add_argument("--budget", type=float, default=240, help="seconds of training per arm (default 240)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of: {', '.join(ARMS)}")
    parser.add_argument("--calibration-videos", type=int, default=64, help="train videos of the timing run")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: results/bench-ingredients-*.json)")
    args = parser.parse_args()
    from vidseg.baselines import copy_last_frame
    from vidseg.data.shards import ShardSet

    arms = chosen(args.arms, ARMS, "--arms", "arm")
    shards = str(args.shards.resolve())
    baseline = copy_last_frame(ShardSet.open(shards, verify=True))
    results = []
    for name in arms:
        print(f"{name}: {ARMS[name] or 'the baseline'}", flush=True)
        results.append(run_arm(name, ARMS[name], shards, args.budget, args.calibration_videos))
    out = args.out or REPO / "results" / f"bench-ingredients-{datetime.now():%Y-%m-%d_%H-%M-%S}.json"
    report = {"machine": machine(), "shards": shards, "budget_seconds": args.budget, "base": BASE,
              "copy_last_frame": baseline, "arms": results}
    out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\nmachine: {machine()}; shards {shards}; budget {args.budget:.0f} s per arm")
    header = f"{'arm':<16} {'val IoU':>8} {'best':>8} {'@ep':>4} {'oracle':>8} {'epochs':>6} {'s/epoch':>8} {'params':>8}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['arm']:<16} {r['val_iou']:>8.4f} {r['best_val_iou']:>8.4f} {r['best_epoch']:>4} "
              f"{r['val_iou_true_inputs']:>8.4f} {r['epochs']:>6} {r['seconds_per_epoch']:>8.1f} {r['params'] / 1e6:>7.2f}M")
    print(f"{'copy-last-frame':<16} {baseline['unet']:>8.4f} {'':>8} {'':>4} {baseline['true']:>8.4f}")
    print(f"\nval IoU: frame 22 at the last epoch, UNet masks in; best / @ep: the best epoch's; oracle: true masks in "
          f"(last epoch); copy-last-frame: frame 11's UNet / true mask. Results: {out}")


if __name__ == "__main__":
    main()
