"""The Ray internals the search relies on, in one place, each with why no public API does the job.
``pyproject.toml`` bounds Ray below its next major version, where these may move.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import pickletools
import re
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from ray.tune.schedulers import AsyncHyperBandScheduler
from ray.tune.search import SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from search.run.optuna_internals import reattach

log = logging.getLogger("vidseg.search")

__all__ = ["OpenOptunaSearch", "OpenHyperBand", "GrowingSearch", "run_config", "tune_config", "validate_cluster_config",
           "joined_trainable", "THREAD_JOIN_S"]


class OpenOptunaSearch(OptunaSearch):
    """Ray's ``OptunaSearch`` with the state it keeps private under public names, for
    ``search.run.study.StudySearch``, which tells the study more than Ray does (intermediate values,
    pruned and failed trials, retries). Ray has no hooks for that, so the subclass needs:

    - ``optuna_study``: the study Ray asks (``_ot_study``), to enqueue references and tell endings;
    - ``optuna_trials``: Ray's trial id to its Optuna trial (``_ot_trials``), to report each epoch;
    - ``ended_trial_ids``: the Ray trial ids Ray has told the study the end of (``_completed_trials``), which
      ``OptunaSearch`` itself consults before telling;
    - ``ask_in_space``: Ray's define-by-run call (``_suggest_from_define_by_run_func`` over
      ``_space``), to ask a retried trial with the search's own space;
    - ``reopen``: the study reloaded from another storage (``_storage``, ``_study_name``,
      ``_sampler``), where a restored search's folder now is.
    """

    @property
    def optuna_study(self) -> optuna.Study | None:
        return self._ot_study

    @property
    def optuna_trials(self) -> dict[str, optuna.Trial]:
        return self._ot_trials

    @property
    def ended_trial_ids(self) -> set[str]:
        return self._completed_trials

    def ask_in_space(self, trial: optuna.Trial) -> None:
        self._suggest_from_define_by_run_func(self._space, trial)

    def reopen(self, storage) -> None:
        self._storage = storage
        self._ot_study = optuna.load_study(study_name=self._study_name, storage=storage, sampler=self._sampler)
        self._ot_trials = {k: reattach(self._ot_study, t) for k, t in self._ot_trials.items()}


class OpenHyperBand(AsyncHyperBandScheduler):
    """Ray's ``AsyncHyperBandScheduler`` with the state it keeps private under public names, for
    ``search.run.schedulers.TieBreakingASHA``, which saves and restores it across ``--resume`` (Ray
    never saves a scheduler: ray-project/ray#30838) and draws brackets from a generator of its own:

    - ``bracket_sizes``: each bracket's number of rungs (``_brackets[i]._rungs``), Ray's odds;
    - ``rung_records`` / ``set_rung_records``: each bracket's rungs, (milestone, trial id -> score);
    - ``place`` / ``forget``: a trial in bracket ``index`` (``_trial_info``), or out of every one;
    - ``placed``: whether Ray holds a bracket for a trial; ``stopped``: its count (``_num_stopped``).
    """

    @property
    def bracket_sizes(self) -> list[int]:
        return [len(b._rungs) for b in self._brackets]

    def rung_records(self) -> list[list[tuple[float, dict[str, float]]]]:
        return [[(milestone, dict(recorded)) for milestone, recorded in b._rungs] for b in self._brackets]

    def set_rung_records(self, records: list[list[tuple[float, dict[str, float]]]]) -> None:
        if [[m for m, _ in b] for b in records] != [[m for m, _ in b._rungs] for b in self._brackets]:
            raise ValueError("saved brackets are not this scheduler's (another max_t, grace period or factor)")
        for bracket, rungs in zip(self._brackets, records):
            bracket._rungs = [(milestone, dict(recorded)) for milestone, recorded in rungs]

    def place(self, trial_id: str, index: int) -> None:
        self._trial_info[trial_id] = self._brackets[index]

    def forget(self, trial_id: str) -> None:
        self._trial_info.pop(trial_id, None)

    def placed(self, trial_id: str) -> bool:
        return trial_id in self._trial_info

    @property
    def stopped(self) -> int:
        return self._num_stopped

    @stopped.setter
    def stopped(self, count: int) -> None:
        self._num_stopped = count


def run_config(tuner):
    """The run config a ``Tuner`` (new or restored) will run with, to change in place. A restored
    Tuner keeps the run config it was started with, and Ray offers no public way to change its
    failure config or callbacks; ``--resume --max-failures`` must apply to every trial."""
    return tuner._local_tuner.get_run_config()


def tune_config(tuner):
    """The tune config a ``Tuner`` (new or restored) will run with. ``Tuner.restore`` hands back the
    scheduler and search algorithm pickled in ``tuner.pkl`` when the search was built, and Ray
    offers no public handle on them: the scheduler's saved state (``SchedulerState``) and a grown
    ``num_samples`` (``GrowingSearch``) must reach those very objects."""
    return tuner._local_tuner._tune_config


class GrowingSearch(SearchGenerator):
    """Ray's ``SearchGenerator`` (what Tune wraps a searcher in), restored as a resumed search needs:

    - **grown**: where ``grow_to`` is set, restoring sets its sample count to that (and unfinishes
      it) after Ray's restore has put back the saved count. Ray keeps the count in
      ``_total_samples`` and ``_finished``, restores both from its saved state, and refuses a
      larger ``num_samples`` on restore by design (ray-project/ray issues 42221, 6227, 30223);
    - **reopened**: a searcher that finished before its sample count (its budget ended it,
      ``search.run.budget``) is asked again, since a resume may have raised the budget;
    - **where it is now**: Ray's restore also puts back the experiment spec it saved, whose storage
      is where the search was started, so a search resumed from a folder that moved would write
      its new trials to the old place (Ray moves only the restored trials, in
      ``TuneController._restore_trials``). Where ``storage`` is set (the storage root the search
      is in now), the spec's storage is moved there, as Ray moves a restored trial's.
    """

    grow_to: int | None = None
    storage: str | None = None

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)
        if self.grow_to is not None and self.grow_to > self._total_samples:
            self._total_samples, self._finished = self.grow_to, False
            self._experiment.spec["num_samples"] = self.grow_to
        if self._counter < self._total_samples:  # finished by its budget: a resume may have raised it
            self._finished = False  # (search.run.budget.BudgetLimiter finishes it again where it has not)
        saved = self._experiment.spec.get("storage") if self._experiment is not None else None
        if self.storage is not None and saved is not None:
            from ray.train._internal.storage import get_fs_and_path

            moved = copy.copy(saved)
            moved.storage_filesystem, moved.storage_fs_path = get_fs_and_path(self.storage, None)
            self._experiment.spec["storage"] = moved


THREAD_JOIN_S = 60.0  # how long a trial's process waits, at the trial's end, for its training thread to end


def joined_trainable(train_function):
    """``train_function`` as Ray Tune's function trainable, whose process does not end while the
    trial's training thread still runs.

    Tune runs a function trainable in a daemon thread (``RunnerThread``). At a trial's end, its
    ``cleanup`` tells the thread to stop without waiting for it (``session.finish(timeout=0)``): the
    thread leaves ``tune.report`` by ``SystemExit`` and unwinds ``fit``, freeing the model, the
    optimiser and the trial's masks. Where the process then exits (the actor is not reused, or the
    search ends), the interpreter finalises while that thread is still inside PyTorch; CPython ends
    a daemon thread that takes the GIL back during finalisation with ``pthread_exit``, whose forced
    unwinding through PyTorch's C++ frames (``THPVariable_dealloc``) aborts the process: SIGABRT,
    "Fatal Python error: Aborted" and a C++ stack on the user's terminal, after a trial that ended
    normally. The class made here joins the thread in ``cleanup`` (Ray has no option for that), so
    the process ends only after the thread has. ``tune.with_resources`` takes the class as it takes
    the function."""
    import threading

    from ray.train._internal.session import get_session
    from ray.tune.trainable.function_trainable import wrap_function

    base = wrap_function(train_function)

    class JoinedTrainable(base):
        def cleanup(self):
            session = get_session()
            thread = getattr(session, "training_thread", None)
            try:
                super().cleanup()
            finally:
                if thread is not None and thread is not threading.current_thread() and thread.is_alive():
                    thread.join(THREAD_JOIN_S)
                    if thread.is_alive():
                        log.warning("trial %s: its training thread did not end within %.0f s of the trial's end",
                                    self.trial_id, THREAD_JOIN_S)

    JoinedTrainable.__name__ = base.__name__
    return JoinedTrainable


def validate_cluster_config(raw: dict[str, Any]) -> dict[str, Any]:
    """A cluster launcher file prepared and validated by Ray's own code (what ``ray up`` runs
    before it starts anything), offline: Ray exposes no public validator. Raises what Ray raises."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


