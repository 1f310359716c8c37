"""A budget of device time (``search.run.budget``): which trials start, which stop, and what a resume keeps."""

import pickle

from ray.tune.search import Searcher

from search.run.budget import BudgetLimiter, BudgetStop, budget_of
from search.run.ray_internals import GrowingSearch
from search.run.study import RetryingLimiter


class Counting(Searcher):
    """The searcher under the budget: a new config per trial."""

    def __init__(self) -> None:
        super().__init__(metric="val_iou", mode="max")
        self.asked, self.told = [], []

    def suggest(self, trial_id):
        self.asked.append(trial_id)
        return {"lr": 0.001 * len(self.asked)}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.told.append(trial_id)


def test_no_trial_starts_whose_expected_cost_would_overrun_what_is_left():
    inner = Counting()
    limiter = BudgetLimiter(inner, budget_s=10.0, trial_s=3.0)
    assert all(isinstance(limiter.suggest(t), dict) for t in ("a", "b", "c"))  # 0 spent + 6 running + 3 <= 10
    assert limiter.suggest("d") is None  # 9 committed + 3 > 10, but a running trial may end early: wait
    limiter.on_trial_result("a", {"epoch": 1, "device_seconds": 1.0})
    limiter.on_trial_complete("a", {"epoch": 1, "device_seconds": 1.0})  # stopped at its first rung
    assert isinstance(limiter.suggest("d"), dict)  # 1 spent + 6 for b and c + 3 <= 10
    for trial in ("b", "c", "d"):
        limiter.on_trial_complete(trial, {"device_seconds": 2.5})
    assert limiter.spent == 8.5 and not limiter.running
    assert limiter.suggest("e") is Searcher.FINISHED  # nothing runs and 1.5 s is left: the search ends
    assert "the budget of 10.0s ended it" in limiter.end_reason
    assert inner.asked == ["a", "b", "c", "d"] and inner.told == ["a", "b", "c", "d"]


def test_no_budget_bounds_nothing():
    limiter = BudgetLimiter(Counting())
    for trial in range(50):
        assert isinstance(limiter.suggest(str(trial)), dict)
        limiter.on_trial_complete(str(trial), {"device_seconds": 1e6})
    assert not limiter.end_reason and not BudgetStop(limiter)("x", {"device_seconds": 1e9})


def test_a_running_trial_stops_where_another_epoch_would_overrun_the_budget():
    limiter = BudgetLimiter(Counting(), budget_s=10.0, trial_s=1.0)
    stop = BudgetStop(limiter)
    limiter.suggest("a"), limiter.suggest("b")
    assert not stop("a", {"device_seconds": 3.0})  # its epochs cost 3 s: 3 + 3 <= 10
    assert not stop("b", {"device_seconds": 1.0})
    assert not stop("b", {"device_seconds": 2.0})  # 5 spent, b's next epoch 1 s
    assert stop("a", {"device_seconds": 6.0})  # 8 spent, a's next epoch another 3: over
    assert not stop("b", {"device_seconds": 3.0})  # 9 spent, b's next 1 s: 10, not over
    assert stop("b", {"device_seconds": 4.0}) and limiter.spent == 10.0
    assert "10.0s is spent" in limiter.end_reason
    # the progress table's words for how each ended: the budget stopped both, the scheduler none
    assert limiter.stopped_by("a") == limiter.stopped_by("b") == "the budget" and limiter.stopped_by("c") is None


def test_a_resume_counts_on_from_what_was_spent_and_a_raised_budget_goes_on():
    search = GrowingSearch(BudgetLimiter(RetryingLimiter(Counting(), max_concurrent=2), budget_s=4.0, trial_s=2.0))
    limiter = budget_of(search)
    assert limiter is search.searcher and budget_of(GrowingSearch(Counting())) is None
    limiter.suggest("a")
    limiter.on_trial_complete("a", {"device_seconds": 3.0})
    assert limiter.suggest("b") is Searcher.FINISHED
    saved = pickle.dumps(limiter.get_state())
    same = BudgetLimiter(Counting(), budget_s=4.0, trial_s=2.0)  # resumed with the budget it had
    same.set_state(pickle.loads(saved))
    assert same.spent == 3.0 and same.end_reason and same.suggest("b") is Searcher.FINISHED
    raised = BudgetLimiter(Counting(), budget_s=8.0, trial_s=2.0)  # --resume --budget 8s
    raised.set_state(pickle.loads(saved))
    assert raised.spent == 3.0 and not raised.end_reason and isinstance(raised.suggest("b"), dict)


def test_a_limiter_saved_before_end_reason_had_its_name_keeps_why_it_ended():
    """A search saved when the state's key and the limiter's attribute were ``ended``: resumed, its
    reason is read back; a limiter unpickled from then has none until its state is set."""
    old = {"budget_s": 4.0, "trial_s": 2.0, "costs": {"a": 3.0}, "epoch_costs": {}, "ended": "the budget of 4.0s ended it"}
    same = BudgetLimiter(Counting(), budget_s=4.0, trial_s=2.0)
    same.set_state(old)
    assert same.end_reason == "the budget of 4.0s ended it" and same.suggest("b") is Searcher.FINISHED
    unpickled = BudgetLimiter.__new__(BudgetLimiter)
    unpickled.__dict__.update({"budget_s": 4.0, "ended": "x"})  # an instance as pickle restores one saved then
    assert unpickled.end_reason == ""
