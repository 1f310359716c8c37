"""The Ray internals the search relies on, in one place, each with why no public API does the job.
``pyproject.toml`` bounds Ray below its next major version, where these may move.
"""

from __future__ import annotations

import copy
from typing import Any

import optuna
from ray.tune.search import SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from search.run.optuna_internals import reattach

__all__ = ["OpenOptunaSearch", "GrowingSearch", "run_config", "tune_config", "validate_cluster_config"]


class OpenOptunaSearch(OptunaSearch):
    """Ray's ``OptunaSearch`` with the state it keeps private under public names, for
    ``search.run.study.StudySearch``, which tells the study more than Ray does (intermediate values,
    pruned and failed trials, retries). Ray has no hooks for that, so the subclass needs:

    - ``optuna_study``: the study Ray asks (``_ot_study``), to enqueue references and tell endings;
    - ``optuna_trials``: Ray's trial id to its Optuna trial (``_ot_trials``), to report each epoch;
    - ``ended``: the Ray trial ids Ray has told the study the end of (``_completed_trials``), which
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
    def ended(self) -> set[str]:
        return self._completed_trials

    def ask_in_space(self, trial: optuna.Trial) -> None:
        self._suggest_from_define_by_run_func(self._space, trial)

    def reopen(self, storage) -> None:
        self._storage = storage
        self._ot_study = optuna.load_study(study_name=self._study_name, storage=storage, sampler=self._sampler)
        self._ot_trials = {k: reattach(self._ot_study, t) for k, t in self._ot_trials.items()}


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
        saved = self._experiment.spec.get("storage") if self._experiment is not None else None
        if self.storage is not None and saved is not None:
            from ray.train._internal.storage import get_fs_and_path

            moved = copy.copy(saved)
            moved.storage_filesystem, moved.storage_fs_path = get_fs_and_path(self.storage, None)
            self._experiment.spec["storage"] = moved


def validate_cluster_config(raw: dict[str, Any]) -> dict[str, Any]:
    """A cluster launcher file prepared and validated by Ray's own code (what ``ray up`` runs
    before it starts anything), offline: Ray exposes no public validator. Raises what Ray raises."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


# ----------------------------------------------------------------------------------------------
# Ray Tune's state files, kept whole across a full disk

# The files ``Tuner.restore`` reads, in the experiment folder. Ray writes each atomically in the
# driver's staging folder, then copies it over the one in storage in place (``pyarrow.fs.copy_files``),
# so a full disk can leave one cut short, and ``Tuner.restore`` then starts from nothing. Their
# names are Ray's own (``experiment_state-TIME.json`` and the searcher's beside it).
TUNE_STATE = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl", "tuner.pkl")
LAST_GOOD = ".vidseg-last-good"  # a whole, consistent copy of them, replaced only by a whole newer one
DAMAGED = ".vidseg-damaged"  # the cut-short set, moved aside by a repair


def _whole(path) -> bool:
    """Complete as far as can be told without running it: the experiment state (JSON) parses; the
    others are pickles (``search_gen_state`` too, whatever its name says), which end with STOP."""
    import json
    from pathlib import Path

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
    return data.endswith(b".")  # pickle's STOP opcode ends every pickle


def _state_files(folder) -> list:
    from pathlib import Path

    return sorted({p for pattern in TUNE_STATE for p in Path(folder).glob(pattern) if p.is_file()})


def keep_tune_state(folder) -> bool:
    """Copy Ray Tune's state files of the experiment ``folder`` to ``LAST_GOOD`` when all are whole and
    one changed since; the copy is made beside it and renamed into place, so the last good copy
    stays whole whatever happens. Returns whether it copied. Raises OSError (a full disk)."""
    import os
    import shutil
    from pathlib import Path

    folder = Path(folder)
    files = _state_files(folder)
    if not any(f.name.startswith("experiment_state-") for f in files) or not all(_whole(f) for f in files):
        return False  # nothing to resume from yet, or Ray is writing one of them now
    good = folder / LAST_GOOD
    stamp = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    stamp_file = good / "stamp.json"
    import json

    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == [list(s) for s in stamp]:
        return False
    staging = folder / f"{LAST_GOOD}.new"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        for f in files:
            shutil.copy2(f, staging / f.name)
        (staging / "stamp.json").write_text(json.dumps(stamp))
        if good.exists():
            old = folder / f"{LAST_GOOD}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.rename(good, old)
            os.rename(staging, good)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, good)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return True


def damaged_tune_state(folder) -> list[str]:
    """The names of Ray Tune's state files in ``folder`` that are cut short (none: all whole)."""
    return [f.name for f in _state_files(folder) if not _whole(f)]


def repair_tune_state(folder) -> list[str]:
    """Where one of Ray Tune's state files in ``folder`` is cut short, put the last good set
    (``keep_tune_state``) back in place of them all, moving the damaged set to ``DAMAGED``. Returns
    the damaged files' names (empty when all were whole, or no good copy exists)."""
    import os
    import shutil
    from pathlib import Path

    folder = Path(folder)
    good = folder / LAST_GOOD
    if not good.is_dir() and (folder / f"{LAST_GOOD}.old").is_dir():
        os.rename(folder / f"{LAST_GOOD}.old", good)  # a rename cut short between its two steps
    damaged = [f.name for f in _state_files(folder) if not _whole(f)]
    if not damaged or not good.is_dir():
        return damaged if not good.is_dir() and damaged else []
    aside = folder / DAMAGED
    aside.mkdir(exist_ok=True)
    for f in _state_files(folder):
        os.replace(f, aside / f.name)
    for f in good.iterdir():
        if f.name != "stamp.json":
            shutil.copy2(f, folder / f"{f.name}.tmp")
            os.replace(folder / f"{f.name}.tmp", folder / f.name)
    return damaged
