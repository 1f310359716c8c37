"""The search's schedulers (``search.run.schedulers.RungScheduler``): ties decided by the soft val IoU,
no free ride at an empty rung, and PASHA's growing budget; and that two trials of a search under
the concurrency limit really run at once."""

import math
import time

import pytest
from ray.tune.schedulers import TrialScheduler

from search.tools.replay import _Trial
from search.run.schedulers import RungScheduler
from search.run.tuner import make_scheduler
from tests.conftest import RAY

GO, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP
PLATEAU = 0.2511  # copy-last-frame on the demo's UNet masks: where every trial with the last-frame skip starts


def _report(scheduler, trial_id: str, epoch: int, value: float, soft: float | None = None) -> str:
    if epoch == 1:
        scheduler.on_trial_add(None, _Trial(trial_id))
    result = {"epoch": epoch, "val_iou": value, "training_iteration": epoch}
    if soft is not None:
        result["val_soft_iou"] = soft
    return scheduler.on_trial_result(None, _Trial(trial_id), result)


def test_tied_val_ious_are_decided_by_the_soft_score_not_by_arrival():
    def decisions(ties: str) -> list[str]:
        scheduler = make_scheduler("asha", 10, 1, 3, ties=ties)
        return [_report(scheduler, name, 1, PLATEAU, soft) for name, soft in
                (("a", 0.30), ("b", 0.35), ("c", 0.28), ("d", 0.40))], scheduler

    by_score, scheduler = decisions("score")
    assert by_score == [GO, GO, STOP, GO]  # c is below both earlier tied trials' scores; d above all three
    assert scheduler.decisions["c"] == f"stopped at epoch 1: val IoU {PLATEAU:.4f} ties 2 earlier trial(s); " \
                                       "by val_soft_iou 0.2800 it ranks 3 of 3"
    by_arrival, scheduler = decisions("arrival")
    assert by_arrival == [GO, STOP, STOP, STOP]  # the old rule: the first to arrive wins every tie
    assert "by arrival it ranks 2 of 2" in scheduler.decisions["b"]


def test_the_tie_tolerance_counts_near_ties_as_ties_and_larger_gaps_as_evidence():
    scheduler = RungScheduler(10, 1, 3, tie_tolerance=1e-4)
    assert _report(scheduler, "a", 1, 0.25110, 0.30) == GO
    assert _report(scheduler, "b", 1, 0.25115, 0.20) == STOP  # 5e-5 higher, within the tolerance: the score decides
    assert _report(scheduler, "c", 1, 0.25200, 0.10) == GO  # 9e-4 higher: val IoU decides
    default = make_scheduler("asha", 10, 1, 3)  # the search's: exact ties only
    assert _report(default, "a", 1, 0.25110, 0.30) == GO
    assert _report(default, "b", 1, 0.25115, 0.20) == GO


def test_a_trial_clearly_below_copy_last_frame_gets_no_free_ride_at_an_empty_rung():
    plain = make_scheduler("asha", 10, 1, 3)
    assert _report(plain, "mse", 1, 0.0191, 0.01) == GO  # ASHA alone: an empty rung promotes anything
    floored = make_scheduler("asha", 10, 1, 3, floor=PLATEAU)
    assert _report(floored, "mse", 1, 0.0191, 0.01) == STOP
    assert "clearly below copy-last-frame (0.2511)" in floored.decisions["mse"]
    assert _report(floored, "near", 1, PLATEAU * 0.95, 0.3) == GO  # within the margin: not clearly below
    # with reduction_factor results at the rung, ranking decides, as in ASHA
    for name, value in (("x", 0.010), ("y", 0.011)):
        assert _report(floored, name, 1, value, 0.01) == STOP
    assert _report(floored, "z", 1, 0.30, 0.5) == GO
    assert _report(floored, "low", 1, 0.0195, 0.01) == STOP  # ranked now: below the rung's cutoff
    assert "below the rung's cutoff" in floored.decisions["low"]
    assert _report(floored, "top", 1, 0.31, 0.5) == GO


def test_a_nan_result_stops_and_the_last_epoch_stops():
    scheduler = make_scheduler("asha", 4, 1, 2)
    assert _report(scheduler, "a", 1, math.nan) == STOP
    for epoch in (1, 2, 3):
        assert _report(scheduler, "b", epoch, 0.1 * epoch, 0.1) == GO
    assert _report(scheduler, "b", 4, 0.4, 0.1) == STOP


