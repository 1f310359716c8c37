"""The cost estimate against the device time a search really spent, and a budget against what it bought.

    python tests/bench/bench_estimate.py                                # the smoke search
    python tests/bench/bench_estimate.py --profile demo                 # the default demo (minutes)
    python tests/bench/bench_estimate.py --profile demo -- --scheduler fifo --num-samples 6
    python tests/bench/bench_estimate.py --profile demo --budget-share 0.5 --data-dir data   # half its device time
    python tests/bench/bench_estimate.py --check-epochs results/NAME    # a finished search's epochs, probed again

Each setting runs ``python search/run_search.py`` to its end (flags after ``--`` go to it), then reads
what it estimated before the first trial (``search.json``'s ``estimate``) and what its trials spent
(the leaderboard's ``device_s``, each trial's share x the wall seconds it held them), and prints
the ratio. With ``--budget-share F`` it then runs the same search again with ``--budget`` set to F
of the measured device time, and prints what that one spent against its budget.

``--check-epochs RESULTS/NAME`` asks where a finished search's gap to its estimate came from: it
probes every configuration the search ran, as the estimate probes (Ray tasks, as many at once as
trials ran at once, on the search's shards), and prints each trial's measured epoch (the median
of its epochs after the first, from ``curves.parquet``) against the epoch those probes predict,
then the trial-epochs the search ran against the estimate's replays. Per-epoch figures that agree
put the gap on the search's own spread (which trials TPE proposed, and how far ASHA let them go).

Prepared data is reused from ``--data-dir`` (default: a temporary folder, so the first run makes
it). The job starts Ray: in a sandbox run this in a network namespace,
``unshare -rn sh -c 'ip link set lo up && python tests/bench/bench_estimate.py'``. Not part of the tests.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_search(profile: str, storage: Path, name: str, data_dir: Path, extra: list[str]) -> dict:
    """One search to its end; what it estimated and what it spent."""
    command = [sys.executable, str(REPO / "search" / "run_search.py"), "--profile", profile, "--storage", str(storage),
               "--name", name, "--data-dir", str(data_dir), *extra]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} ended with {done.returncode}:\n{done.stderr[-3000:]}")
    saved = json.loads((storage / name / "search.json").read_text())
    with open(storage / name / "leaderboard.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    spent = sum(float(r["device_s"]) for r in rows if r["device_s"])
    return {"estimate": saved["estimate"], "spent_s": spent, "trials": len(rows), "wall_s": wall,
            "epochs": sum(int(r["epochs"]) for r in rows), "budget_s": saved["settings"].get("budget_s")}


def check_epochs(experiment: Path) -> None:
    """A finished search's measured epochs against its configurations probed again (module docstring)."""
    import numpy as np
    import pyarrow.parquet as pq
    import ray

    sys.path.insert(0, str(REPO))
    from search.run.prepare import shard_counts
    from search.tools.estimate import REPORT_S, probe_on_workers

    saved = json.loads((experiment / "search.json").read_text())
    shards, settings, found = saved["shards"], saved["settings"], saved["estimate"]
    table = pq.read_table(experiment / "curves.parquet").to_pandas().sort_values(["trial_id", "epoch"])
    counts = shard_counts(shards)
    trials = []
    for trial_id, rows in table.groupby("trial_id"):
        device = rows["device_seconds"].diff().dropna().to_numpy()  # epochs after the first: no set-up
        if len(device):
            trials.append((trial_id, json.loads(rows["config"].iloc[0]), float(np.median(device)), len(rows)))
    ray.init(num_cpus=settings["max_concurrent"], include_dashboard=False, log_to_driver=False)
    try:
        probed = probe_on_workers(shards, 1.0, settings["max_concurrent"])([config for _, config, _, _ in trials])
    finally:
        ray.shutdown()
    ratios = []
    for (trial_id, config, measured, epochs), point in zip(trials, probed.points):
        predicted = (counts.get("train", 0) * point["train_s_per_sample"] + counts.get("val", 0) * point["val_s_per_clip"]
                     + point["checkpoint_s"] + REPORT_S)
        ratios.append(measured / predicted)
        print(f"  {trial_id}: {epochs} epochs, measured {measured:.1f} s an epoch, probed {predicted:.1f} s "
              f"({measured / predicted - 1:+.0%})")
    spent = float(table.groupby("trial_id")["device_seconds"].max().sum())
    low, high = found.get("expected_range_s") or (float("nan"), float("nan"))
    print(f"per-epoch: measured/probed median {np.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f}) over "
          f"{len(ratios)} trials; the search: {len(table)} trial-epochs, spent {spent:.0f} device s against "
          f"{found['expected_s']:.0f} expected ({spent / found['expected_s'] - 1:+.0%}; one search {low:.0f}-{high:.0f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--budget-share", type=float, default=None,
                        help="then run again with --budget set to this share of the measured device time")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the searches here (results/measured, results/budgeted) instead of deleting them")
    parser.add_argument("--check-epochs", type=Path, default=None, metavar="RESULTS/NAME",
                        help="probe a finished search's configurations again and compare their epochs")
    parser.add_argument("extra", nargs="*", help="flags for run_search.py, after --")
    args = parser.parse_args()
    if args.check_epochs is not None:
        check_epochs(args.check_epochs)
        return 0
    with tempfile.TemporaryDirectory(prefix="vidseg-estimate-") as folder:
        storage = (args.keep or Path(folder)) / "results"
        data_dir = args.data_dir or Path(folder) / "data"
        print(f"machine: {platform.machine()}, {platform.processor() or 'unknown CPU'}; profile {args.profile} "
              f"{' '.join(args.extra)}")
        measured = run_search(args.profile, storage, "measured", data_dir, args.extra)
        found = measured["estimate"]
        expected = found["expected_s"]
        print(f"estimated {expected:.1f} device s with the scheduler ({found['full_s']:.1f} without stopping; "
              f"{found['basis']}); measured {measured['spent_s']:.1f} over {measured['trials']} trials and "
              f"{measured['epochs']} trial-epochs: measured/estimated {measured['spent_s'] / expected:.3f} "
              f"({measured['spent_s'] / expected - 1:+.1%}); the run took {measured['wall_s']:.0f} s "
              f"(estimated search wall time {found['wall_s']:.0f} s)")
        if args.budget_share is not None:
            budget = args.budget_share * measured["spent_s"]
            bought = run_search(args.profile, storage, "budgeted", data_dir, [*args.extra, f"--budget={budget:.1f}s"])
            print(f"--budget {budget:.1f}s ({args.budget_share:g} of the measured): spent {bought['spent_s']:.1f} s "
                  f"({bought['spent_s'] / budget - 1:+.1%} against the budget) over {bought['trials']} trials and "
                  f"{bought['epochs']} trial-epochs, in {bought['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
