"""The search's early-stopping schedulers, deciding on evidence.

``RungScheduler`` is asynchronous successive halving (ASHA: Li et al., 2020, as Ray's
``AsyncHyperBandScheduler`` with one bracket) with three changes, each measured on the demo's
learning-curve table (``python -m search.replay``, docs/search.md):

- **Ties go to the tie score, not to arrival.** Trials with the last-frame skip all start at
  copy-last-frame, so at the first rung many score the same val IoU to the last digit. Trials
  whose val IoU lies within ``tie_tolerance`` of each other are ordered by ``tie_metric``
  (``val_soft_iou``: the Jaccard index with class probabilities in place of masks, computed the
  same way for every loss), and only where that ties too, by arrival.
- **No free ride at an empty rung.** Where a rung holds fewer than ``reduction_factor`` earlier
  results, ASHA promotes whatever arrives (it has nothing to compare with). Here a trial clearly
  below ``floor`` (copy-last-frame on the UNet's val masks, known before the first trial) is
  stopped there instead: below ``floor * (1 - floor_margin)``.
- **Progressive budget** (``progressive``: PASHA, Bohdal et al., ICLR 2023, in its stopping form).
  Trials stop at a current top rung, which starts at the second rung and moves up one rung each
  time the two top rungs disagree: a trial arriving at the top rung that ASHA would promote goes on
  (and the top rung moves) only if some pair of trials at the top rung is ordered one way there
  and the other way at the rung below, by the same tie-aware order. Trials already stopped at a
  lower top rung stay stopped (Ray's function trainables end when stopped; PASHA's promotion form
  would pause them).

The live search (``search.run.tuner.make_scheduler``) and the replay (``search.tools.replay``) build the same
class and hand it the same results, so they make the same decisions on the same curves.

**Across ``--resume``.** Ray Tune never saves a trial scheduler (ray-project/ray#30838): a restored
Tuner hands back the scheduler as it was pickled before the first trial. So each scheduler here
gives its decision state (``get_state``: rung records, arrival order, PASHA's budget, Hyperband's
brackets and its random generator) to ``SchedulerState``, which the driver's one stateful Tune
callback (``search.run.saved_states.SavedStates``) saves by name with every experiment checkpoint and
gives back before Ray re-adds the restored trials: a resumed search decides as if it had never stopped.
"""

from __future__ import annotations

import bisect
import logging
import math
from pathlib import Path

from typing import Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from search.run.ray_internals import OpenHyperBand

__all__ = ["RungScheduler", "TieBreakingASHA", "SchedulerState", "TIE_METRIC", "TIE_TOLERANCE", "FLOOR_MARGIN"]

log = logging.getLogger("vidseg.search")

TIE_METRIC = "val_soft_iou"
# val IoUs this close are a tie, decided by the tie score: only exact ties. Val IoU comes from integer
# confusion counts, so trials that predict the same masks (the demo's many at copy-last-frame) score
# the same to the last bit; and on the demo's table, for gaps up to 1e-4 val IoU itself told which
# of two trials ends better as often as the soft score (95% against 93% of 56 pairs: python -m
# search.tools.replay TABLE --tie-evidence, docs/search.md)
TIE_TOLERANCE = 0.0
# "clearly below" copy-last-frame: a trial this far under it, at a rung with too few results to rank
# it against, is stopped there
FLOOR_MARGIN = 0.1


