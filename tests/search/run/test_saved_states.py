"""The driver's callbacks' states saved by name (search.run.saved_states), through Ray Tune's own
CallbackList and the files it writes, and a folder saved by place rewritten by name."""

from __future__ import annotations

import io
import logging
import pickle
from types import SimpleNamespace

from ray.tune import Callback
from ray.tune.callback import CallbackList
from ray.tune.logger import CSVLoggerCallback

from search.results.progress import ProgressTable
from search.run.saved_states import BY_NAME, OLDER_PLACES, PLACE, SavedStates, name_callback_states
from search.run.schedulers import SchedulerState
from search.run.tuner import make_scheduler


def _scheduler_with_trials(*trial_ids: str):
    scheduler = make_scheduler("asha", 9, 1, 3, floor=0.1)
    for trial_id in trial_ids:
        scheduler.on_trial_add(None, SimpleNamespace(trial_id=trial_id))
    return scheduler


def _progress(done: int = 0, best: float = float("-inf")) -> ProgressTable:
    table = ProgressTable(9, 16, stream=io.StringIO())
    table.trials_done, table.best, table.trial_best = done, best, {"a": best} if done else {}
    return table


def test_states_go_back_by_name_whatever_the_other_callbacks_places(tmp_path):
    scheduler, progress = _scheduler_with_trials("a", "b", "c"), _progress(3, 0.42)
    saving = CallbackList([SavedStates(scheduler=SchedulerState(scheduler), progress=progress), progress,
                           CSVLoggerCallback()])
    saving.save_to_dir(str(tmp_path), "2026-12-08_00-00-00")
    saved = pickle.loads(next(tmp_path.glob("callback-states-*.pkl")).read_bytes())
    assert set(saved[PLACE][BY_NAME]) == {"scheduler", "progress"}
    assert all(not state for place, state in saved.items() if place != PLACE)  # only SavedStates is saved

    scheduler2, progress2 = _scheduler_with_trials(), _progress()
    # the other callbacks added and reordered: nothing else moves
    restoring = CallbackList([SavedStates(progress=progress2, scheduler=SchedulerState(scheduler2)),
                              CSVLoggerCallback(), Callback(), progress2])
    restoring.restore_from_dir(str(tmp_path))
    assert scheduler2.arrival == {"a": 0, "b": 1, "c": 2}
    assert (progress2.trials_done, progress2.best, progress2.trial_best) == (3, 0.42, {"a": 0.42})


def test_a_state_with_no_part_here_is_left_and_said(caplog):
    progress = _progress(2, 0.3)
    states = SavedStates(progress=progress).get_state()
    states[BY_NAME]["gone"] = {"x": 1}
    fresh = _progress()
    with caplog.at_level(logging.WARNING, logger="vidseg.search"):
        SavedStates(progress=fresh).set_state(states)
    assert fresh.trials_done == 2 and "'gone'" in caplog.text
    assert SavedStates(scheduler=SchedulerState(make_scheduler("fifo", 9, 1, 3))).get_state() is None  # FIFO keeps none


class _Placed(Callback):
    """A callback of a folder saved by place: its state at its place in the list."""

    def __init__(self, state) -> None:
        self.state = state

    def get_state(self):
        return self.state


def test_a_folder_saved_by_place_is_rewritten_by_name_then_restored(tmp_path):
    scheduler, progress = _scheduler_with_trials("x", "y"), _progress(2, 0.25)
    older = [Callback()] * 6  # as the version before kept them: the stop path first, states at 1 and 2
    older[1] = _Placed(SchedulerState(scheduler).saved_state())
    older[2] = _Placed(progress.saved_state())
    CallbackList(older).save_to_dir(str(tmp_path), "2026-12-07_00-00-00")
    CallbackList([_Placed({"newer": 1})]).save_to_dir(str(tmp_path), "2026-12-01_00-00-00")  # an older session's file

    assert sorted(OLDER_PLACES.values()) == ["progress", "scheduler"]
    assert name_callback_states(str(tmp_path)) is True
    assert name_callback_states(str(tmp_path)) is False  # by name already: left as it is
    scheduler2, progress2 = _scheduler_with_trials(), _progress()
    CallbackList([SavedStates(scheduler=SchedulerState(scheduler2), progress=progress2), progress2]).restore_from_dir(
        str(tmp_path))
    assert scheduler2.arrival == {"x": 0, "y": 1}
    assert (progress2.trials_done, progress2.best) == (2, 0.25)
    assert pickle.loads((tmp_path / "callback-states-2026-12-01_00-00-00.pkl").read_bytes()) == {0: {"newer": 1}}
    assert not list(tmp_path.glob("*.tmp*"))


def test_no_file_or_nothing_saved_by_place_is_left(tmp_path):
    assert name_callback_states(str(tmp_path)) is False
    CallbackList([Callback(), _Placed({"only": "here"}), Callback()]).save_to_dir(str(tmp_path), "s")
    # place 1 holds a state, so it is named the scheduler's: the rule is the places', not the content's
    assert name_callback_states(str(tmp_path)) is True
    assert pickle.loads((tmp_path / "callback-states-s.pkl").read_bytes()) == {PLACE: {BY_NAME: {"scheduler": {"only": "here"}}}}
    (tmp_path / "callback-states-s.pkl").write_bytes(pickle.dumps({0: None, 1: None}))
    assert name_callback_states(str(tmp_path)) is False
