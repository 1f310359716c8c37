"""The search's Optuna study on disk: a journal file in the experiment folder (``optuna.journal``),
which ``search.run.study.StudySearch`` writes, ``--resume`` continues, ``optuna-dashboard`` shows,
and the report reads Optuna's parameter importances from."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
from optuna.trial import TrialState

__all__ = ["journal_storage", "load_study", "parameter_importances", "trim_partial_record"]


def journal_storage(path: Path | str):
    """An Optuna journal storage in the file ``path`` (its folder is made)."""
    from optuna.storages.journal import JournalFileBackend

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def trim_partial_record(path: Path | str) -> int:
    """Cut a journal's last record where a full disk cut it short (no line end), so that the next
    record starts a line of its own; Optuna skips such a record when it reads, but would read the
    next one appended to it as one broken line. Returns the bytes cut."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        step, end = 1 << 16, size
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        while end > 0:  # the last line end, read backwards in blocks
            start = max(0, end - step)
            f.seek(start)
            block = f.read(end - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        else:
            keep = 0
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return size - keep


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
