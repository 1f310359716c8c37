"""vidseg-search: find SimVP's configuration with Ray Tune, Optuna (TPE) and ASHA.

    python search/run_search.py                              # the embedded demo, on a local Ray
    python search/run_search.py --profile full --data DIR --address auto --gpu-memory-gb 22   # A10G workers
    python search/run_search.py --resume                     # continue the latest search
    tensorboard --logdir results                             # watch and compare trials
    optuna-dashboard results/NAME/optuna.journal             # the search's Optuna study

With no arguments it prepares the demo data under data/ (a synthetic dataset, segmented by the
UNet the project ships or, with --train-unet, by one trained here, into Arrow shards of masks;
each step is cached and reused), then runs a demo search on a local Ray instance, within 12
minutes of its start on a 2-core CPU from a cold cache: where its estimate says the search would
end later (a CPU without bf16), it runs with the device-time budget that ends it in time, and says
so. `--data DIR` takes a real dataset root in
the competition layout instead, and `--shards DIR` an existing shard set (skipping the UNet).

Every trial trains SimVP on the shards and reports val IoU (of the target frame, the competition's metric)
each epoch. Optuna's TPE proposes trials, the paper's configurations that fit the
profile and the top teams' recipe among the first; ASHA stops weak ones early, and the Optuna study, stored with the results, records them
as pruned. Results go to STORAGE/NAME/: trial folders with TensorBoard events, leaderboard.csv,
report.md, best_config.json, the best checkpoint, a submission, optuna.journal and curves.parquet.

Before the first trial it says what the search will cost in device time (a trial's GPU share, or
its CPUs, x the wall seconds it holds them): a short probe of the reference configurations and of a
random draw of the space on the device at hand (the cost model's figures for simulated trials and
for GPUs not up yet), and a replay of the scheduler (--estimate-only stops there).
--budget DURATION bounds that device time: no trial starts that would overrun it, and the report
says what it bought, with the fronts of val IoU against cost and the cheapest near-best configurations.

Input is checked before any trial starts: values of the space that the shards cannot run are left
out (one line each), and storage must be writable. Exit codes: 0 a trial completed; 1 every trial
failed (or a bug, with its traceback); 2 bad input, in one line; 130 Ctrl-C and 143 SIGTERM, with the
command that continues the search. A full disk ends it with one line naming the path (exit 2 before any
trial started, else 1), and the command that continues it once space is freed.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search.run.settings import build_parser  # noqa: E402
from search.run.steps import as_stop, ending, prepare_data, prepare_only, prepare_search, report, search_on_ray  # noqa: E402
from search.run.stops import watch_signals  # noqa: E402
from search.tools import costing  # noqa: E402


def run(args) -> int:
    """The search, flags to results: 0 a trial completed, 1 none did; raises InputError, Stopped (a
    signal) or DiskFull, which ``ending`` turns into a message and an exit code."""
    search = prepare_search(args)
    try:
        if args.estimate_only and not args.resume and costing.gpu_profile_without_gpu(search):
            costing.said(costing.estimate_cost(search))  # nothing to probe: no data needed
            return 0
        prepare_data(search)
        if args.prepare_only:
            return prepare_only(search)
        results = search_on_ray(search, costing)
        if results is None:  # --estimate-only: said, and nothing trained
            return 0
    except BaseException as err:  # noqa: BLE001 - what it means, or itself
        meant = as_stop(search, err)
        if meant is err:
            raise
        raise meant from None
    else:
        return report(search, results)
    finally:
        if search.hold is not None:
            search.hold.release()  # however the driver ends


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 the search finished and a trial completed; 1 every trial failed, or a bug (with
    its traceback); 2 bad input, in one line; 130 Ctrl-C and 143 SIGTERM, with the command that
    continues; a full disk: one line naming the path, 2 before any trial started, else 1."""
    args = build_parser("python search/run_search.py", __doc__).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    watch_signals()
    try:
        return run(args)
    except BaseException as err:  # noqa: BLE001 - ending() says which
        ended = ending(err)
        if ended is None:
            raise
        print(ended[0], file=sys.stderr)
        return ended[1]


if __name__ == "__main__":
    raise SystemExit(main())