class RungScheduler(FIFOScheduler):
    """ASHA with ties decided by a tie score, a floor at sparse rungs, and (``progressive``) PASHA's
    growing budget (the module's docstring). Results carry ``time_attr`` (the epoch), ``metric``
    (maximised) and, where known, ``tie_metric``; a NaN metric (an infeasible or diverged trial's
    last report) stops the trial. ``narrate`` False: why it stops a trial is not logged (a replay's
    made-up trials)."""

    narrate = True  # a class default: a scheduler pickled before the attribute existed narrates

    def __init__(self, max_t: int, grace_period: int = 1, reduction_factor: int = 3, *, metric: str = "val_iou",
                 time_attr: str = "epoch", tie_metric: str | None = TIE_METRIC, tie_tolerance: float = TIE_TOLERANCE,
                 floor: float | None = None, floor_margin: float = FLOOR_MARGIN, progressive: bool = False) -> None:
        super().__init__()
        if grace_period < 1 or reduction_factor < 2 or max_t < grace_period:
            raise ValueError(f"need 1 <= grace_period <= max_t and reduction_factor >= 2, got grace {grace_period}, "
                             f"factor {reduction_factor}, max_t {max_t}")
        self.max_t, self.grace_period, self.reduction_factor = max_t, grace_period, reduction_factor
        super().set_search_properties(metric, "max")  # the metric Ray's public TrialScheduler.metric returns
        self.time_attr, self.tie_metric, self.tie_tolerance = time_attr, tie_metric, tie_tolerance
        self.floor, self.floor_margin, self.progressive = floor, floor_margin, progressive
        count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)  # as Ray's ASHA
        self.rungs = [grace_period * reduction_factor ** k for k in range(count) if grace_period * reduction_factor ** k < max_t]
        # rung -> trial id -> (metric, tie score, arrival place)
        self.recorded: dict[int, dict[str, tuple[float, float, int]]] = {rung: {} for rung in self.rungs}
        self._index()
        self.arrival: dict[str, int] = {}
        self.top = min(1, len(self.rungs)) if progressive else len(self.rungs)  # trials stop at rungs[top]
        self.decisions: dict[str, str] = {}  # trial id -> why it was stopped, for the log and the tests

    @property
    def budget(self) -> int:
        """The most epochs a trial may run now: the top rung's (progressive), else ``max_t``."""
        return self.rungs[self.top] if self.top < len(self.rungs) else self.max_t

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        return (metric in (None, self.metric)) and (mode in (None, "max"))

    def on_trial_add(self, tune_controller, trial) -> None:
        self.arrival.setdefault(trial.trial_id, len(self.arrival))

    def get_state(self) -> dict[str, Any]:
        """What its decisions depend on, as plain data (``SchedulerState`` saves it)."""
        return {"rungs": list(self.rungs), "recorded": {rung: dict(r) for rung, r in self.recorded.items()},
                "arrival": dict(self.arrival), "top": self.top, "decisions": dict(self.decisions)}

    def set_state(self, state: dict[str, Any]) -> int:
        """Take back ``get_state``'s data; returns how many rung records it holds. Raises ValueError
        where the state is of other rungs (another max_t, grace period or factor)."""
        if list(state["rungs"]) != self.rungs:
            raise ValueError(f"saved rungs {state['rungs']} are not this scheduler's {self.rungs}")
        self.recorded = {rung: {t: tuple(e) for t, e in state["recorded"][rung].items()} for rung in self.rungs}
        self._index()
        self.arrival, self.top, self.decisions = dict(state["arrival"]), int(state["top"]), dict(state["decisions"])
        return sum(len(r) for r in self.recorded.values())

    def _index(self) -> None:
        """Each rung's recorded values in order, with their trial ids beside them: a rung's cutoff in
        logarithmic time, where a search of thousands of trials records thousands at a rung."""
        self._values: dict[int, list[float]] = {}
        self._ids: dict[int, list[str]] = {}
        for rung, recorded in self.recorded.items():
            ranked = sorted((e[0], t) for t, e in recorded.items())
            self._values[rung], self._ids[rung] = [v for v, _ in ranked], [t for _, t in ranked]

    def _record(self, rung: int, trial_id: str, entry: tuple[float, float, int]) -> None:
        if trial_id in self.recorded[rung]:
            raise ValueError(f"trial {trial_id} is recorded at rung {rung} already")
        self.recorded[rung][trial_id] = entry
        values = self._values[rung]
        at = bisect.bisect_right(values, entry[0])
        values.insert(at, entry[0])
        self._ids[rung].insert(at, trial_id)

    def _entry(self, trial_id: str, result: dict) -> tuple[float, float, int]:
        tie = result.get(self.tie_metric, math.nan) if self.tie_metric else math.nan
        tie = float(tie) if isinstance(tie, (int, float)) else math.nan
        return float(result[self.metric]), tie, self.arrival.setdefault(trial_id, len(self.arrival))

    def beats(self, a: tuple[float, float, int], b: tuple[float, float, int], by_arrival: bool = True) -> bool:
        """Whether result ``a`` ranks above ``b``: a clearly higher metric; within the tolerance, a
        higher tie score; with that equal (or unknown), the earlier arrival (``by_arrival``; else
        neither ranks above the other)."""
        if abs(a[0] - b[0]) > self.tie_tolerance:
            return a[0] > b[0]
        if not (math.isnan(a[1]) or math.isnan(b[1])) and a[1] != b[1]:
            return a[1] > b[1]
        return by_arrival and a[2] < b[2]

    def _promoted(self, rung: int, trial_id: str, entry: tuple[float, float, int]) -> tuple[bool, str]:
        """ASHA's rule at ``rung`` for a trial not yet recorded there, with ties and the floor: (go on?, why not).

        Ray's cutoff is the (1 - 1/factor) percentile of the earlier results; here each earlier
        result tied with this one (within ``tie_tolerance``) is placed just above or just below it,
        as the tie order says. The rung's values are kept in order (``_index``), so the cutoff reads
        two of them, not all."""
        values, value = self._values[rung], entry[0]
        if self.floor is not None and len(values) < self.reduction_factor and value < self.floor * (1 - self.floor_margin):
            return False, (f"val IoU {value:.4f} is clearly below copy-last-frame ({self.floor:.4f}) and the rung "
                           f"had {len(values)} result(s) to compare with")
        if not values:
            return True, ""
        tolerance, places = self.tie_tolerance, range(len(values))
        low = bisect.bisect_left(places, True, key=lambda i: value - values[i] <= tolerance)  # the tied ones: low..high
        high = bisect.bisect_left(places, True, key=lambda i: values[i] - value > tolerance)
        recorded, ids = self.recorded[rung], self._ids[rung]
        tied = [recorded[t] for t in ids[low:high]]
        above = sum(self.beats(e, entry) for e in tied)
        nudge = max(abs(value), 1.0) * 1e-12
        share = (1 - 1 / self.reduction_factor) * 100
        cutoff = _percentile_of(_Placed(values, low, high, value - nudge, len(tied) - above, value + nudge, above), share)
        if value >= cutoff:
            return True, ""
        if tied and value >= _percentile_of(_Placed(values, low, high, value - nudge, len(tied), value + nudge, 0), share):
            by = f"{self.tie_metric} {entry[1]:.4f}" if self.tie_metric and not math.isnan(entry[1]) else "arrival"
            return False, f"val IoU {value:.4f} ties {len(tied)} earlier trial(s); by {by} it ranks {above + 1} of {len(tied) + 1}"
        return False, f"val IoU {value:.4f} is below the rung's cutoff {cutoff:.4f}"

    def _swapped(self, rung: int, below: int) -> bool:
        """Whether two trials at ``rung`` are ordered one way there and the other way at ``below``
        (by value and tie score: an order by arrival is no evidence)."""
        here, there = self.recorded[rung], self.recorded[below]
        ids = [t for t in here if t in there]
        return any(self.beats(here[a], here[b], False) and self.beats(there[b], there[a], False)
                   for a in ids for b in ids if a != b)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self.time_attr not in result or self.metric not in result:
            return TrialScheduler.CONTINUE
        epoch, value = result[self.time_attr], result[self.metric]
        if not isinstance(value, (int, float)) or math.isnan(value):
            return TrialScheduler.STOP
        if epoch >= self.max_t:
            return TrialScheduler.STOP
        trial_id = trial.trial_id
        entry = self._entry(trial_id, result)
        for index, rung in enumerate(self.rungs):
            if epoch < rung or trial_id in self.recorded[rung]:
                continue
            go_on, why = self._promoted(rung, trial_id, entry)
            self._record(rung, trial_id, entry)
            if not go_on:
                return self._stop(trial, f"stopped at epoch {epoch}: {why}")
            if self.progressive and index == self.top:
                if index > 0 and self._swapped(rung, self.rungs[index - 1]):
                    self.top += 1
                    (log.info if self.narrate else log.debug)("PASHA: the two top rungs (epochs %d and %d) rank trials differently: the budget grows "
                             "to %d epochs", self.rungs[index - 1], rung, self.budget)
                else:
                    return self._stop(trial, f"ran the budget of {rung} epochs (the top rungs agree)", quiet=True)
        return TrialScheduler.CONTINUE

    def _stop(self, trial, why: str, quiet: bool = False) -> str:
        self.decisions[trial.trial_id] = why
        if not quiet and self.narrate:
            path = getattr(trial, "local_path", None)
            log.info("  %s: %s", Path(path).name if path else trial.trial_id, why)
        return TrialScheduler.STOP

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if result and self.time_attr in result and isinstance(result.get(self.metric), (int, float)) \
                and not math.isnan(result[self.metric]):
            entry = self._entry(trial.trial_id, result)
            for rung in self.rungs:
                if result[self.time_attr] >= rung and trial.trial_id not in self.recorded[rung]:
                    self._record(rung, trial.trial_id, entry)

    def debug_string(self) -> str:
        return (f"RungScheduler: rungs {self.rungs}, budget {self.budget} of {self.max_t}, "
                f"{len(self.decisions)} stopped")


