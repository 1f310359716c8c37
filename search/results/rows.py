"""A finished trial as one typed row: what the leaderboard, the report, the curves table and the
terminal's summary read.

``trial_rows`` makes them from Ray Tune's results, best first; ``TrialRow.leaderboard`` is its line
of ``leaderboard.csv`` (``LEADERBOARD_FIELDS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.results.outcome import Outcome, classify
from search.space import PROFILES, SEARCHED, narrowed, points_to_evaluate, reference_name
from vidseg.train.cost import COST_FIELDS

__all__ = ["TrialRow", "trial_rows", "trial_id_of", "LEADERBOARD_FIELDS", "COST_COLUMNS"]

# the cost columns (vidseg.train.cost): device seconds held (all, training, validation), and the model's
# parameters, multiply-adds and milliseconds for one clip
COST_COLUMNS = {"device_s": "device_seconds", "train_device_s": "train_device_seconds",
                "val_device_s": "val_device_seconds", "params": "params", "macs": "macs", "ms_per_clip": "ms_per_clip"}
LEADERBOARD_FIELDS = ("rank", "trial_id", "name", "status", "epochs", "best_val_iou", "best_epoch", "last_val_iou",
                      "val_iou_true_inputs", "stopped_early", *COST_COLUMNS, "reference", *SEARCHED, "error")

NAN = float("nan")


@dataclass
class TrialRow:
    """One finished trial. Scores are NaN where the trial has none (it diverged at once, or never ran)."""

    trial_id: str
    name: str  # its folder's name (``search.results.board.run_name``)
    outcome: Outcome
    epochs: int  # epochs it reported
    best_val_iou: float = NAN
    best_epoch: int | None = None
    last_val_iou: float = NAN
    val_iou_true_inputs: float = NAN  # at its best epoch, with true masks as inputs (the oracle)
    reference: str = ""  # the reference configuration it is (the paper's, the top teams'), if any
    config: dict[str, Any] = field(default_factory=dict)  # the searched dimensions it has
    error: str = ""  # why it failed, in one line
    path: str = ""  # its trial folder (a local path or a URI)
    result: Any = field(default=None, repr=False, compare=False)  # Ray Tune's Result: history and checkpoints
    rank: int = 0
    cost: dict[str, float] = field(default_factory=dict)  # its last report's COST_FIELDS (vidseg.train.cost)

    @property
    def device_seconds(self) -> float:
        """The device time it held (share x wall seconds), NaN where it never reported."""
        return self.cost.get("device_seconds", NAN)

    @property
    def train_device_seconds(self) -> float:
        return self.cost.get("train_device_seconds", NAN)

    @property
    def macs(self) -> float:
        """Its model's multiply-adds for one clip."""
        return self.cost.get("macs", NAN)

    @property
    def status(self) -> str:
        """Its leaderboard status: TERMINATED, DIVERGED, INFEASIBLE or ERROR (``Outcome.leaderboard``)."""
        return self.outcome.leaderboard

    @property
    def completed(self) -> bool:
        return not self.outcome.failed

    @property
    def stopped_early(self) -> bool:
        return self.outcome is Outcome.STOPPED_EARLY

    @property
    def scored(self) -> bool:
        return not math.isnan(self.best_val_iou)

    @property
    def history(self):
        """Its per-epoch reports (a DataFrame with ``epoch`` and ``val_iou``), or None."""
        history = self.result.metrics_dataframe if self.result is not None else None
        if history is None or not len(history) or "val_iou" not in history:
            return None
        return history

    def leaderboard(self) -> dict[str, str]:
        """Its line of ``leaderboard.csv``, as text (a missing score is an empty cell)."""
        values = {"rank": self.rank, "trial_id": self.trial_id, "name": self.name, "status": self.status,
                  "epochs": self.epochs, "best_val_iou": self.best_val_iou,
                  "best_epoch": "" if self.best_epoch is None else self.best_epoch,
                  "last_val_iou": self.last_val_iou, "val_iou_true_inputs": self.val_iou_true_inputs,
                  "stopped_early": self.stopped_early, "reference": self.reference,
                  **{column: self.cost.get(name, NAN) for column, name in COST_COLUMNS.items()},
                  **{name: self.config.get(name, "") for name in SEARCHED}, "error": self.error}
        return {name: _text(values[name]) for name in LEADERBOARD_FIELDS}


def _text(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.0f}" if value.is_integer() and abs(value) >= 100 else f"{value:.4f}"  # counts: whole
    return str(value)


def trial_id_of(path: str | Path) -> str:
    """Ray's trial id from a trial folder's name (``search.results.board.run_name``: it ends the name)."""
    return Path(path).name.rsplit("-", 1)[-1].removeprefix("trial_")


def trial_row(result, max_epochs: int, references: dict[str, dict[str, Any]]) -> TrialRow:
    """The row of one of Ray Tune's results."""
    config, last = result.config or {}, result.metrics or {}
    outcome = classify(last, max_epochs, result.error is not None)
    if outcome is Outcome.ERROR:
        error = str(result.error).strip().splitlines()[-1][:400]  # it names a trial's file
    else:  # a diverged or infeasible trial's reason (ended by the trainable, not retried)
        error = str(last.get("reason", ""))[:200] if outcome.failed else ""
    row = TrialRow(trial_id=last.get("trial_id") or trial_id_of(result.path), name=Path(result.path).name,
                   outcome=outcome, epochs=0, reference=reference_name(config, references),
                   config={k: config[k] for k in SEARCHED if k in config}, error=error, path=result.path, result=result)
    history = row.history
    if history is not None:
        row.epochs = int(history["epoch"].max())
        scored = history.dropna(subset=["val_iou"])  # a diverged epoch has no score
        if len(scored):
            # of equal best epochs (a plateau at copy-last-frame), the first whose checkpoint Ray kept
            ties = scored[scored["val_iou"] == scored["val_iou"].max()]
            kept = {metrics.get("epoch") for _, metrics in getattr(result, "best_checkpoints", None) or []}
            best = (ties[ties["epoch"].isin(kept)] if ties["epoch"].isin(kept).any() else ties).iloc[0]
            row.best_val_iou, row.best_epoch = float(best["val_iou"]), int(best["epoch"])
            row.last_val_iou, row.val_iou_true_inputs = float(history["val_iou"].iloc[-1]), float(best.get("val_iou_true_inputs", NAN))
        row.cost = {name: float(values.iloc[-1]) for name in COST_FIELDS if name in history
                    and len(values := history[name].dropna())}
    return row


def trial_rows(results, max_epochs: int, settings: dict[str, Any] | None = None) -> list[TrialRow]:
    """One row per trial, best first, ranked (with the search's ``settings``, which reference
    configuration each is)."""
    references = points_to_evaluate(narrowed(PROFILES[settings["profile"]], settings.get("limits"))) if settings else {}
    rows = [trial_row(result, max_epochs, references) for result in results]
    rows.sort(key=lambda r: -r.best_val_iou if r.scored else math.inf)
    for rank, row in enumerate(rows, 1):
        row.rank = rank
    return rows
