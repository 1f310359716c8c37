"""What the trial loop adds to every trial and to every epoch beside training, and a one-epoch fit
against the trial loop of an earlier commit, interleaved in one run.

    python tests/bench/bench_trial_extras.py                  # SimVP 2/4/16/64 groups 2, ce, batch 8, 40x60, 48 videos
    python tests/bench/bench_trial_extras.py --rounds 5 --against 7ecae16

The set: a synthetic dataset (``vidseg.data.synth``), its true masks written as shards
(``bench_trial.shard_set``; the masks' content does not change the cost), ``--videos`` train videos
and a quarter as many val videos, at ``--size``. The configuration is the paper's style, as in
issue 49's measurement. Torch runs with its default threads (the machine's cores).

1. **Per trial** (``fit`` does it once, before the first epoch): ``inference_cost``, the model's
   multiply-adds (torch's FLOP counter, on the trial's device: one forward pass of one clip) and
   six forward passes of one clip timed (``ms_per_clip``); and ``model_macs`` alone.
2. **Per epoch**: the validation as ``fit`` runs it (the test-time IoU under every decoding,
   ``vidseg.train.decoding.DECODES``, beside the trial's own) against one that reads out the trial's
   own decoding only (the loop's ``DECODES`` narrowed to it for that call): the difference is what
   the other decodings' predictions and accumulators cost an epoch.
3. **A one-epoch fit**, set-up to report (``fit`` with ``epochs=1``): this checkout's against the trial
   loop of ``--against`` (its loop and losses, read with ``git show``, on this checkout's other
   modules: ``bench_trial.fit_at``), ``--rounds`` times each, alternating, after one untimed fit of
   each (the first in a process pays imports and warm-up). The minimum and the median of each,
   and their difference beside parts 1 and 2.

Each part's figure is the median of ``--repeats`` (parts 1-2). Not part of the tests.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench.bench_trial import fit_at, shard_set  # noqa: E402
from vidseg.accel import autocast, cpu_has_bf16  # noqa: E402
from vidseg.data.shards import ShardSet  # noqa: E402
from vidseg.data.synth import SynthConfig, generate  # noqa: E402
from vidseg.train import TrainConfig, fit  # noqa: E402
from vidseg.train import loop  # noqa: E402
from vidseg.train.cost import inference_cost, model_macs  # noqa: E402


def _median_seconds(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def per_trial_and_epoch(config: TrainConfig, shards_path: Path, repeats: int) -> dict[str, float]:
    """Parts 1 and 2 on one set-up of ``fit``'s own (``loop._set_up``, ``loop._load_tables``)."""
    shards = ShardSet.open(shards_path, verify=False)
    run = loop._set_up(config, shards)
    loop._load_tables(run)
    h, w = shards.resolution
    count = len(shards.split("val"))

    def cost() -> None:
        with autocast(run.device, run.dtype):
            inference_cost(run.model, h, w)

    def macs() -> None:
        with autocast(run.device, run.dtype):
            model_macs(run.model, h, w)

    def validate() -> None:
        loop._validate(run.model, run.val_table, count, config, run.device, run.dtype, run.micro, 1)

    every = loop.DECODES

    def validate_own() -> None:
        loop.DECODES = (config.decode,)
        try:
            validate()
        finally:
            loop.DECODES = every

    cost(), validate(), validate_own()  # warm
    return {"inference_cost_s": _median_seconds(cost, repeats), "model_macs_s": _median_seconds(macs, repeats),
            "validate_every_decoding_s": _median_seconds(validate, repeats),
            "validate_own_decoding_s": _median_seconds(validate_own, repeats), "val_videos": count}


def one_epoch_fits(config: TrainConfig, shards: Path, against: str, rounds: int) -> dict[str, list[float]]:
    """Part 3: ``rounds`` one-epoch fits of each loop, alternating, after an untimed one of each."""
    loops = {against: fit_at(against), "now": fit}
    times: dict[str, list[float]] = {name: [] for name in loops}
    for round_ in range(rounds + 1):
        for name, fit_function in (loops.items() if round_ % 2 == 0 else reversed(loops.items())):
            started = time.perf_counter()
            fit_function(config, shards, lambda metrics: None)
            if round_:
                times[name].append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="40x60", help="shard resolution HxW (default 40x60)")
    parser.add_argument("--videos", type=int, default=48, help="train videos (default 48; val: a quarter)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--loss", default="ce")
    parser.add_argument("--against", default="7ecae16", help="the commit whose trial loop part 3 compares (none: skip)")
    parser.add_argument("--rounds", type=int, default=3, help="timed one-epoch fits of each loop (default 3)")
    parser.add_argument("--repeats", type=int, default=5, help="timings of parts 1 and 2, their median (default 5)")
    for name, default in (("N-S", 2), ("N-T", 4), ("hid-S", 16), ("hid-T", 64), ("groups", 2)):
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    config = TrainConfig(N_S=args.N_S, N_T=args.N_T, hid_S=args.hid_S, hid_T=args.hid_T, groups=args.groups,
                         loss=args.loss, epochs=1, batch_size=args.batch_size)
    with tempfile.TemporaryDirectory(prefix="bench_trial_extras_") as tmp:
        root = Path(tmp) / "data"
        generate(root, {"train": args.videos, "val": max(4, args.videos // 4), "unlabeled": 0, "hidden": 0},
                 SynthConfig(seed=0), workers=os.cpu_count() or 1, progress=False)
        shards = shard_set(root, Path(tmp), size)
        parts = per_trial_and_epoch(config, shards, args.repeats)
        fits = one_epoch_fits(config, shards, args.against, args.rounds) if args.against != "none" else {}
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else \
        f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, bf16 {'native' if cpu_has_bf16() else 'absent'})"
    print(f"device: {device}; torch {torch.__version__}, {torch.get_num_threads()} threads; shards {size[0]}x{size[1]}, "
          f"{args.videos} train and {parts['val_videos']} val videos; SimVP {args.N_S}/{args.N_T}/{args.hid_S}/"
          f"{args.hid_T} groups {args.groups}, {args.loss}, batch {args.batch_size}")
    extra_val = parts["validate_every_decoding_s"] - parts["validate_own_decoding_s"]
    print(f"per trial: inference_cost {parts['inference_cost_s']:.3f} s (of it model_macs {parts['model_macs_s']:.3f} s)")
    print(f"per epoch: validation {parts['validate_every_decoding_s']:.3f} s with every decoding, "
          f"{parts['validate_own_decoding_s']:.3f} s with the trial's own: the other decodings {extra_val:.3f} s")
    if fits:
        low = {name: min(t) for name, t in fits.items()}
        mid = {name: statistics.median(t) for name, t in fits.items()}
        for name, t in fits.items():
            print(f"one-epoch fit, {name:>8}: " + ", ".join(f"{s:.2f}" for s in t) + f" s (min {low[name]:.2f}, median {mid[name]:.2f})")
        print(f"now against {args.against}: min {low['now'] - low[args.against]:+.2f} s ({low['now'] / low[args.against] - 1:+.1%}), "
              f"median {mid['now'] - mid[args.against]:+.2f} s ({mid['now'] / mid[args.against] - 1:+.1%}); "
              f"parts 1 + 2 at one epoch: {parts['inference_cost_s'] + extra_val:.2f} s")


if __name__ == "__main__":
    main()
