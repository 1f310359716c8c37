"""The search space as data: its dimensions (``dimensions``), the profiles that scale it
(``profiles``), and the reference configurations every search runs first (``references``).

The names below are the package's API; each lives in the module named beside it.
"""

from search.space.dimensions import (ENQUEUED, SEARCHED, SPACE, Dim, SearchSpace, complete, correct_groups, enqueue,
                                     train_config, with_choices)
from search.space.profiles import CURVES, DEMO, FULL, PROFILES, SMOKE, Profile, fit_to_shards, limits_of, narrowed
from search.space.references import (PAPER, TOP_TEAM, paper_configs, points_to_evaluate, reference_groups,
                                     reference_name, top_team_config)

__all__ = ["Dim", "SPACE", "SEARCHED", "with_choices", "correct_groups", "complete", "SearchSpace", "ENQUEUED",
           "enqueue", "train_config", "CURVES", "Profile", "FULL", "DEMO", "SMOKE", "PROFILES", "fit_to_shards", "narrowed",
           "limits_of", "PAPER", "paper_configs", "reference_groups", "TOP_TEAM", "top_team_config", "reference_name",
           "points_to_evaluate"]
