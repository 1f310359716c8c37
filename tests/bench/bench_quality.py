"""Model quality on the same data: the search's best configuration against the paper's CE model and the baselines.

    unshare -rn sh -c 'ip link set lo up && python tests/bench/bench_quality.py'     # a small search on the smoke data first
    python tests/bench/bench_quality.py --experiment results/simvp-demo-DATE_TIME     # a finished search's best config
    unshare -rn sh -c 'ip link set lo up && python tests/bench/bench_quality.py --full'  # the demo's data (CPU: hours)

Two models are trained from scratch with ``vidseg.train.loop.fit``, for the same number of epochs
(``--epochs``; default: the search's ``max_epochs``), on the same shards and with the same seed:

- the best configuration a search found (its ``best_config.json``, from ``--experiment DIR`` or
  from a small ASHA + TPE search this bench runs through ``search/run_search.py``);
- the paper's final CE model, 4/8/64/256 with "groups 7", which the reference code ran with 1
  group (``search.space.paper_configs()``), with the learning rate and batch size the search
  gives the paper's configurations (the profile's middle values). At groups 1 it has about 120M
  parameters at 40x60 (the 30.8M of the docs is the 1-channel MSE model with groups 4), so
  on a CPU one epoch takes about 30 s on the smoke shards, and minutes on the demo's.

Beside them: the copy-last-frame baseline (frame 11's mask as frame 22, with the UNet's and with
the true masks, ``vidseg.baselines.copy_last_frame``) and each model's true-input oracle (its
``val_iou_true_inputs``: the same model fed true frames 1-11). All scores are the competition's
val IoU of frame 22 over the val split. Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_search, beside this file

from bench_search import REPO, machine, prepare_shards, run_search  # noqa: E402


def paper_ce_config(profile) -> dict:
    """The paper's CE configuration as a TrainConfig dict, with the search's lr and batch size for it."""
    from search.space import paper_configs

    (point,) = [p for p in paper_configs().values() if p["loss"] == "ce"]
    middle = {name: profile.dim(name).middle() for name in ("lr", "batch_size")}  # as points_to_evaluate
    return {**profile.fixed, **point, **middle}


def train(name: str, config, shards: str) -> dict:
    from vidseg.train import build_model, fit
    from vidseg.data.shards import ShardSet

    height, width = ShardSet.open(shards, verify=False).resolution
    params = sum(p.numel() for p in build_model(config, height, width).parameters())
    print(f"{name}: training {config.N_S}/{config.N_T}/{config.hid_S}/{config.hid_T} g{config.groups} "
          f"{config.translator}, {config.loss}, lr {config.lr:g}, batch {config.batch_size}, {params / 1e6:.2f}M "
          f"parameters, {config.epochs} epochs ...", flush=True)
    history: list[dict] = []

    def report(metrics: dict) -> None:
        history.append(metrics)
        print(f"  epoch {metrics['epoch']}: val IoU {metrics['val_iou']:.4f}, true inputs "
              f"{metrics['val_iou_true_inputs']:.4f}, train loss {metrics['train_loss']:.4f} "
              f"({metrics['epoch_seconds']:.1f} s)", flush=True)

    started = time.perf_counter()
    fit(config, shards, report)
    seconds = time.perf_counter() - started
    best = max(history, key=lambda r: r["val_iou"])
    return {"val_iou": history[-1]["val_iou"], "oracle": history[-1]["val_iou_true_inputs"],
            "best_epoch_iou": best["val_iou"], "best_epoch": best["epoch"], "params": params,
            "seconds_per_epoch": seconds / len(history)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", type=Path, default=None,
                        help="a finished search (STORAGE/NAME, with best_config.json); default: run a small one")
    parser.add_argument("--full", action="store_true", help="without --experiment: search on the demo profile's data")
    parser.add_argument("--shards", type=Path, default=None,
                        help="the shard set (default: the experiment's; without --experiment, the profile's prepared one)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where shards are prepared and cached (default OUT/data; `data` reuses the demo's cache)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the bench's own search goes (default results/bench-quality-DATE_TIME)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of both models (default: the search's max_epochs)")
    parser.add_argument("--num-samples", type=int, default=None,
                        help="trials of the bench's own search (default 6; --full: the demo profile's 10)")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="epochs of a full trial in the bench's own search (default 3; --full: the demo profile's 6)")
    parser.add_argument("--seed", type=int, default=None, help="the search's seed, and both models' (default 0, or the "
                                                               "experiment's)")
    parser.add_argument("--device", default="auto", help="where both models train: auto, cpu, cuda (default auto)")
    args = parser.parse_args()

    from search.space import PROFILES
    from vidseg.baselines import copy_last_frame
    from vidseg.data.shards import ShardSet
    from vidseg.train import TrainConfig

    started = time.perf_counter()
    if args.experiment is None:
        args.profile = "demo" if args.full else "smoke"
        if not args.full:
            args.num_samples = args.num_samples or 6
            args.max_epochs = args.max_epochs or 3
        args.grace_period = 1 if not args.full else None
        args.reduction_factor = args.max_concurrent = None
        args.seed = 0 if args.seed is None else args.seed
        out = (args.out or REPO / "results" / f"bench-quality-{datetime.now():%Y-%m-%d_%H-%M-%S}").resolve()
        out.mkdir(parents=True, exist_ok=True)
        shards = args.shards.resolve() if args.shards else prepare_shards(out, args.profile, args.data_dir, args.seed)
        run_search(args, out, shards, "asha-tpe", "tpe", "asha")
        experiment = out / "asha-tpe"
    else:
        experiment = args.experiment.resolve()
    if not (experiment / "best_config.json").is_file():
        sys.exit(f"error: {experiment}/best_config.json is missing: not a finished search with a best trial")
    best = json.loads((experiment / "best_config.json").read_text())
    state = json.loads((experiment / "search.json").read_text()) if (experiment / "search.json").is_file() else {}
    settings = state.get("settings", {})
    profile = PROFILES[settings.get("profile", "demo")]
    shards = str(args.shards.resolve() if args.shards else best["shards"])
    if "://" in shards:
        from vidseg.data.remote import cached_shards

        shards = str(cached_shards(shards))
    epochs = args.epochs or settings.get("max_epochs") or best["config"]["epochs"]
    seed = best["config"].get("seed", 0) if args.seed is None else args.seed
    common = {"epochs": epochs, "seed": seed, "device": args.device}

    searched = TrainConfig.from_dict({**best["config"], **common})
    paper = TrainConfig.from_dict({**paper_ce_config(profile), **common})
    results = {"searched": train("best searched config", searched, shards),
               "paper": train("paper CE config", paper, shards)}
    baseline = copy_last_frame(ShardSet.open(shards, verify=False))

    height, width = ShardSet.open(shards, verify=False).resolution
    print(f"\nmachine: {machine()}")
    print(f"shards {shards} ({height}x{width}); search {experiment} (profile {profile.name}); "
          f"{epochs} epochs each, seed {seed}, device {args.device}")
    print(f"the search reported val IoU {best['val_iou']:.4f} for its best trial {best['trial_id']} "
          f"(epoch {best['epoch']}, true inputs {best['val_iou_true_inputs']:.4f})\n")
    header = f"{'model':<34} {'val IoU':>8} {'best ep':>8} {'@ep':>4} {'true in':>8} {'params':>9} {'s/epoch':>8}"
    print(header)
    print("-" * len(header))
    for key, label in (("searched", f"best searched ({searched.N_S}/{searched.N_T}/{searched.hid_S}/{searched.hid_T} "
                                    f"{searched.loss})"),
                       ("paper", "paper CE (4/8/64/256 g1 ce)")):
        r = results[key]
        print(f"{label[:34]:<34} {r['val_iou']:>8.4f} {r['best_epoch_iou']:>8.4f} {r['best_epoch']:>4} {r['oracle']:>8.4f} "
              f"{r['params'] / 1e6:>8.2f}M {r['seconds_per_epoch']:>8.1f}")
    print(f"{'copy-last-frame':<34} {baseline['unet']:>8.4f} {'':>8} {'':>4} {baseline['true']:>8.4f} {'0':>9} {'':>8}")
    print("\nval IoU: last epoch, UNet masks in (as at test time); best ep / @ep: the best epoch's val IoU and which; "
          "true in: the same model (last epoch) fed the true masks of frames 1-11 (the oracle); copy-last-frame: "
          "frame 11's UNet mask / true mask as frame 22")
    s, p = results["searched"], results["paper"]
    ratio = s["val_iou"] / p["val_iou"] if p["val_iou"] > 0 else float("inf")
    oracle_ratio = s["oracle"] / p["oracle"] if p["oracle"] > 0 else float("inf")
    print(f"summary: best searched / paper CE = {ratio:.2f}x val IoU ({s['val_iou']:.4f} vs {p['val_iou']:.4f}; "
          f"oracle {oracle_ratio:.2f}x) with {p['params'] / max(s['params'], 1):.0f}x fewer parameters and "
          f"{p['seconds_per_epoch'] / max(s['seconds_per_epoch'], 1e-9):.0f}x less time per epoch; copy-last-frame "
          f"{baseline['unet']:.4f}; bench took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
