"""The translators side by side at equal budget on the demo's shards, each read out with every decoding.

    python tests/bench/bench_translators.py --shards data/demo/seed0-240t-48v-24u-12h-shards-40x60

(the shards ``python search/run_search.py --prepare-only`` prints). Every arm is the demo's best trial
(docs/performance.md: gSTA 4/8/8/64, ``ce`` + soft-Jaccard 4, an embedding of 8, the last-frame skip,
UNet inputs, lr 2.5e-3, batch 8) with its translator swapped: IncepU (its groups corrected as the
space does), gSTA, TAU, ConvNeXt, ConvMixer. Each gets ``--budget`` CPU seconds (five minutes): one
thread, two arms at a time on a 2-core machine, as the demo's trials run. A calibration epoch on
``--calibration-videos`` train videos measures its speed, and it then trains from scratch for as
many epochs as fit the budget, its cosine schedule spread over them, as a search trial's would be.

One training serves every decoding: decoding does not change what is learned, only how the target
frame's output becomes a mask, so each epoch's validation reports the val IoU under ``plain``,
``known`` and ``known+regions`` (``vidseg.train.decoding``). Reported per translator and decoding,
over ``--seeds`` seeds: the mean val IoU at the last epoch and its spread (min-max), the best epoch's
mean, epochs, seconds per epoch and parameters; and copy-last-frame. Not part of the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_search, beside this file

from bench_ingredients import seconds_per_epoch  # noqa: E402
from bench_search import REPO, chosen, machine  # noqa: E402

BASE = dict(N_S=4, N_T=8, hid_S=8, hid_T=64, groups=4, loss="ce", iou_loss_weight=4.0, input_encoding="embed",
            embed_dim=8, last_frame_skip=True, train_inputs="unet", lr=2.5e-3, batch_size=8, device="cpu")
TRANSLATORS = ("incep", "gsta", "tau", "convnext", "convmixer")


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def run_arm(translator: str, seed: int, shards: str, budget: float, calibration_videos: int) -> dict:
    from search.space.dimensions import complete
    from vidseg.data.shards import ShardSet
    from vidseg.train import TrainConfig, build_model, fit
    from vidseg.train.decoding import DECODES
    from vidseg.train.loop import decoding_metric

    fields = {**BASE, "translator": translator, "seed": seed}
    if translator != "incep":
        del fields["groups"]  # the space's way: translators without group convolutions run one group
    fields = complete(fields)
    config = TrainConfig(**{**fields, "epochs": 1})
    started = time.process_time()
    estimate = seconds_per_epoch(config, shards, calibration_videos)
    epochs = max(1, math.floor((budget - (time.process_time() - started)) / estimate))
    config = dataclasses.replace(config, epochs=epochs)
    height, width = ShardSet.open(shards, verify=False).resolution
    params = sum(p.numel() for p in build_model(config, height, width).parameters())
    history: list[dict] = []
    wall, cpu = time.perf_counter(), time.process_time()
    fit(config, shards, history.append)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    keys = {decode: decoding_metric(decode) for decode in DECODES}
    last = history[-1]
    print(f"  {translator} seed {seed}: {epochs} epochs in {wall:.0f} s ({cpu:.0f} CPU s); val IoU "
          + ", ".join(f"{decode} {last[key]:.4f}" for decode, key in keys.items()), flush=True)
    return {"translator": translator, "seed": seed, "groups": config.groups, "epochs": epochs,
            "estimated_seconds_per_epoch": estimate, "seconds": wall, "cpu_seconds": cpu,
            "seconds_per_epoch": wall / epochs, "params": params,
            "val_iou": {decode: last[key] for decode, key in keys.items()},
            "best_val_iou": {decode: max(m[key] for m in history) for decode, key in keys.items()},
            "val_iou_true_inputs": last["val_iou_true_inputs"], "history": history}


def summary(arms: list[dict], baseline: float) -> list[dict]:
    """Per translator and decoding: the seeds' mean, min and max val IoU (last epoch), the best epoch's mean."""
    from statistics import mean

    rows = []
    for translator in dict.fromkeys(a["translator"] for a in arms):
        mine = [a for a in arms if a["translator"] == translator]
        for decode in mine[0]["val_iou"]:
            values = [a["val_iou"][decode] for a in mine]
            rows.append({"translator": translator, "decode": decode, "seeds": len(mine), "mean": mean(values),
                         "min": min(values), "max": max(values),
                         "best_epoch_mean": mean(a["best_val_iou"][decode] for a in mine),
                         "vs_copy_last_frame": mean(values) / baseline,
                         "epochs": mean(a["epochs"] for a in mine),
                         "seconds_per_epoch": mean(a["seconds_per_epoch"] for a in mine),
                         "params": mine[0]["params"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=Path, required=True, help="the demo's shard set")
    parser.add_argument("--budget", type=float, default=300, help="CPU seconds per arm, calibration included (300)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per translator (3)")
    parser.add_argument("--translators", default=",".join(TRANSLATORS), help=f"comma-separated, of: {', '.join(TRANSLATORS)}")
    parser.add_argument("--parallel", type=int, default=2, help="arms at once, one thread each (2: a 2-core machine)")
    parser.add_argument("--calibration-videos", type=int, default=48, help="train videos of the timing epoch (48)")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: results/bench-translators-*.json)")
    args = parser.parse_args()
    from vidseg.baselines import copy_last_frame
    from vidseg.data.shards import ShardSet

    translators = chosen(args.translators, TRANSLATORS, "--translators", "translator")
    shards = str(args.shards.resolve())
    baseline = copy_last_frame(ShardSet.open(shards, verify=True))
    jobs = [(t, seed) for seed in range(args.seeds) for t in translators]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.parallel, mp_context=get_context("spawn"), initializer=_one_thread) as pool:
        futures = [pool.submit(run_arm, t, seed, shards, args.budget, args.calibration_videos) for t, seed in jobs]
        arms = [f.result() for f in futures]
    rows = summary(arms, baseline["unet"])
    out = args.out or REPO / "results" / f"bench-translators-{datetime.now():%Y-%m-%d_%H-%M-%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "shards": shards, "budget_cpu_seconds": args.budget,
                               "base": BASE, "copy_last_frame": baseline, "summary": rows, "arms": arms,
                               "wall_seconds": time.perf_counter() - started}, indent=2) + "\n")
    print(f"\nmachine: {machine()}; shards {shards}; {args.budget:.0f} CPU s per arm, {args.seeds} seeds, "
          f"{args.parallel} at once; {time.perf_counter() - started:.0f} s in all")
    print("| translator | decoding | val IoU, mean (min-max) | best epoch's, mean | x copy-last-frame | epochs | s/epoch | params |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['translator']} | `{r['decode']}` | {r['mean']:.4f} ({r['min']:.4f}-{r['max']:.4f}) | "
              f"{r['best_epoch_mean']:.4f} | {r['vs_copy_last_frame']:.2f}x | {r['epochs']:.1f} | "
              f"{r['seconds_per_epoch']:.1f} | {r['params'] / 1e3:.0f}k |")
    print(f"| copy-last-frame | | {baseline['unet']:.4f} (true masks {baseline['true']:.4f}) | | 1.00x | | | |")
    print(f"\nval IoU: the target frame at the last epoch, UNet masks in. Results: {out}")


if __name__ == "__main__":
    main()
