"""The searched dimensions, declared once as data, and Optuna's define-by-run function over them.

Optuna samples through a define-by-run function (``SearchSpace``), so that conditional dimensions
stay conditional: ``last_frame_weight`` exists only for ``weighted_ce``, ``groups`` only for the
Inception translator, and ``unet_input_fraction`` only for mixed inputs. ``groups`` is suggested
from the profile's choices; where a choice does not divide the chosen widths, the trial runs the
largest valid divisor below it (the reference SimVP silently fell back to 1 instead), and that is
the value the trial's config carries. So every trial runs a valid group count.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vidseg.models.simvp import TRANSLATOR_KINDS, valid_groups
from vidseg.train.config import DECODES, TRANSLATORS, TrainConfig

if TYPE_CHECKING:
    from search.space.profiles import Profile

__all__ = ["Dim", "SPACE", "SEARCHED", "with_choices", "correct_groups", "complete", "SearchSpace", "ENQUEUED",
           "enqueue", "train_config", "GROUPED"]

GROUPED = tuple(name for name, kind in TRANSLATOR_KINDS.items() if kind.grouped)  # the translators with a group count


@dataclass(frozen=True)
class Dim:
    """One searched dimension, declared once: categorical ``choices``, or a float in ``bounds``
    (``log`` scale). It exists only where ``when`` = (an earlier dimension, its values) holds, e.g.
    ``last_frame_weight`` only for ``weighted_ce``. Everything else follows from this table: the
    Optuna define-by-run function, the leaderboard's columns, the report's config text and the
    distributions of the parameter importances."""

    name: str
    choices: tuple = ()
    bounds: tuple[float, float] | None = None
    log: bool = False
    when: tuple[str, tuple] | None = None

    def active(self, config: dict[str, Any]) -> bool:
        return self.when is None or config.get(self.when[0]) in self.when[1]

    def suggest(self, trial) -> Any:
        if self.bounds is not None:
            return trial.suggest_float(self.name, *self.bounds, log=self.log)
        return trial.suggest_categorical(self.name, self.choices)

    def distribution(self):
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        if self.bounds is not None:
            return FloatDistribution(*self.bounds, log=self.log)
        return CategoricalDistribution(list(self.choices))

    def holds(self, value: Any) -> bool:
        if self.bounds is not None:
            return isinstance(value, (int, float)) and self.bounds[0] <= value <= self.bounds[1]
        return value in self.choices

    def middle(self) -> Any:
        """The choice in the middle, or a float range's (geometric, for ``log``) midpoint."""
        if self.bounds is None:
            return self.choices[len(self.choices) // 2]
        low, high = self.bounds
        return float(f"{math.sqrt(low * high) if self.log else (low + high) / 2:.3g}")

    def narrowed(self, values: tuple) -> "Dim":
        """This dimension with other choices (or, for a float, other bounds)."""
        if self.bounds is not None:
            return dataclasses.replace(self, bounds=tuple(values))
        return dataclasses.replace(self, choices=tuple(values))


# The whole space at its widest (the full profile's), in the order Optuna suggests it: a dimension's
# ``when`` names one before it. Adding a dimension is a line here and the TrainConfig field it sets.
SPACE: tuple[Dim, ...] = (
    Dim("N_S", (2, 4, 8)),  # ConvSC blocks in the encoder and decoder
    Dim("N_T", (4, 8, 16)),  # translator blocks
    Dim("hid_S", (4, 8, 16, 32, 64)),
    Dim("hid_T", (32, 64, 128, 256, 512)),
    Dim("translator", TRANSLATORS),  # SimVP's, SimVPv2's, and OpenSTL's front of quality against cost
    Dim("groups", (1, 2, 4, 8), when=("translator", GROUPED)),  # run as the largest valid divisor below
    Dim("last_frame_skip", (False, True)),
    Dim("loss", ("mse", "ce", "weighted_ce")),
    Dim("last_frame_weight", bounds=(1.0, 16.0), log=True, when=("loss", ("weighted_ce",))),
    Dim("iou_loss_weight", (0.0, 1.0, 4.0), when=("loss", ("ce", "weighted_ce"))),  # soft Jaccard; 0: off
    Dim("divergence_weight", (0.0, 0.1)),  # TAU's differential divergence; 0.1: TAU's own
    Dim("input_encoding", ("onehot", "embed"), when=("loss", ("ce", "weighted_ce"))),  # mse feeds class ids
    Dim("embed_dim", (8, 16, 32, 64), when=("input_encoding", ("embed",))),
    Dim("stem_stride", (1, 2)),  # 2: SimVP at half resolution
    Dim("rollout", ("direct", "autoregressive")),
    Dim("sampling", ("none", "linear", "exponential"), when=("rollout", ("autoregressive",))),
    Dim("lr", bounds=(1e-4, 1e-2), log=True),
    Dim("batch_size", (4, 8, 16, 32)),
    Dim("train_inputs", ("true", "unet", "mix")),
    Dim("unet_input_fraction", bounds=(0.1, 0.9), when=("train_inputs", ("mix",))),
    Dim("pseudo_labels", (False, True)),
    Dim("decode", DECODES),  # vidseg.train.decoding: how the target frame is read out
)
SEARCHED = tuple(dim.name for dim in SPACE)


def with_choices(space: tuple[Dim, ...], **values: tuple) -> tuple[Dim, ...]:
    """``space`` with some dimensions' choices (or a float's bounds) replaced."""
    unknown = sorted(set(values) - {dim.name for dim in space})
    if unknown:
        raise ValueError(f"no dimension {', '.join(unknown)} in the space")
    return tuple(dim.narrowed(values[dim.name]) if dim.name in values else dim for dim in space)

def correct_groups(groups: int, hid_S: int, hid_T: int) -> int:
    """The largest valid group count not above ``groups`` (1 always divides)."""
    return max(g for g in valid_groups(hid_S, hid_T, range(1, groups + 1)))


def complete(config: dict[str, Any]) -> dict[str, Any]:
    """A sampled config made valid: a group count the chosen widths cannot use runs as the largest
    valid one below it, and the translators without group convolutions (all but IncepU) run one group."""
    if "groups" in config:
        config["groups"] = correct_groups(config["groups"], config["hid_S"], config["hid_T"])
    elif config.get("translator", "incep") not in GROUPED:
        config["groups"] = 1
    return config


class SearchSpace:
    """Optuna's define-by-run space for one profile, read from its table of dimensions (picklable,
    so a resumed searcher keeps it)."""

    def __init__(self, profile: Profile, max_epochs: int, seed: int) -> None:
        self.profile, self.max_epochs, self.seed = profile, max_epochs, seed

    def __call__(self, trial) -> dict[str, Any]:
        config: dict[str, Any] = {}
        reference = _enqueued(trial)  # a reference configuration keeps its values, in the space or not
        for dim in self.profile.space:
            if dim.active(config):
                if dim.name in reference and not dim.holds(reference[dim.name]):
                    config[dim.name] = reference[dim.name]  # outside this profile's choices: not an Optuna param
                else:
                    config[dim.name] = dim.suggest(trial)
        return {**self.profile.fixed, **complete(config), "epochs": self.max_epochs, "seed": self.seed}


ENQUEUED = "enqueued_params"  # the user attribute that carries an enqueued trial's params


def enqueue(study, params: dict[str, Any]) -> None:
    """Enqueue a configuration (a reference, or a retried trial's params) so that ``SearchSpace``
    keeps its values, in the profile's choices or not (Optuna's public ``user_attrs``)."""
    study.enqueue_trial(params, user_attrs={ENQUEUED: params})


def _enqueued(trial) -> dict[str, Any]:
    """The params an Optuna trial was enqueued with (``enqueue``), or {}."""
    return dict(getattr(trial, "user_attrs", {}).get(ENQUEUED) or {})


def train_config(trial_config: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of a trial's config (Optuna's raw suggestions such as a pre-correction
    ``groups`` are overridden by the space's returned values, which Ray merges last)."""
    fields = TrainConfig.__dataclass_fields__
    return TrainConfig.from_dict({k: v for k, v in trial_config.items() if k in fields})
