"""The search's Optuna study: stored with the experiment, and told what really happened.

Ray's ``OptunaSearch`` tells Optuna that a trial ASHA stopped is COMPLETE, valued at the rung it
stopped on, so TPE weighs a 2-epoch score as a final one. ``StudySearch`` tells it instead:

- every epoch's ``val_iou`` as an intermediate value, at step ``epoch``;
- a trial stopped before ``max_epochs`` (by ASHA or Hyperband) as PRUNED, with those values;
- a trial that ran its ``max_epochs`` as COMPLETE, valued at its best ``val_iou`` (the
  leaderboard's best, not the last epoch's);
- an errored, diverged or infeasible trial as FAIL, with the reason in its user attributes.

Each Optuna trial carries its Ray trial id (user attribute ``ray_trial_id``).

The study lives in an Optuna journal file (``optuna.journal`` in the experiment folder), named
after the experiment: ``optuna.load_study(study_name=NAME, storage=journal_storage(PATH))`` and
``optuna-dashboard PATH`` read it, and ``--resume`` continues it.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from search.trainable import OUTCOME

__all__ = ["StudySearch", "journal_storage", "load_study", "make_sampler", "startup_trials", "TPE_SETTINGS",
           "parameter_importances"]

log = logging.getLogger("vidseg.search")

# Optuna's documented advice for a conditional space searched in parallel: a multivariate TPE
# that models the dimensions jointly, grouped by which dimensions a trial has (our space is
# conditional: groups only for Inception, embed_dim only with embed, ...), and constant_liar, so
# that trials running at once are not all proposed near the same point.
TPE_SETTINGS = {"multivariate": True, "group": True, "constant_liar": True}


def startup_trials(num_samples: int) -> int:
    """TPE's random start-up trials: Optuna's 10 for big searches, half the budget (at least 3) for small ones."""
    return min(10, max(3, num_samples // 2))


def make_sampler(searcher: str, seed: int, num_samples: int, tpe_settings: dict[str, bool] | None = None):
    """Optuna's sampler, with every setting explicit: random, or TPE."""
    if searcher == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():  # multivariate, group and constant_liar are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials(num_samples),
                                          **(TPE_SETTINGS if tpe_settings is None else tpe_settings))


def journal_storage(path: Path | str):
    """An Optuna journal storage in the file ``path`` (its folder is made)."""
    from optuna.storages.journal import JournalFileBackend

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def load_study(path: Path | str, name: str):
    """The stored study ``name`` of a search (``search.state.study_path``)."""
    return optuna.load_study(study_name=name, storage=journal_storage(path))


class StudySearch(OptunaSearch):
    """``OptunaSearch`` that tells the study the truth (the module's docstring); ``kwargs`` go to
    ``OptunaSearch`` (space, sampler, storage, study_name, points_to_evaluate)."""

    def __init__(self, *, max_epochs: int, **kwargs: Any) -> None:
        super().__init__(metric="val_iou", mode="max", **kwargs)
        self._max_epochs = max_epochs
        self._best: dict[str, float] = {}
        self._told: dict[str, set[int]] = {}  # the epochs reported to the study, per trial

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        if trial_id in self._ot_trials:
            self._ot_trials[trial_id].set_user_attr("ray_trial_id", trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Every epoch's val_iou, as an intermediate value at step ``epoch``. Tune calls this for
        every result but the one its scheduler stops the trial on: ``on_trial_complete`` has that."""
        value, epoch = result.get("val_iou"), result.get("epoch")
        if trial_id in self._completed_trials or trial_id not in self._ot_trials or value is None or epoch is None:
            return
        if math.isnan(value) or int(epoch) in self._told.setdefault(trial_id, set()):  # a diverged epoch: FAIL
            return
        self._best[trial_id] = max(self._best.get(trial_id, -math.inf), float(value))
        self._told[trial_id].add(int(epoch))
        try:
            self._ot_trials[trial_id].report(float(value), int(epoch))
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError) as err:  # e.g. a restored, finished trial
            log.debug("study: %s", err)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        result = result or {}
        if not error:
            self.on_trial_result(trial_id, result)  # the result the scheduler stopped it on
        best = self._best.pop(trial_id, None)
        self._told.pop(trial_id, None)
        outcome = result.get(OUTCOME) or ("ERROR" if error else None)
        if outcome or best is None:
            ot_trial.set_user_attr("outcome", outcome or "NO_RESULT")
            if result.get("reason"):
                ot_trial.set_user_attr("reason", str(result["reason"])[:300])
            state, value = TrialState.FAIL, None
        elif int(result.get("epoch", 0)) < self._max_epochs:  # stopped early by the scheduler
            state, value = TrialState.PRUNED, None
        else:
            state, value = TrialState.COMPLETE, best
        try:
            self._ot_study.tell(ot_trial, value, state=state)
        except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError) as err:
            log.warning("study: trial %s: %s", trial_id, err)
        self._completed_trials.add(trial_id)


def parameter_importances(path: Path | str, name: str) -> dict[str, float] | str:
    """Optuna's PED-ANOVA importances over the stored study's completed trials, for the dimensions
    every one of them has (PED-ANOVA is Optuna's own; fANOVA would add scikit-learn); or why not."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = load_study(path, name)
    except (KeyError, OSError, ValueError) as err:
        return f"no stored study ({err})"
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 3:
        return f"needs at least 3 completed trials in the study ({len(done)} completed)"
    try:
        return optuna.importance.get_param_importances(study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    except (RuntimeError, ValueError) as err:
        return f"not computable: {err}"
