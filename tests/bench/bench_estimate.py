"""The cost estimate against the device time a search really spent, and a budget against what it bought.

    python tests/bench/bench_estimate.py                                # the smoke search
    python tests/bench/bench_estimate.py --profile demo                 # the default demo (minutes)
    python tests/bench/bench_estimate.py --profile demo -- --scheduler fifo --num-samples 6
    python tests/bench/bench_estimate.py --profile demo --budget-share 0.5 --data-dir data   # half its device time

Each setting runs ``python search/run_search.py`` to its end (flags after ``--`` go to it), then reads
what it estimated before the first trial (``search.json``'s ``estimate``) and what its trials spent
(the leaderboard's ``device_s``, each trial's share x the wall seconds it held them), and prints
the ratio. With ``--budget-share F`` it then runs the same search again with ``--budget`` set to F
of the measured device time, and prints what that one spent against its budget.

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--budget-share", type=float, default=None,
                        help="then run again with --budget set to this share of the measured device time")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the searches here (results/measured, results/budgeted) instead of deleting them")
    parser.add_argument("extra", nargs="*", help="flags for run_search.py, after --")
    args = parser.parse_args()
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
