"""The search's early-stopping scheduler: Ray's ASHA, with ties broken."""

from __future__ import annotations

from ray.tune.schedulers import AsyncHyperBandScheduler

__all__ = ["TieBreakingASHA"]


class TieBreakingASHA(AsyncHyperBandScheduler):
    """Ray's asynchronous successive halving (one bracket: ASHA; several: asynchronous Hyperband),
    with ties at a rung going to the trial that reached the scheduler first.

    Ray's promotes every trial that equals its rung's cutoff, so trials stuck on the same plateau
    (all-background predictions score the same val IoU to the last digit) would all run to the end.
    Here each trial's score is lowered by 1e-9 per place in arrival order, for the scheduler only:
    far below any real difference in IoU."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._arrival: dict[str, int] = {}

    def _broken(self, trial, result: dict | None) -> dict | None:
        value = (result or {}).get(self._metric)
        if not isinstance(value, (int, float)) or value != value:
            return result
        place = self._arrival.setdefault(trial.trial_id, len(self._arrival))
        return {**result, self._metric: value - (self._metric_op or 1.0) * 1e-9 * place}

    def on_trial_result(self, tune_controller, trial, result: dict):
        return super().on_trial_result(tune_controller, trial, self._broken(trial, result))

    def on_trial_complete(self, tune_controller, trial, result: dict):
        return super().on_trial_complete(tune_controller, trial, self._broken(trial, result))
