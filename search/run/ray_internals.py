"""The Ray internals the search relies on, in one place, each with why no public API does the job.
``pyproject.toml`` bounds Ray below its next major version, where these may move.
"""

from __future__ import annotations

import copy
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from search.run.optuna_internals import reattach

__all__ = ["OpenOptunaSearch", "run_config", "validate_cluster_config"]


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


def validate_cluster_config(raw: dict[str, Any]) -> dict[str, Any]:
    """A cluster launcher file prepared and validated by Ray's own code (what ``ray up`` runs
    before it starts anything), offline: Ray exposes no public validator. Raises what Ray raises."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config
