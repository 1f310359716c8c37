"""How a trial ended: one classification, read by the leaderboard, TensorBoard, the Optuna study
and the terminal alike.

A trial ends ``COMPLETED`` (it ran every epoch), ``STOPPED_EARLY`` (the scheduler stopped it),
``DIVERGED`` (its loss or output became NaN or infinite), ``INFEASIBLE`` (it cannot fit one GPU of
the cluster's size, so it never ran) or ``ERROR`` (anything else: its worker raised or died). The
trainable marks the two endings it decides itself with a last report carrying ``OUTCOME``.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

__all__ = ["Outcome", "classify", "OUTCOME", "DIVERGED", "INFEASIBLE"]

OUTCOME = "outcome"  # the report key that marks a trial's last report: DIVERGED or INFEASIBLE
DIVERGED, INFEASIBLE = "DIVERGED", "INFEASIBLE"


class Outcome(Enum):
    """How a trial ended; ``value`` is its name in words (the terminal's and TensorBoard's)."""

    COMPLETED = "completed"
    STOPPED_EARLY = "stopped early"
    DIVERGED = "diverged"
    INFEASIBLE = "infeasible"
    ERROR = "error"

    @property
    def failed(self) -> bool:
        """No usable result: Optuna records it as a failed trial, TensorBoard as a failed session."""
        return self in (Outcome.DIVERGED, Outcome.INFEASIBLE, Outcome.ERROR)

    @property
    def leaderboard(self) -> str:
        """Its ``status`` in leaderboard.csv: Ray Tune's TERMINATED for a trial that ended normally
        (``stopped_early`` tells the two apart), else DIVERGED, INFEASIBLE or ERROR."""
        return "TERMINATED" if not self.failed else self.name

    @property
    def code(self) -> int:
        """Its number on TensorBoard's ``trial/status`` chart (0 is a running trial)."""
        return list(Outcome).index(self) + 1


def classify(last_result: dict[str, Any] | None, max_epochs: int, errored: bool) -> Outcome:
    """The outcome of a finished trial from its last report, the epochs it was to run, and whether
    Ray Tune saw it error."""
    last = last_result or {}
    if errored:
        return Outcome.ERROR
    if last.get(OUTCOME) == DIVERGED:
        return Outcome.DIVERGED
    if last.get(OUTCOME) == INFEASIBLE:
        return Outcome.INFEASIBLE
    return Outcome.COMPLETED if int(last.get("epoch", 0) or 0) >= max_epochs else Outcome.STOPPED_EARLY
