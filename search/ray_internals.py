"""The Ray internals the search relies on, in one place, each with why no public API does the job.
``pyproject.toml`` bounds Ray below its next major version, where these may move.

The searcher (``search.study.StudySearch``) subclasses Ray's ``OptunaSearch`` and so works with its
attributes; that subclass is the other place Ray's (and Optuna's) insides are used.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["run_config", "validate_cluster_config"]


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
