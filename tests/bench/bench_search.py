"""Search efficiency: ASHA + TPE against TPE and random search without early stopping, same budget of trials.

    unshare -rn sh -c 'ip link set lo up && python tests/bench/bench_search.py'           # smoke data, a few minutes on 2 cores
    unshare -rn sh -c 'ip link set lo up && python tests/bench/bench_search.py --full'    # the demo's data and budget (CPU: hours)
    python tests/bench/bench_search.py --shards DIR --num-samples 16 --max-epochs 8 --out results/bench-search

The claim under test is ASHA's: a configuration about as good as the best of a full search, for
about the cost of training one model to completion. Three searches run through the real entry
script (``search/run_search.py``, as subprocesses: each starts its own local Ray), with the same
number of trials, the same seed and the same shards:

- ``asha-tpe``: ``--searcher tpe --scheduler asha`` (the project's default);
- ``fifo-tpe``: ``--searcher tpe --scheduler fifo`` (every trial runs ``--max-epochs``);
- ``fifo-random``: ``--searcher random --scheduler fifo``.

Every search first runs the paper's configurations that fit the profile (``points_to_evaluate``),
whatever its searcher. Afterwards every epoch any trial reported (``OUT/VARIANT/trial_*/result.json``)
is ordered by Ray's ``timestamp`` (whole seconds; ties are broken by each trial's own clock), which
gives each search's curve: cumulative trial-epochs spent (x) against the best val IoU so far (y).
The reference is the **best full-budget result: the best val IoU the TPE search without early
stopping (fifo-tpe) reached**; the table gives, per search, the trial-epochs it took to come within
2% (relative) of it, and both costs as a ratio to fifo-tpe's and in models' worth (trial-epochs /
max-epochs). The curves go to ``OUT/search_efficiency.png``. Not part of the tests.

Ray must be able to start: in a sandbox without a network, launch the bench inside a network
namespace as above (the searches inherit it). Shards: ``--shards DIR``, or prepared once under
``--data-dir`` (default OUT/data) by a one-trial run of the entry script, reused when present.
A rerun with the same ``--out`` reuses the finished searches whose settings match.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENTRY = REPO / "search" / "run_search.py"
VARIANTS = {  # name: (searcher, scheduler)
    "asha-tpe": ("tpe", "asha"),
    "fifo-tpe": ("tpe", "fifo"),
    "fifo-random": ("random", "fifo"),
}
REFERENCE = "fifo-tpe"
WITHIN = 0.02  # relative distance to the best full-budget result that counts as reaching it


# ----------------------------------------------------------------------------------------------
# running the entry script


def machine() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name()} ({platform.machine()}, {os.cpu_count()} cores)"
    except ImportError:
        pass
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores), {platform.system()} {platform.release()}"


def chosen(text: str, valid, flag: str, what: str) -> list[str]:
    """A comma-separated flag's values, each one of ``valid``; else exit naming the wrong ones."""
    names = text.split(",")
    unknown = [name for name in names if name not in valid]
    if unknown:
        sys.exit(f"error: {flag} {','.join(unknown)}: no such {what}; valid: {', '.join(valid)}")
    return names


def run_entry(args: list[str], log_file: Path) -> float:
    """Run ``search/run_search.py ARGS`` with its output in ``log_file``; returns its wall time.
    Exits with the log's tail when it fails."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(ENTRY), *args]
    started = time.perf_counter()
    with open(log_file, "w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    seconds = time.perf_counter() - started
    if code != 0:
        tail = log_file.read_text().splitlines()[-25:]
        sys.exit(f"error: {' '.join(command[1:])} exited with {code} after {seconds:.0f} s; "
                 f"the end of {log_file}:\n" + "\n".join(tail))
    return seconds


def prepare_shards(out: Path, profile: str, data_dir: Path | None, seed: int) -> Path:
    """The profile's shard set under ``data_dir`` (default OUT/data), made by a one-trial search if missing."""
    data_dir = (data_dir or out / "data").resolve()
    from search.space import PROFILES

    height, width = PROFILES[profile].resolution
    shards = data_dir / profile / f"seed{seed}-shards-{height}x{width}"  # where run_search caches them
    if (shards / "manifest.json").is_file():
        print(f"shards: {shards} (cached)")
        return shards
    print(f"shards: preparing {shards} (dataset, UNet, pre-segmentation) ...", flush=True)
    seconds = run_entry(["--profile", profile, "--data-dir", str(data_dir), "--seed", str(seed), "--prepare-only"],
                        out / "logs" / "prep.log")
    if not (shards / "manifest.json").is_file():
        sys.exit(f"error: the preparation run finished, but {shards}/manifest.json is missing: see {out}/logs/prep.log")
    print(f"        ready in {seconds:.0f} s")
    return shards


