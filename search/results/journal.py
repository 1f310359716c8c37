"""The search's Optuna study on disk: a journal file in the experiment folder (``optuna.journal``),
which ``search.run.study.StudySearch`` writes, ``--resume`` continues, ``optuna-dashboard`` shows,
and the report reads Optuna's parameter importances from."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

__all__ = ["journal_storage", "load_study", "parameter_importances"]


def journal_storage(path: Path | str):
    """An Optuna journal storage in the file ``path`` (its folder is made)."""
    from optuna.storages.journal import JournalFileBackend

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def load_study(path: Path | str, name: str):
    """The stored study ``name`` of a search (``search.run.state.study_path``)."""
    return optuna.load_study(study_name=name, storage=journal_storage(path))


def parameter_importances(path: Path | str, name: str) -> dict[str, float] | str:
    """Optuna's PED-ANOVA importances (Optuna's own; fANOVA would add scikit-learn) over the stored
    study's finished trials, completed and pruned, each at its best value (as the leaderboard ranks
    them: a demo search completes only a few), for the dimensions all of them have; or why not."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not Path(path).is_file():
        return f"no stored study ({path} does not exist)"
    try:
        stored = load_study(path, name)
    except (KeyError, OSError, ValueError) as err:
        return f"no stored study ({err})"
    finished = [t for t in stored.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
                if t.intermediate_values or t.value is not None]
    if len(finished) < 3:
        return f"needs at least 3 finished trials in the study ({len(finished)} finished)"
    shared = set.intersection(*(set(t.params) for t in finished))
    study = optuna.create_study(direction="maximize")
    for t in finished:
        best = max(t.intermediate_values.values()) if t.intermediate_values else t.value
        study.add_trial(optuna.trial.create_trial(params={k: t.params[k] for k in shared},
                                                  distributions={k: t.distributions[k] for k in shared}, value=best))
    try:
        return optuna.importance.get_param_importances(study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    except (RuntimeError, ValueError) as err:
        return f"not computable: {err}"