# ----------------------------------------------------------------------------------------------
# Ray Tune's state files, kept whole across a full disk

# The files ``Tuner.restore`` reads, in the experiment folder. Ray writes each in the driver's
# staging folder, then its syncer copies them over the ones in storage in place, in a thread of its
# own (``pyarrow.fs.copy_files``), so a full disk can leave one cut short, and ``Tuner.restore``
# then fails. Their names are Ray's own (``experiment_state-TIME.json``, the searcher's and the
# callbacks' beside it). The space guard's reserve keeps the search's own writes from filling the
# disk, but not another process's: hence a copy, taken only of one whole save that Ray's syncer
# has finished writing to storage, and two of them kept (``keep_tune_state``).
TUNE_STATE = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl", "callback-states-*.pkl",
              "tuner.pkl")
LAST_GOOD = ".vidseg-last-good"  # the newest whole, consistent copy of them
EARLIER = ".vidseg-last-good.1"  # the copy before it
DAMAGED = ".vidseg-damaged"  # the cut-short set, moved aside by a repair


def _whole(path) -> bool:
    """Complete as far as can be told without running it: the experiment state (JSON) parses; the
    others are pickles (``search_gen_state`` too, whatever its name says), read opcode by opcode
    with ``pickletools`` (nothing is executed) to a STOP that ends the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if not data:
        return False
    if path.name.startswith("experiment_state-"):
        try:
            json.loads(data)
        except ValueError:
            return False
        return True
    try:
        *_, (op, _, at) = pickletools.genops(data)
    except Exception:  # noqa: BLE001 - whatever a cut or garbled pickle makes pickletools raise
        return False
    return op.name == "STOP" and at == len(data) - 1


_NAMED = re.compile(rb"/([^/\x00-\x1f]+)/(checkpoint_\d+)")


_CHECKPOINT_HEX = b"checkpoint_".hex().encode()


def named_checkpoints(folder) -> set[str]:
    """The trial checkpoints (``TRIAL/checkpoint_N``, relative to the experiment folder) that the
    newest experiment state in ``folder`` names: what a resume from it restores trials from. They
    are paths inside the pickles Ray embeds in its JSON as hex strings (``CLOUDPICKLE_FALLBACK``; a
    pickled string is its UTF-8 bytes), found in the file's bytes: each JSON string whose hex spells
    ``checkpoint_`` is decoded, and nothing is parsed or unpickled (the JSON of 512 trials is 16 MB)."""
    states = sorted(Path(folder).glob("experiment_state-*.json"))
    if not states:
        return set()
    data = states[-1].read_bytes()
    names: set[str] = set()
    at, done = data.find(_CHECKPOINT_HEX), -1
    while at >= 0:
        begin = data.rfind(b'"', 0, at) + 1  # the string's quote (escaped where Ray's JSON nests a trial's)
        if begin > done:
            ends = [i for i in (data.find(b'"', at), data.find(b"\\", at)) if i >= 0]
            done = min(ends) if ends else len(data)
            hexed = data[begin:done].decode(errors="replace")
            try:
                decoded = bytes.fromhex(hexed)
            except ValueError:  # not a hex string after all
                decoded = b""
            names.update(f"{m.group(1).decode(errors='replace')}/{m.group(2).decode()}" for m in _NAMED.finditer(decoded))
        at = data.find(_CHECKPOINT_HEX, max(at + 1, done))
    return names


def _state_files(folder) -> list[Path]:
    return sorted({p for pattern in TUNE_STATE for p in Path(folder).glob(pattern) if p.is_file()})


def _usable(copy: Path, experiment: Path) -> bool:
    """A copy whose files are all whole, with an experiment state, naming checkpoints that all exist."""
    files = _state_files(copy)
    return (any(f.name.startswith("experiment_state-") for f in files) and all(_whole(f) for f in files)
            and all((experiment / name).is_dir() for name in named_checkpoints(copy)))


def driver_staging(trials) -> Path | None:
    """Ray Tune's driver staging folder, where it writes each save of its state before its syncer
    copies them to storage (``StorageContext.experiment_driver_staging_path``, which Ray keeps on
    each trial and offers no public way to read)."""
    for trial in trials:
        path = getattr(getattr(trial, "storage", None), "experiment_driver_staging_path", None)
        if path:
            return Path(path)
    return None


def keep_tune_state(folder, staging=None) -> bool:
    """Copy Ray Tune's state files of the experiment ``folder`` to ``LAST_GOOD`` (the copy before
    moving to ``EARLIER``) when one changed since the last copy and the set is one whole save that
    Ray's syncer has finished: every file whole, each of them that Ray's driver ``staging`` folder
    holds byte for byte the same there (so the sync of Ray's last save is done: no file of an older
    save among them), and every checkpoint the experiment state names there. The copy is made
    beside them and renamed into place. Returns whether it copied. Raises OSError (a full disk)."""
    folder = Path(folder)
    files = _state_files(folder)
    stamp = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    stamp_file = folder / LAST_GOOD / "stamp.json"
    try:
        if json.loads(stamp_file.read_text()) == stamp:
            return False
    except (OSError, ValueError):
        pass
    if not any(f.name.startswith("experiment_state-") for f in files):
        return False  # nothing to resume from yet
    if staging is not None:
        if not any(Path(staging).glob("experiment_state-*.json")) or unsynced_tune_state(folder, staging):
            return False  # Ray has not saved yet, or its syncer has not finished writing its last save to storage
        # Ray writes each file of a save in its staging folder under a temporary name and renames it
        # into place, so a file here equal to its staging copy byte for byte is whole: only the others
        # (tuner.pkl) are read opcode by opcode, which takes half a second for a 512-trial searcher state
        held = {f.name for f in _state_files(staging)}
        if not all(_whole(f) for f in files if f.name not in held or f.name == "tuner.pkl"):
            return False
    elif not all(_whole(f) for f in files):
        return False  # one of them is being written now
    if not all((folder / name).is_dir() for name in named_checkpoints(folder)):
        return False  # a trial has moved on since (Ray deleted the checkpoint this state names)
    staging_copy = folder / f"{LAST_GOOD}.new"
    shutil.rmtree(staging_copy, ignore_errors=True)
    try:
        staging_copy.mkdir()
        for f in files:
            shutil.copy2(f, staging_copy / f.name)
        (staging_copy / "stamp.json").write_text(json.dumps(stamp))
        if (folder / LAST_GOOD).exists():
            shutil.rmtree(folder / EARLIER, ignore_errors=True)
            os.rename(folder / LAST_GOOD, folder / EARLIER)
        os.rename(staging_copy, folder / LAST_GOOD)
    except OSError:
        shutil.rmtree(staging_copy, ignore_errors=True)
        raise
    return True


def unsynced_tune_state(folder, staging) -> list[str]:
    """The names of Ray Tune's state files in its driver ``staging`` folder that the experiment
    ``folder`` does not hold byte for byte the same: its last save, not (yet) synced to storage."""
    staged = [f for f in _state_files(staging) if f.name != "tuner.pkl"]
    return [f.name for f in staged if not (Path(folder) / f.name).is_file()
            or (Path(folder) / f.name).read_bytes() != f.read_bytes()]


def damaged_tune_state(folder) -> list[str]:
    """The names of Ray Tune's state files in ``folder`` that are cut short (none: all whole)."""
    return [f.name for f in _state_files(folder) if not _whole(f)]


