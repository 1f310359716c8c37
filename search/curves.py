"""(Re)write a search's learning-curve table (``curves.parquet``, ``search.results.curves``) from
its Ray Tune trial folders and ``search.json``: for a search that ended before it was written.

    python -m search.curves results/NAME
"""

from __future__ import annotations

import json
from pathlib import Path

from search.results.curves import CURVES, write_curves
from vidseg.errors import InputError

__all__ = ["curves_of_experiment", "main"]


def curves_of_experiment(experiment: Path) -> tuple[Path, int]:
    """(Re)write ``experiment/curves.parquet`` from its Ray Tune trial folders and ``search.json``
    (for a search that ended before it was written, or one run by an older version)."""
    from ray.tune import ExperimentAnalysis, ResultGrid

    from search.results.rows import trial_rows
    from search.run.state import STATE

    experiment = Path(experiment).resolve()
    if not (experiment / STATE).is_file():
        raise InputError(f"{experiment}: not a search's experiment folder (no {STATE})")
    from vidseg.baselines import copy_last_frame
    from vidseg.data.remote import cached_shards
    from vidseg.data.shards import ShardSet

    saved = json.loads((experiment / STATE).read_text())
    settings = {**saved["settings"], "name": experiment.name}
    try:
        settings["baselines"] = copy_last_frame(ShardSet.open(cached_shards(saved["shards"]), verify=False))
    except (InputError, OSError, KeyError) as err:  # shards gone: the table has no floor for replays
        import logging

        logging.getLogger("vidseg.search").warning("no copy-last-frame baseline in the table, so replays run "
                                                   "without the floor: %s", err)
    results = ResultGrid(ExperimentAnalysis(str(experiment), default_metric="val_iou", default_mode="max"))
    rows = trial_rows(results, settings["max_epochs"], settings)
    return experiment / CURVES, write_curves(rows, experiment / CURVES, settings)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m search.curves", description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", type=Path, help="a search's experiment folder (STORAGE/NAME)")
    args = parser.parse_args(argv)
    try:
        path, rows = curves_of_experiment(args.experiment)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{path}: {rows} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
