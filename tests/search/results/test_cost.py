"""The report's fronts, on hand-built trials."""

import math

from search.results.cost import cheapest_within, pareto_front
from search.results.outcome import Outcome
from search.results.rows import TrialRow


def _row(name: str, val: float, train_s: float) -> TrialRow:
    return TrialRow(name, name, Outcome.COMPLETED, 3, best_val_iou=val, best_epoch=3,
                    cost={"train_device_seconds": train_s, "device_seconds": train_s + 1.0})


def test_the_front_is_the_trials_nothing_beats_on_both_cheapest_first():
    rows = [_row("a", 0.30, 50.0),   # the best, and the dearest
            _row("b", 0.20, 10.0),   # on the front
            _row("c", 0.20, 12.0),   # equal val IoU, dearer than b: beaten
            _row("d", 0.25, 12.0),   # on the front
            _row("e", 0.10, 11.0),   # beaten by b
            _row("f", 0.05, 5.0),    # the cheapest: on the front
            _row("g", 0.20, 10.0),   # b's equal in both: the first of equals (b) stands
            _row("h", math.nan, 1.0),  # never scored: not priced
            _row("i", 0.40, math.nan)]  # no cost: not priced
    assert [r.name for r in pareto_front(rows, "train_device_seconds")] == ["f", "b", "d", "a"]
    assert cheapest_within(rows, 0.01).name == "a"
    assert cheapest_within(rows, 0.20).name == "d"  # within 20% of 0.30: 0.25 at 12 s, not a at 50 s
    assert pareto_front([], "train_device_seconds") == [] and cheapest_within([], 0.01) is None