def repair_tune_state(folder) -> list[str]:
    """Where one of Ray Tune's state files in ``folder`` is cut short, put back the newest usable
    copy (``keep_tune_state``: whole, naming checkpoints that all still exist) in place of them
    all, moving the damaged set to ``DAMAGED``, and say so. Returns the damaged files' names (empty
    when all were whole). Raises ``UsageError`` where no copy is usable: the search cannot go on."""
    from search.run.settings import UsageError

    folder = Path(folder)
    damaged = damaged_tune_state(folder)
    if not damaged:
        return []
    copies = [folder / LAST_GOOD, folder / EARLIER]
    usable = next((c for c in copies if c.is_dir() and _usable(c, folder)), None)
    if usable is None:
        raise UsageError(f"{folder}: Ray Tune's state was cut short ({', '.join(damaged)}) and no whole copy of it "
                         "naming checkpoints that still exist was kept, so the search cannot go on: start it again "
                         "with another --name")
    aside = folder / DAMAGED
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir()
    for f in _state_files(folder):
        os.replace(f, aside / f.name)
    for f in usable.iterdir():
        if f.name != "stamp.json":
            shutil.copy2(f, folder / f"{f.name}.tmp")
            os.replace(folder / f"{f.name}.tmp", folder / f.name)
    taken = datetime.fromtimestamp((usable / "stamp.json").stat().st_mtime).strftime("%H:%M:%S")
    log.warning("Ray Tune's state in %s was cut short (%s): the search goes on from the whole copy of it taken at %s "
                "(the damaged files are in %s)", folder, ", ".join(damaged), taken, aside)
    return damaged