def search_settings(args: argparse.Namespace, searcher: str, scheduler: str) -> dict:
    """The settings run_search records in search.json, for the flags this bench passes (None: the profile's)."""
    return {"profile": args.profile, "num_samples": args.num_samples, "max_epochs": args.max_epochs,
            "grace_period": args.grace_period, "reduction_factor": args.reduction_factor,
            "max_concurrent": args.max_concurrent, "seed": args.seed, "searcher": searcher, "scheduler": scheduler}


def run_search(args: argparse.Namespace, out: Path, shards: Path, name: str, searcher: str, scheduler: str) -> float | None:
    """Run one search into OUT/NAME; returns its wall time, or None when a finished one was reused."""
    folder = out / name
    wanted = {k: v for k, v in search_settings(args, searcher, scheduler).items() if v is not None}
    if folder.exists():
        state = json.loads((folder / "search.json").read_text()) if (folder / "search.json").is_file() else {}
        have = state.get("settings", {})
        if (folder / "leaderboard.csv").is_file() and all(have.get(k) == v for k, v in wanted.items()):
            print(f"{name}: reusing the finished search in {folder}")
            return None
        sys.exit(f"error: {folder} exists with other settings, or unfinished: give another --out")
    flags = ["--shards", str(shards), "--storage", str(out), "--name", name, "--profile", args.profile,
             "--searcher", searcher, "--scheduler", scheduler, "--seed", str(args.seed)]
    for flag in ("num_samples", "max_epochs", "grace_period", "reduction_factor", "max_concurrent"):
        if getattr(args, flag) is not None:
            flags += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    print(f"{name}: searching ({searcher}, {scheduler}) ...", flush=True)
    seconds = run_entry(flags, out / "logs" / f"{name}.log")
    print(f"{name}: done in {seconds:.0f} s")
    return seconds


# ----------------------------------------------------------------------------------------------
# curves


def read_reports(experiment: Path) -> list[dict]:
    """Every epoch reported by every trial of an experiment, in the order they happened.

    Ray's ``timestamp`` has whole seconds. Ties are broken by an estimate of the finer time: the
    trial's start (the tightest ``timestamp - time_total_s`` over its reports) plus ``time_total_s``.
    """
    reports = []
    for file in sorted(experiment.glob("trial_*/result.json")):
        lines = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
        lines = [r for r in lines if "val_iou" in r and "timestamp" in r]
        if not lines:
            continue
        start = max(r["timestamp"] - r.get("time_total_s", 0.0) for r in lines)
        for r in lines:
            reports.append({"trial": file.parent.name, "epoch": r["epoch"], "val_iou": float(r["val_iou"]),
                            "epoch_seconds": float(r.get("epoch_seconds", 0.0)),
                            "order": (r["timestamp"], start + r.get("time_total_s", 0.0))})
    reports.sort(key=lambda r: r["order"])
    return reports


def curve(reports: list[dict]) -> tuple[list[int], list[float]]:
    """(cumulative trial-epochs, best val IoU so far) after each reported epoch."""
    xs, ys, best = [], [], -math.inf
    for i, r in enumerate(reports, 1):
        if not math.isnan(r["val_iou"]):
            best = max(best, r["val_iou"])
        xs.append(i)
        ys.append(best)
    return xs, ys


def epochs_to(xs: list[int], ys: list[float], target: float) -> int | None:
    return next((x for x, y in zip(xs, ys) if y >= target), None)


