"""The learning-curve table: every trial's config and per-epoch metrics, as Parquet.

Every search writes ``curves.parquet`` into its experiment folder. A search run with
``--scheduler fifo`` runs every trial to ``--max-epochs``, so its table holds whole curves, which
``python -m search.replay`` replays schedulers over. One row per trial and epoch:

``trial_id``, ``epoch``, ``val_iou``, ``val_iou_true_inputs``, ``val_soft_iou``, ``train_loss``, ``val_loss``,
``epoch_seconds``, ``train_seconds``, ``val_seconds``, its cost so far (``device_seconds``,
``train_device_seconds``, ``val_device_seconds``: share x wall seconds) and its model's (``params``,
``macs`` and ``ms_per_clip`` for one clip: ``vidseg.train.cost``), ``status`` (how the trial ended), ``reference`` (the paper's or the top teams'
configuration it is, if any) and ``config`` (the searched dimensions, as JSON). The table's
metadata holds the search's settings (``vidseg.settings``, JSON).

``python -m search.curves results/NAME`` (re)writes a table from a search's trial folders.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vidseg.errors import InputError
from vidseg.train.cost import COST_FIELDS

if TYPE_CHECKING:
    from search.results.rows import TrialRow

__all__ = ["CURVES", "write_curves", "read_curves", "Curves", "METRICS"]

CURVES = "curves.parquet"
METRICS = ("val_iou", "val_iou_true_inputs", "val_soft_iou", "train_loss", "val_loss", "epoch_seconds",
           "train_seconds", "val_seconds", *COST_FIELDS)
_META = b"vidseg.settings"


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def write_curves(rows: list[TrialRow], path: Path, settings: dict[str, Any]) -> int:
    """Write the curves of the leaderboard's ``rows`` (``search.results.rows.trial_rows``) to ``path``,
    atomically; returns the number of rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vidseg.atomic import atomic_path

    columns: dict[str, list] = {name: [] for name in ("trial_id", "epoch", *METRICS, "status", "reference", "config")}
    for row in rows:
        history = row.history
        if history is None:
            continue
        config = json.dumps(row.config)
        for _, epoch in history.dropna(subset=["epoch"]).iterrows():
            columns["trial_id"].append(row.trial_id)
            columns["epoch"].append(int(epoch["epoch"]))
            for name in METRICS:
                columns[name].append(_float(epoch.get(name)))
            columns["status"].append(row.status)
            columns["reference"].append(row.reference)
            columns["config"].append(config)
    table = pa.table({"trial_id": pa.array(columns["trial_id"], pa.string()),
                      "epoch": pa.array(columns["epoch"], pa.int32()),
                      **{name: pa.array(columns[name], pa.float64()) for name in METRICS},
                      **{name: pa.array(columns[name], pa.string()) for name in ("status", "reference", "config")}})
    table = table.replace_schema_metadata({_META: json.dumps(settings, default=str).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return table.num_rows


@dataclass(frozen=True)
class Curves:
    """A table's whole curves: ``values[i, e]`` is trial i's val_iou after epoch e + 1."""

    trial_ids: list[str]
    configs: list[dict[str, Any]]
    values: np.ndarray  # (trials, epochs) val_iou
    seconds: np.ndarray  # (trials, epochs) epoch_seconds
    settings: dict[str, Any]
    ties: np.ndarray | None = None  # (trials, epochs) val_soft_iou, the scheduler's tie score; None in older tables
    losses: np.ndarray | None = None  # (trials, epochs) val_loss (comparable only within one loss type)

    @property
    def floor(self) -> float | None:
        """Copy-last-frame's val IoU on the UNet's masks, where the table records it."""
        return (self.settings.get("baselines") or {}).get("unet")

    @property
    def max_epochs(self) -> int:
        return self.values.shape[1]


def read_curves(path: Path | str, metric: str = "val_iou") -> Curves:
    """The whole curves of a table (trials that ran every epoch to the table's last); raises
    InputError, naming the file, for anything else."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such learning-curve table")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"{path}: not a Parquet learning-curve table ({str(err).splitlines()[0]})") from None
    missing = [name for name in ("trial_id", "epoch", metric, "epoch_seconds", "config") if name not in table.column_names]
    if missing:
        raise InputError(f"{path}: not a learning-curve table (no column {', '.join(missing)})")
    settings = json.loads((table.schema.metadata or {}).get(_META, b"{}"))
    data = table.to_pydict()
    by_trial: dict[str, dict[int, tuple[float, float, str, float, float]]] = {}
    nan = [math.nan] * len(data["trial_id"])
    for trial, epoch, value, seconds, config, tie, loss in zip(
            data["trial_id"], data["epoch"], data[metric], data["epoch_seconds"], data["config"],
            data.get("val_soft_iou", nan), data.get("val_loss", nan)):
        by_trial.setdefault(trial, {})[epoch] = (value, seconds, config, tie, loss)
    max_epochs = int(settings.get("max_epochs") or max((max(e) for e in by_trial.values()), default=0))
    whole = {t: e for t, e in by_trial.items() if set(range(1, max_epochs + 1)) <= set(e)}
    scheduler = settings.get("scheduler", "fifo")
    if scheduler != "fifo" and len(whole) < len(by_trial):  # the survivors of early stopping are a biased sample
        raise InputError(f"{path}: a {scheduler} search's table ({len(by_trial) - len(whole)} of {len(by_trial)} trials "
                         "stopped early); a replay needs every trial's whole curve: build the table with "
                         "run_search.py --scheduler fifo")
    if len(whole) < 2:
        raise InputError(f"{path}: {len(whole)} of {len(by_trial)} trials ran all {max_epochs} epochs; a replay needs "
                         "whole curves: build the table with run_search.py --scheduler fifo")
    ids = sorted(whole)
    values = np.array([[whole[t][e][0] for e in range(1, max_epochs + 1)] for t in ids], dtype=float)
    seconds = np.array([[whole[t][e][1] for e in range(1, max_epochs + 1)] for t in ids], dtype=float)
    configs = [json.loads(whole[t][1][2]) for t in ids]
    ties = np.array([[whole[t][e][3] for e in range(1, max_epochs + 1)] for t in ids], dtype=float)
    losses = np.array([[whole[t][e][4] for e in range(1, max_epochs + 1)] for t in ids], dtype=float)
    return Curves(ids, configs, np.nan_to_num(values, nan=0.0), np.nan_to_num(seconds, nan=1.0), settings,
                  None if np.isnan(ties).all() else ties, losses)
