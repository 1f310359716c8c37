"""The Optuna internals the search relies on, in one place, with why no public API does the job.
``pyproject.toml`` bounds Optuna below its next major version, where this may move.
"""

from __future__ import annotations

import optuna

__all__ = ["reattach", "startup_of"]


def reattach(study: optuna.Study, trial: optuna.Trial) -> optuna.Trial:
    """``trial`` (still running) as a trial of ``study``, a new handle on the same storage, e.g. the
    journal reopened where a restored search's folder now is. A ``Trial`` is bound to one ``Study``
    object, and Optuna gives no public way to get a running trial of another: only ``ask`` (a new
    trial) and ``get_trials`` (frozen copies). Its constructor takes the storage's trial id, which
    Optuna keeps private (``_trial_id``; ``number`` counts within one study)."""
    return optuna.Trial(study, trial._trial_id)


def startup_of(sampler) -> int | None:
    """The trials a ``TPESampler`` proposes at random before it models any (its start-up), or None
    for another sampler. Optuna keeps it private (``_n_startup_trials``); TPE proposes at random
    while fewer trials than that are COMPLETE or PRUNED (without the constant liar, as here)."""
    if not isinstance(sampler, optuna.samplers.TPESampler):
        return None
    return int(sampler._n_startup_trials)
