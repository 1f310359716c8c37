"""A search bounded by device time (``--budget``): what starts, and what stops.

``BudgetLimiter`` wraps the searcher (under Ray Tune's ``SearchGenerator``, over the concurrency
limiter). It hears every trial's cost (each report's ``device_seconds``, ``vidseg.train.cost``),
and starts a trial only where what is spent, what the running trials are still expected to spend
and the new trial's expected cost (``search.tools.estimate``: one trial with the scheduler) all fit
the budget. While trials run, a trial that does not fit waits (one may end early, stopped by the
scheduler); where none runs and none fits, the searcher is finished and the search ends with its
report. ``BudgetStop``, a Tune ``Stopper``, stops a running trial at its report where another
epoch like its last would overrun the budget, so the search overruns it by at most the epochs
other trials have in flight then.

The limiter's state (the budget, each trial's cost so far, whether the budget ended the search)
is saved with the searcher's, so ``--resume`` counts on from what was spent; a resume with a larger
``--budget`` sets it here (``budget_of``) and lets a search the budget had ended go on.
"""

from __future__ import annotations

import logging
from typing import Any

from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from search.results.durations import duration_text

__all__ = ["BudgetLimiter", "BudgetStop", "budget_of"]

log = logging.getLogger("vidseg.search")


class BudgetLimiter(Searcher):
    """Starts no trial whose expected cost would overrun what is left of ``budget_s`` (None: no
    bound); ``trial_s`` is one trial's expected device seconds."""

    end_reason = ""  # why the budget ended the search, once it has (a class default: a limiter pickled without it)

    def __init__(self, searcher: Searcher, budget_s: float | None = None, trial_s: float = 0.0) -> None:
        self.searcher = searcher
        self.budget_s, self.trial_s = budget_s, trial_s
        self.costs: dict[str, float] = {}  # trial id -> device seconds so far
        self.epoch_costs: dict[str, float] = {}  # trial id -> what its last epoch cost
        self.running: set[str] = set()
        self.stopped: set[str] = set()  # the running trials the budget stopped (BudgetStop)
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    @property
    def spent(self) -> float:
        return sum(self.costs.values())

    def committed(self) -> float:
        """What the running trials are still expected to spend."""
        return sum(max(0.0, self.trial_s - self.costs.get(t, 0.0)) for t in self.running)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict | None:
        if self.budget_s is not None:
            left = self.budget_s - self.spent
            if self.committed() + self.trial_s > left:
                if self.running:
                    return None  # a running trial may yet end early and leave room
                self.end_reason = (f"the budget of {duration_text(self.budget_s)} ended it: {duration_text(max(left, 0))} "
                              f"left, one more trial expected to cost {duration_text(self.trial_s)}")
                log.info("%s", self.end_reason)
                return Searcher.FINISHED
        suggested = self.searcher.suggest(trial_id)
        if isinstance(suggested, dict):
            self.running.add(trial_id)
        return suggested

    def heard(self, trial_id: str, result: dict | None) -> None:
        cost = (result or {}).get("device_seconds")
        if isinstance(cost, (int, float)) and float(cost) > self.costs.get(trial_id, 0.0):
            self.epoch_costs[trial_id] = float(cost) - self.costs.get(trial_id, 0.0)
            self.costs[trial_id] = float(cost)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.heard(trial_id, result)
        self.running.add(trial_id)  # a restored trial runs again
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.heard(trial_id, result)
        self.running.discard(trial_id)
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def stopped_by(self, trial_id: str) -> str | None:
        """"the budget" for a trial the budget stopped (the progress table's words), else None."""
        return "the budget" if trial_id in self.stopped else None

    def over(self, trial_id: str | None = None) -> bool:
        """Whether the budget is spent, or (for ``trial_id``) would be by another epoch like its last."""
        if self.budget_s is None:
            return False
        return self.spent + (self.epoch_costs.get(trial_id, 0.0) if trial_id else 0.0) > self.budget_s

    def get_state(self) -> dict[str, Any]:
        return {"budget_s": self.budget_s, "trial_s": self.trial_s, "costs": dict(self.costs),
                "epoch_costs": dict(self.epoch_costs), "end_reason": self.end_reason}

    def set_state(self, state: dict[str, Any]) -> None:
        """The costs so far, restored; the budget and the expected cost stay those given now (the
        resumed search's settings), and a budget that changed has not ended the search."""
        self.costs, self.epoch_costs = dict(state.get("costs", {})), dict(state.get("epoch_costs", {}))
        said = state.get("end_reason", state.get("ended", ""))  # "ended": a search saved before the name
        self.end_reason = said if state.get("budget_s") == self.budget_s else ""
        self.trial_s = self.trial_s or state.get("trial_s", 0.0)

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)


class BudgetStop(Stopper):
    """Stops a running trial at its report where one more epoch like its last would overrun the
    budget of ``limiter``."""

    def __init__(self, limiter: BudgetLimiter) -> None:
        self.limiter = limiter

    def __call__(self, trial_id: str, result: dict) -> bool:
        self.limiter.heard(trial_id, result)
        if self.limiter.over(trial_id):
            if not self.limiter.end_reason:
                self.limiter.end_reason = (f"the budget of {duration_text(self.limiter.budget_s)} is spent, or would be "
                                      "by one more epoch")
                log.info("%s: running trials stop at their next report", self.limiter.end_reason)
            self.limiter.stopped.add(trial_id)
            return True
        return False

    def stop_all(self) -> bool:
        return False


def budget_of(search_alg) -> BudgetLimiter | None:
    """The ``BudgetLimiter`` among a search algorithm's wrapped searchers, or None (a search started
    before budgets were kept)."""
    searcher = search_alg
    while searcher is not None:
        if isinstance(searcher, BudgetLimiter):
            return searcher
        searcher = getattr(searcher, "searcher", None)
    return None