def test_pasha_grows_its_budget_only_when_the_top_two_rungs_disagree():
    scheduler = make_scheduler("pasha", 10, 1, 3)
    assert isinstance(scheduler, RungScheduler) and scheduler.rungs == [1, 3, 9] and scheduler.budget == 3
    assert [_report(scheduler, "a", e, v, s) for e, v, s in ((1, PLATEAU, 0.30), (2, 0.26, 0.3), (3, 0.27, 0.3))] \
        == [GO, GO, STOP]  # alone at the top rung: nothing disagrees, so it ends at the budget
    assert scheduler.decisions["a"].startswith("ran the budget of 3 epochs")
    assert [_report(scheduler, "b", e, v, s) for e, v, s in ((1, PLATEAU, 0.31), (2, 0.26, 0.3), (3, 0.26, 0.3))] \
        == [GO, GO, STOP]  # below a at epoch 3 (ASHA's cutoff)
    assert scheduler.budget == 3
    # c tops rung 3; at rung 1 b ranked above a (its soft score), at rung 3 a above b: the rungs
    # disagree, so the budget grows to the next rung and c goes on
    assert [_report(scheduler, "c", e, v, s) for e, v, s in ((1, PLATEAU, 0.32), (2, 0.28, 0.3), (3, 0.30, 0.3))] \
        == [GO, GO, GO]
    assert scheduler.budget == 9
    assert [_report(scheduler, "c", e, 0.31, 0.3) for e in range(4, 10)] == [GO] * 5 + [STOP]
    assert scheduler.budget == 9 and scheduler.decisions["c"].startswith("ran the budget of 9 epochs")
    asha = make_scheduler("asha", 10, 1, 3)
    assert asha.budget == 10 and [_report(asha, "a", e, 0.1 * e, 0.1) for e in range(1, 11)] == [GO] * 9 + [STOP]


def test_a_bad_setting_is_refused():
    with pytest.raises(ValueError, match="no scheduler 'median'"):
        make_scheduler("median", 10, 1, 3)
    with pytest.raises(ValueError, match="reduction_factor >= 2"):
        RungScheduler(10, 1, 1)


@RAY
def test_two_trials_of_a_search_under_the_concurrency_limit_run_at_once(local_ray, tmp_path):
    """Ray before 2.60 ran a custom searcher's trials one at a time under a ConcurrencyLimiter
    (ray-project/ray PR 63770); the search's searcher and limiter, at max_concurrent 2, overlap."""
    from ray import tune

    from search.space import PROFILES, SearchSpace
    from search.results.journal import journal_storage
    from search.run.study import RetryingLimiter, StudySearch, make_sampler

    def trainable(config):
        start = time.time()
        time.sleep(2.0)
        tune.report({"epoch": 1, "val_iou": 0.1, "start": start, "end": time.time()})

    searcher = StudySearch(space=SearchSpace(PROFILES["smoke"], 1, 0), max_epochs=1,
                           sampler=make_sampler("random", 0, 2), storage=journal_storage(tmp_path / "optuna.journal"),
                           study_name="overlap")
    tuner = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}),
                       tune_config=tune.TuneConfig(search_alg=RetryingLimiter(searcher, max_concurrent=2),
                                                   num_samples=2, metric="val_iou", mode="max"),
                       run_config=tune.RunConfig(storage_path=str(tmp_path / "ray"), name="overlap", verbose=0))
    spans = sorted((r.metrics["start"], r.metrics["end"]) for r in tuner.fit())
    assert len(spans) == 2
    assert spans[1][0] < spans[0][1], f"the trials ran one after the other: {spans}"


def _asha_rule(scheduler: RungScheduler, earlier: list[tuple[float, float, int]], entry) -> tuple[bool, str]:
    """ASHA's rule with ties as the module's docstring states it, every earlier result placed and
    sorted: the oracle for the scheduler's ordered index."""
    import numpy as np

    value, tolerance = entry[0], scheduler.tie_tolerance
    if not earlier:
        return True, ""
    nudge = max(abs(value), 1.0) * 1e-12
    tied = [abs(e[0] - value) <= tolerance for e in earlier]
    placed = [(value + nudge if scheduler.beats(e, entry) else value - nudge) if t else e[0] for e, t in zip(earlier, tied)]
    share = (1 - 1 / scheduler.reduction_factor) * 100
    if value >= np.percentile(placed, share):
        return True, ""
    won_every_tie = [value - nudge if t else e[0] for e, t in zip(earlier, tied)]
    return False, "ties" if any(tied) and value >= np.percentile(won_every_tie, share) else "below"


@pytest.mark.parametrize("tolerance", [0.0, 0.01])
def test_a_rung_of_thousands_decides_as_the_rule_over_all_its_results(tolerance):
    """The rung's ordered index (a cluster's search records thousands of results at a rung) gives
    ASHA's decision, and its reason, on every arrival: exact ties (the copy-last-frame plateau), near
    ties within the tolerance, tie scores known and unknown, values a hair apart."""
    import random

    draw = random.Random(7)
    scheduler = RungScheduler(27, 1, 3, tie_tolerance=tolerance)
    for k in range(800):
        kind = draw.random()
        value = PLATEAU if kind < 0.3 else PLATEAU - 1e-13 if kind < 0.35 else round(draw.uniform(0.2, 0.4), 3)
        soft = math.nan if draw.random() < 0.2 else round(draw.uniform(0.2, 0.4), 2)
        trial = f"t{k}"
        scheduler.on_trial_add(None, _Trial(trial))
        entry = (value, soft, scheduler.arrival[trial])
        expected = _asha_rule(scheduler, list(scheduler.recorded[1].values()), entry)
        decided = scheduler.on_trial_result(None, _Trial(trial), {"epoch": 1, "val_iou": value, "val_soft_iou": soft})
        assert (decided == GO) == expected[0], k
        if not expected[0]:
            assert ("ties" in scheduler.decisions[trial]) == (expected[1] == "ties"), k
    assert len(scheduler.recorded[1]) == 800 and scheduler._values[1] == sorted(scheduler._values[1])
