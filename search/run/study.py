"""The search's Optuna study: stored with the experiment, and told what really happened.

Ray's ``OptunaSearch`` tells Optuna that a trial ASHA stopped is COMPLETE, valued at the rung it
stopped on, so TPE weighs a 2-epoch score as a final one. ``StudySearch`` tells it instead:

- every epoch's ``val_iou`` as an intermediate value, at step ``epoch``;
- a trial stopped before ``max_epochs`` (by ASHA or Hyperband) as PRUNED, with those values;
- a trial that ran its ``max_epochs`` as COMPLETE, valued at its best ``val_iou`` (the
  leaderboard's best, not the last epoch's);
- an errored, diverged or infeasible trial as FAIL, with the reason in its user attributes.

Each Optuna trial carries its Ray trial id (user attribute ``ray_trial_id``) and who proposed it
(``proposed_by``: ``reference``, ``random`` or ``tpe``, TPE past its start-up).

The study lives in an Optuna journal file (``optuna.journal`` in the experiment folder), named
after the experiment: ``search.results.journal.load_study(PATH, NAME)`` and
``optuna-dashboard PATH`` read it, and ``--resume`` continues it.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import ConcurrencyLimiter

from search.results.journal import journal_storage
from search.run.ray_internals import OpenOptunaSearch
from search.run.proposals import startup_trials
from search.run.stops import no_space, note_disk_full
from search.space import enqueue
from search.results.outcome import Outcome, classify

__all__ = ["StudySearch", "RetryingLimiter", "make_sampler", "startup_trials", "TPE_SETTINGS", "PROPOSED_BY"]

log = logging.getLogger("vidseg.search")

# A multivariate TPE that models the dimensions jointly, grouped by which dimensions a trial has
# (our space is conditional: groups only for Inception, embed_dim only with embed, ...), without
# the constant liar: on the public tabular benchmarks (tests/bench/bench_searchers.py, docs/search.md)
# the liar, which counts running trials as bad ones, found worse configurations at 2 and 8 workers.
TPE_SETTINGS = {"multivariate": True, "group": True, "constant_liar": False}


def make_sampler(searcher: str, seed: int, num_samples: int, max_concurrent: int = 1,
                 tpe_settings: dict[str, bool] | None = None):
    """Optuna's sampler, with every setting explicit: random, or TPE."""
    if searcher == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():  # multivariate and group are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials(num_samples, max_concurrent),
                                          **(TPE_SETTINGS if tpe_settings is None else tpe_settings))


PROPOSED_BY = "proposed_by"  # a trial's user attribute: reference, random or tpe

_STORAGE_ERRORS = (RuntimeError, ValueError, KeyError, optuna.exceptions.UpdateFinishedTrialError)

STUDY_FILE_ENV = "VIDSEG_STUDY_FILE"  # where a restored searcher's study is now (the driver sets it)


