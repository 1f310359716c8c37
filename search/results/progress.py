"""The terminal's view of a running search: one compact table row per trial-epoch.

Ray Tune's own output (a status table and a configuration box at every trial start) is off
(``verbose=0``); ``ProgressTable``, a driver callback, prints instead::

    trial                                 lr       batch  epoch   val IoU    soft   plain   known    best search best
    gsta-2.8.16.32-ce-skip-c7a607ca       6.9e-04      4   3/12    0.1146  0.1302  0.1146  0.1151  0.1146      0.1146 new best

``val IoU`` is the trial's own decoding's (``decode``), ``soft`` the scheduler's tie score, and
``plain`` and ``known`` the same epoch's val IoU decoded plainly and with the known classes only,
so that what known-objects decoding gains shows for every trial.

and a line when a trial ends: completed, stopped early by the scheduler, diverged or failed.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from ray.tune import Callback

from search.results.board import trial_status

__all__ = ["ProgressTable"]

HEADER = (f"{'trial':<40} {'lr':>8} {'batch':>5} {'epoch':>7} {'val IoU':>8} {'soft':>7} {'plain':>7} {'known':>7} "
          f"{'best':>7} {'search best':>11}")
HEADER_EVERY = 30  # rows


class ProgressTable(Callback):
    """Prints a row per trial result and a line per finished trial to ``stream`` (stdout)."""

    def __init__(self, max_epochs: int, num_samples: int | None, scheduler: str = "asha", stream: TextIO | None = None,
                 stopped_by: Callable[[str], str | None] | None = None) -> None:
        """``stopped_by(trial_id)`` names what stopped a trial other than the scheduler (the budget), or None."""
        self.max_epochs, self.num_samples, self.scheduler, self.stream = max_epochs, num_samples, scheduler, stream
        self.stopped_by = stopped_by or (lambda trial_id: None)
        self.trials_done = 0
        self.best: float = -math.inf
        self.trial_best: dict[str, float] = {}
        self._rows = 0
        self._started = time.monotonic()

    def saved_state(self) -> dict[str, Any]:
        """Saved with Ray Tune's experiment state (part "progress" of ``search.run.saved_states.SavedStates``),
        so a resumed search counts on from where it stopped."""
        return {"trials_done": self.trials_done, "best": self.best, "trial_best": dict(self.trial_best)}

    def restore_state(self, state: dict[str, Any]) -> None:
        self.trials_done = state["trials_done"] if "trials_done" in state else state["ended"]  # "ended": saved before the name
        self.best, self.trial_best = state["best"], dict(state["trial_best"])

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    @staticmethod
    def _name(trial) -> str:
        return Path(trial.local_path).name if trial.local_path else str(trial)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict[str, Any], **info) -> None:
        value = result.get("val_iou")
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        if self._rows % HEADER_EVERY == 0:
            self._print(HEADER)
        self._rows += 1
        name = self._name(trial)
        self.trial_best[name] = max(self.trial_best.get(name, -math.inf), value)
        mark = ""
        if value > self.best:
            self.best, mark = value, " new best"
        config = trial.config
        self._print(f"{name[:40]:<40} {config.get('lr', math.nan):>8.1e} {config.get('batch_size', ''):>5} "
                    f"{result.get('epoch', iteration):>3}/{config.get('epochs', self.max_epochs):<3} {value:>8.4f} "
                    f"{result.get('val_soft_iou', math.nan):>7.4f} "
                    f"{result.get('val_iou_plain', math.nan):>7.4f} {result.get('val_iou_known', math.nan):>7.4f} "
                    f"{self.trial_best[name]:>7.4f} {self.best:>11.4f}{mark}")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._ended(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._ended(trial, failed=True)

    def _ended(self, trial, failed: bool) -> None:
        status = trial_status(trial.last_result, int(trial.config.get("epochs", self.max_epochs)), failed)
        name = self._name(trial)
        epochs = int((trial.last_result or {}).get("epoch", 0) or 0)
        self.trials_done += 1
        if status == "stopped early":
            what = (f"stopped early by {self.stopped_by(trial.trial_id) or self.scheduler.upper()} after {epochs} "
                    f"epoch{'s' * (epochs != 1)}")
        elif status == "completed":
            what = f"completed {epochs} epochs"
        else:
            reason = (trial.last_result or {}).get("reason") or (str(trial.error_file or "") if failed else "")
            what = f"{status}{': ' + str(reason)[:100] if reason else ''}"
        best = self.trial_best.get(name)
        self._print(f"  {name}: {what}" + (f", best {best:.4f}" if best is not None else "")
                    + (f"  [{self.trials_done}/{self.num_samples} trials done]" if self.num_samples is not None
                       else f"  [{self.trials_done} trials done]")
                    + f"  ({(time.monotonic() - self._started) / 60:.1f} min)")