class _Placed:
    """A rung's earlier values in order, with its tied ones (``values[low:high]``) replaced by
    ``below_count`` copies of ``below`` and ``above_count`` of ``above``; ``len`` and ``[k]`` read it
    in order without building it."""

    def __init__(self, values: list[float], low: int, high: int, below: float, below_count: int, above: float,
                 above_count: int) -> None:
        self.values, self.low, self.high = values, low, high
        self.below, self.below_count, self.above, self.above_count = below, below_count, above, above_count
        # where each block of copies starts among the rest of the values
        self.below_at = self._rest_under(below)
        self.above_at = self._rest_under(above) + below_count

    def _rest_under(self, x: float) -> int:
        """How many of the values outside ``low:high`` are below ``x``."""
        under = bisect.bisect_left(self.values, x)
        return under - (min(max(under, self.low), self.high) - self.low)

    def __len__(self) -> int:
        return len(self.values) - (self.high - self.low) + self.below_count + self.above_count

    def __getitem__(self, k: int) -> float:
        if self.below_at <= k < self.below_at + self.below_count:
            return self.below
        if self.above_at <= k < self.above_at + self.above_count:
            return self.above
        rest = k - (self.below_count if k >= self.below_at + self.below_count else 0) \
            - (self.above_count if k >= self.above_at + self.above_count else 0)
        return self.values[rest if rest < self.low else rest + self.high - self.low]