def plot(curves: dict, target: float, reference_best: float, file: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    styles = ("-", "--", "-.")
    for (name, (xs, ys)), style in zip(curves.items(), styles):
        if xs:  # overlapping curves stay visible through their line styles
            ax.step(xs, ys, where="post", label=name, linewidth=1.8, linestyle=style, marker=".", markersize=4)
    ax.axhline(reference_best, color="gray", linestyle=":", linewidth=1, label=f"best of {REFERENCE} ({reference_best:.4f})")
    ax.axhline(target, color="gray", linestyle="--", linewidth=1, label=f"within {WITHIN:.0%} ({target:.4f})")
    ax.set_xlabel("trial-epochs spent (cumulative, in time order)")
    ax.set_ylabel("best val IoU so far")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(file)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="the demo profile's data and budget (10 trials of up to 6 epochs) instead of the smoke data")
    parser.add_argument("--shards", type=Path, default=None, help="an existing shard set (default: prepare the profile's)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where shards are prepared and cached (default OUT/data; `data` reuses the demo's cache)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default results/bench-search-DATE_TIME)")
    parser.add_argument("--num-samples", type=int, default=None, help="trials per search (default 8; --full: the demo profile's 10)")
    parser.add_argument("--max-epochs", type=int, default=None, help="epochs of a full trial (default 4; --full: the demo profile's 6)")
    parser.add_argument("--grace-period", type=int, default=None, help="ASHA's grace period (default 1; --full: 2)")
    parser.add_argument("--reduction-factor", type=int, default=None, help="ASHA's reduction factor (default 2)")
    parser.add_argument("--max-concurrent", type=int, default=None, help="trials at once (default: the profile's, 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.profile = "demo" if args.full else "smoke"
    if not args.full:  # the smoke profile's own budget (4 trials of 3 epochs) is too small to compare searches
        args.num_samples = args.num_samples or 8
        args.max_epochs = args.max_epochs or 4
        args.grace_period = args.grace_period or 1
        args.reduction_factor = args.reduction_factor or 2
    from search.space import PROFILES

    profile = PROFILES[args.profile]
    num_samples = args.num_samples or profile.num_samples
    max_epochs = args.max_epochs or profile.max_epochs
    grace = args.grace_period or profile.grace_period
    factor = args.reduction_factor or profile.reduction_factor
    out = (args.out or REPO / "results" / f"bench-search-{datetime.now():%Y-%m-%d_%H-%M-%S}").resolve()
    out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    shards = args.shards.resolve() if args.shards else prepare_shards(out, args.profile, args.data_dir, args.seed)
    walls = {name: run_search(args, out, shards, name, *how) for name, how in VARIANTS.items()}

    reports = {name: read_reports(out / name) for name in VARIANTS}
    curves = {name: curve(r) for name, r in reports.items()}
    if not curves[REFERENCE][1]:
        sys.exit(f"error: {out / REFERENCE} has no reported epochs: see {out}/logs/{REFERENCE}.log")
    reference_best = curves[REFERENCE][1][-1]
    target = reference_best * (1 - WITHIN) if reference_best >= 0 else reference_best * (1 + WITHIN)
    ref_total = len(reports[REFERENCE])
    ref_reach = epochs_to(*curves[REFERENCE], target)

    print(f"\nmachine: {machine()}")
    print(f"profile {args.profile}, shards {shards}")
    print(f"{num_samples} trials per search, up to {max_epochs} epochs each; ASHA grace {grace}, reduction factor {factor}; "
          f"seed {args.seed}")
    print(f"best full-budget result ({REFERENCE}): val IoU {reference_best:.4f}; target within {WITHIN:.0%}: {target:.4f}\n")
    header = (f"{'search':<12} {'trials':>6} {'trial-ep':>8} {'models':>6} {'x ref':>6} {'best IoU':>8} "
              f"{'ep->target':>10} {'x ref':>6} {'train s':>8} {'wall s':>7}")
    print(header)
    print("-" * len(header))
    rows = {}
    for name in VARIANTS:
        xs, ys = curves[name]
        total = len(xs)
        reach = epochs_to(xs, ys, target)
        best = ys[-1] if ys else float("nan")
        trials = len({r["trial"] for r in reports[name]})
        train_s = sum(r["epoch_seconds"] for r in reports[name])
        wall = walls[name]
        rows[name] = (total, reach, best)
        print(f"{name:<12} {trials:>6} {total:>8} {total / max_epochs:>6.1f} {total / ref_total:>6.2f} {best:>8.4f} "
              f"{reach if reach is not None else 'never':>10} "
              f"{(f'{reach / ref_reach:.2f}' if reach is not None and ref_reach else '-'):>6} "
              f"{train_s:>8.1f} {(f'{wall:.0f}' if wall is not None else 'reused'):>7}")
    print("\ntrial-ep: trial-epochs spent; models: trial-epochs / max-epochs (one model trained to completion = 1); "
          "x ref: ratio to fifo-tpe;\nep->target: trial-epochs until the best so far is within "
          f"{WITHIN:.0%} of fifo-tpe's best; train s: sum of the trials' epoch_seconds; wall s: the whole search")

    png = out / "search_efficiency.png"
    plot(curves, target, reference_best, png,
         f"{args.profile}: {num_samples} trials, up to {max_epochs} epochs, seed {args.seed} (ASHA grace {grace}, factor {factor})")
    print(f"plot: {png}")
    total, reach, best = rows["asha-tpe"]
    reach_text = (f"reached {best / reference_best:.1%} of fifo-tpe's best; within {WITHIN:.0%} after {reach} trial-epochs "
                  f"({reach / max_epochs:.1f} models' worth)" if reach is not None
                  else f"never came within {WITHIN:.0%} of fifo-tpe's best (reached {best / reference_best:.1%} of it)")
    print(f"summary: ASHA+TPE spent {total} trial-epochs against fifo-tpe's {ref_total} ({total / ref_total:.2f}x) and "
          f"{reach_text}; bench took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