class StudySearch(OpenOptunaSearch):
    """Ray's ``OptunaSearch`` (opened up by ``search.run.ray_internals``) that tells the study the truth (the module's docstring); ``kwargs`` go to
    ``OptunaSearch`` (space, sampler, storage, study_name, points_to_evaluate). A failing write to
    the study is logged and never ends the search."""

    def __init__(self, *, max_epochs: int, references: list[dict[str, Any]] | None = None, references_after: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(metric="val_iou", mode="max", **kwargs)
        self._max_epochs = max_epochs
        self._best: dict[str, float] = {}
        self._told: dict[str, set[int]] = {}  # the epochs reported to the study, per trial
        # the reference configurations, enqueued once ``references_after`` trials were proposed: run
        # first, they would meet ASHA's rungs empty and be promoted whatever their score
        self._references, self._references_after, self._suggested = list(references or []), references_after, 0

    def suggest(self, trial_id: str):
        try:
            if self._references and self._suggested >= self._references_after and self.optuna_study is not None:
                for point in self._references:
                    enqueue(self.optuna_study, point)
                self._references = []
            config = super().suggest(trial_id)
        except OSError as err:
            if no_space(err) is None:
                raise
            self._disk_full(err)
            return None  # no trial now: the driver stops the search (search.run.stops)
        if isinstance(config, dict):
            self._suggested += 1
        if trial_id in self.optuna_trials:
            by = self._proposed_by(self.optuna_trials[trial_id])
            self._write(trial_id, lambda t: (t.set_user_attr("ray_trial_id", trial_id), t.set_user_attr(PROPOSED_BY, by)))
        return config

    def _proposed_by(self, trial: optuna.Trial) -> str:
        """Who proposed the trial just asked: ``reference`` (an enqueued configuration), ``tpe`` (TPE past
        its start-up: as many COMPLETE or PRUNED trials as that), else ``random``."""
        from search.run.optuna_internals import startup_of

        trials = self.optuna_study.get_trials(deepcopy=False)
        if "fixed_params" in trials[trial.number].system_attrs:
            return "reference"
        startup = startup_of(self.optuna_study.sampler)
        finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        return "tpe" if startup is not None and finished >= startup else "random"

    def _disk_full(self, err: OSError) -> None:
        where = os.environ.get(STUDY_FILE_ENV) or "the Optuna journal"
        log.error("study: no space left to write %s", where)
        note_disk_full(where, err)

    def _write(self, trial_id: str, write) -> None:
        try:
            write(self.optuna_trials[trial_id])
        except _STORAGE_ERRORS as err:  # e.g. a trial the study finished before a restore
            log.warning("study: trial %s: %s", trial_id, err)
        except OSError as err:
            if no_space(err) is None:
                raise
            self._disk_full(err)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Every epoch's val_iou, as an intermediate value at step ``epoch``. Tune calls this for
        every result but the one its scheduler stops the trial on: ``on_trial_complete`` has that."""
        value, epoch = result.get("val_iou"), result.get("epoch")
        if trial_id in self.ended_trial_ids and trial_id in self.optuna_trials and value is not None:
            self._retried(trial_id)  # an errored trial that --retry-errored runs again
        if trial_id in self.ended_trial_ids or trial_id not in self.optuna_trials or value is None or epoch is None:
            return
        if math.isnan(value) or int(epoch) in self._told.setdefault(trial_id, set()):  # a diverged epoch: FAIL
            return
        self._best[trial_id] = max(self._best.get(trial_id, -math.inf), float(value))
        self._told[trial_id].add(int(epoch))
        self._write(trial_id, lambda t: t.report(float(value), int(epoch)))

    def _retried(self, trial_id: str) -> None:
        """Results of a trial the study holds as failed with an error: Ray retries it from its
        checkpoint (``--retry-errored``), so the study gets a new trial with the same params."""
        try:
            old = _stored(self.optuna_study, self.optuna_trials[trial_id])
            if old.state != TrialState.FAIL or old.user_attrs.get("outcome") != "ERROR":
                return
            enqueue(self.optuna_study, old.params)
            new = self.optuna_study.ask()
            self.ask_in_space(new)
            new.set_user_attr("ray_trial_id", trial_id)
            new.set_user_attr("retry_of", old.number)
            for epoch, value in sorted(old.intermediate_values.items()):
                new.report(value, epoch)
        except _STORAGE_ERRORS as err:
            log.warning("study: trial %s: its retry is not recorded: %s", trial_id, err)
            return
        self.optuna_trials[trial_id] = new
        self._told[trial_id] = set(old.intermediate_values)
        self._best[trial_id] = max(old.intermediate_values.values(), default=-math.inf)
        self.ended_trial_ids.discard(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.ended_trial_ids or trial_id not in self.optuna_trials:
            return
        result = result or {}
        if not error:
            self.on_trial_result(trial_id, result)  # the result the scheduler stopped it on
        best = self._best.pop(trial_id, None)
        self._told.pop(trial_id, None)
        outcome = classify(result, self._max_epochs, bool(error))  # search.results.outcome: as the leaderboard's
        if outcome.failed or best is None:
            reason = str(result.get("reason", ""))[:300]

            def attrs(t):
                t.set_user_attr("outcome", outcome.name if outcome.failed else "NO_RESULT")
                if reason:
                    t.set_user_attr("reason", reason)
            self._write(trial_id, attrs)
            state, value = TrialState.FAIL, None
        elif outcome is Outcome.STOPPED_EARLY:  # stopped early by the scheduler
            state, value = TrialState.PRUNED, None
        else:
            state, value = TrialState.COMPLETE, best
        self._write(trial_id, lambda t: self.optuna_study.tell(t, value, state=state))
        self.ended_trial_ids.add(trial_id)

    def restore(self, checkpoint_path: str) -> None:
        """Ray's restore, then: the study reopened where the driver says it is now (a results
        folder that moved), and trials the study still holds as running but this searcher never
        saved (asked after its last snapshot) told as failed, so that no sampler counts them as
        running (TPE's constant liar, where it is set, would keep them as bad trials)."""
        super().restore(checkpoint_path)
        moved = os.environ.get(STUDY_FILE_ENV)
        if moved:
            self.reopen(journal_storage(moved))
        known = {t.number for t in self.optuna_trials.values()}
        for frozen in self.optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen.number not in known:
                try:
                    self.optuna_study.tell(frozen.number, state=TrialState.FAIL)
                except _STORAGE_ERRORS as err:
                    log.warning("study: trial %d: %s", frozen.number, err)


def _stored(study: optuna.Study, trial: optuna.Trial) -> optuna.trial.FrozenTrial:
    """What the study holds of ``trial`` now (KeyError where it holds none)."""
    for stored in study.get_trials(deepcopy=False):
        if stored.number == trial.number:
            return stored
    raise KeyError(f"no trial {trial.number} in study {study.study_name}")


class RetryingLimiter(ConcurrencyLimiter):
    """Ray's ``ConcurrencyLimiter``, which also lets an errored trial that ``--retry-errored`` runs
    again back in: Ray restores that trial rather than asking for it, and the plain limiter, which
    dropped it when it errored, would never pass on its end, so the study kept its retry RUNNING."""

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self.live_trials and not self.batch:
            self.live_trials.add(trial_id)  # running again: it counts against the limit, and its end is passed on
        super().on_trial_result(trial_id, result)