def _percentile_of(ordered, q: float) -> float:
    """numpy's linear percentile (as Ray's cutoff uses) of values already in order, reading two of them."""
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class TieBreakingASHA(OpenHyperBand):
    """Ray's asynchronous Hyperband (several brackets), with ties at a rung going to the trial that
    reached the scheduler first: each trial's score is lowered by 1e-9 per place in arrival order,
    for the scheduler only (Ray's promotes every trial equal to its rung's cutoff). The
    ``hyperband`` scheduler. Each trial's bracket is drawn, with Ray's odds, from a generator of its
    own (``seed``), not numpy's global one, so that the draws go on where they were after a resume;
    a trial keeps its bracket for good (Ray forgets it when the trial ends, and draws again when a
    restored search re-adds it)."""

    def __init__(self, *args, seed: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._arrival: dict[str, int] = {}
        self._sign = -1.0 if kwargs.get("mode") == "min" else 1.0
        self._rng = np.random.default_rng(seed)
        self._bracket_of: dict[str, int] = {}  # trial id -> index of its bracket, never forgotten
        self._ended_trial_ids: set[str] = set()

    def on_trial_add(self, tune_controller, trial) -> None:
        if trial.trial_id not in self._bracket_of:
            sizes = np.array(self.bracket_sizes)
            odds = np.e ** (sizes - sizes.max())  # Ray's odds: brackets with more rungs more often
            self._bracket_of[trial.trial_id] = int(self._rng.choice(len(sizes), p=odds / odds.sum()))
        if trial.trial_id not in self._ended_trial_ids:
            self.place(trial.trial_id, self._bracket_of[trial.trial_id])

    def _broken(self, trial, result: dict | None) -> dict | None:
        value = (result or {}).get(self.metric)
        if not isinstance(value, (int, float)) or value != value:
            return result
        place = self._arrival.setdefault(trial.trial_id, len(self._arrival))
        return {**result, self.metric: value - self._sign * 1e-9 * place}

    def on_trial_result(self, tune_controller, trial, result: dict):
        return super().on_trial_result(tune_controller, trial, self._broken(trial, result))

    def on_trial_complete(self, tune_controller, trial, result: dict):
        self._ended_trial_ids.add(trial.trial_id)
        if not self.placed(trial.trial_id):  # a restored trial that had ended already
            return None
        return super().on_trial_complete(tune_controller, trial, self._broken(trial, result))

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._ended_trial_ids.add(trial.trial_id)
        self.forget(trial.trial_id)

    def get_state(self) -> dict[str, Any]:
        """The brackets' rung records, each trial's bracket, arrival order and the generator's state."""
        return {"rungs": self.rung_records(), "bracket_of": dict(self._bracket_of), "ended": sorted(self._ended_trial_ids),
                "arrival": dict(self._arrival), "num_stopped": self.stopped, "rng": self._rng.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> int:
        """Take back ``get_state``'s data; returns how many rung records it holds."""
        self.set_rung_records(state["rungs"])
        self._bracket_of, self._ended_trial_ids = dict(state["bracket_of"]), set(state["ended"])
        self._arrival, self.stopped = dict(state["arrival"]), int(state["num_stopped"])
        self._rng.bit_generator.state = state["rng"]
        for trial_id, index in self._bracket_of.items():
            if trial_id not in self._ended_trial_ids:
                self.place(trial_id, index)
        return sum(len(recorded) for rungs in state["rungs"] for _, recorded in rungs)


class SchedulerState:
    """``scheduler``'s decision state, carried across ``--resume`` (the module's docstring) as the part
    "scheduler" of ``search.run.saved_states.SavedStates``: Ray saves it with every experiment
    checkpoint, and on restore gives it back before it re-adds the trials. FIFO has no state to carry."""

    def __init__(self, scheduler, quiet: bool = False) -> None:
        self.scheduler, self.quiet = scheduler, quiet
        self.restored: int | None = None  # rung records brought back by the last set_state

    def saved_state(self) -> dict[str, Any] | None:
        if not hasattr(self.scheduler, "get_state"):
            return None
        return {"scheduler": type(self.scheduler).__name__, "state": self.scheduler.get_state()}

    def restore_state(self, state: dict[str, Any]) -> None:
        kind = type(self.scheduler).__name__
        if state.get("scheduler") != kind:
            raise ValueError(f"the saved scheduler state is {state.get('scheduler')}'s, not {kind}'s")
        self.restored = self.scheduler.set_state(state["state"])
        (log.debug if self.quiet else log.info)("the scheduler's state is back: %d rung record(s)%s", self.restored,
                 f", budget {self.scheduler.budget} epochs" if getattr(self.scheduler, "progressive", False) else "")
