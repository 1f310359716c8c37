"""The search space as data: profiles, their dimensions, and the paper's configurations.

A profile is everything a search needs to know about its scale: the shard resolution, how the
demo data is prepared, the ranges of each dimension, and the search's default budget. ``full`` is
for GPU clusters at the competition's 160x240; ``demo`` fits a 2-core CPU in under 15 minutes;
``smoke`` is the tests' tiny run.

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
from dataclasses import dataclass, field
from typing import Any

from vidseg.errors import InputError
from vidseg.models.simvp import encoder_scale, valid_groups
from vidseg.train.config import INPUT_FRAMES, TrainConfig

__all__ = ["Profile", "PROFILES", "SearchSpace", "enqueue", "ENQUEUED", "valid_groups", "correct_groups", "reference_groups", "paper_configs",
           "points_to_evaluate", "SEARCHED", "INPUT_FRAMES", "fit_to_shards", "narrowed", "limits_of", "Dim", "SPACE",
           "with_choices", "complete", "top_team_config", "TOP_TEAM", "reference_name"]


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
    Dim("translator", ("incep", "gsta")),
    Dim("groups", (1, 2, 4, 8), when=("translator", ("incep",))),  # run as the largest valid divisor below
    Dim("last_frame_skip", (False, True)),
    Dim("loss", ("mse", "ce", "weighted_ce")),
    Dim("last_frame_weight", bounds=(1.0, 16.0), log=True, when=("loss", ("weighted_ce",))),
    Dim("iou_loss_weight", (0.0, 1.0, 4.0), when=("loss", ("ce", "weighted_ce"))),  # soft Jaccard; 0: off
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
)
SEARCHED = tuple(dim.name for dim in SPACE)


def with_choices(space: tuple[Dim, ...], **values: tuple) -> tuple[Dim, ...]:
    """``space`` with some dimensions' choices (or a float's bounds) replaced."""
    unknown = sorted(set(values) - {dim.name for dim in space})
    if unknown:
        raise ValueError(f"no dimension {', '.join(unknown)} in the space")
    return tuple(dim.narrowed(values[dim.name]) if dim.name in values else dim for dim in space)


@dataclass(frozen=True)
class Profile:
    """One scale of search: the shards' resolution, how demo data is prepared, the space (a table
    of ``Dim``) and the search's default budget. Profiles other than ``full`` are made from it with
    ``dataclasses.replace`` and ``with_choices``."""

    name: str
    description: str
    resolution: tuple[int, int]  # the shards' H x W
    # demo data preparation (ignored when --data or --shards is given)
    counts: dict[str, int]
    unet_size: tuple[int, int]
    unet_width: int
    unet_epochs: int
    unet_frame_stride: int
    space: tuple[Dim, ...]
    # the search's defaults
    num_samples: int
    max_epochs: int
    grace_period: int
    reduction_factor: int
    max_concurrent: int
    cpus_per_trial: float
    scheduler: str = "asha"  # search.tuner.make_scheduler's kinds
    # the UNet's training windows (UNetConfig.crop, .foreground_crops); None: the paper's whole frames
    unet_crop: tuple[int, int] | None = None
    unet_foreground_crops: float = 0.0
    unet_lr: float = 2e-3
    # demo data: segment with the shipped UNet (vidseg.segment.pretrained) unless --train-unet
    unet_shipped: bool = False
    fixed: dict[str, Any] = field(default_factory=dict)  # TrainConfig values every trial shares

    def dim(self, name: str) -> Dim:
        return next(dim for dim in self.space if dim.name == name)

    def choices(self, name: str) -> tuple:
        """A dimension's choices, or a float's bounds; () where the space does not search it."""
        return next(((dim.bounds or dim.choices) for dim in self.space if dim.name == name), ())

    def narrowed(self, **values: tuple) -> "Profile":
        return dataclasses.replace(self, space=with_choices(self.space, **values))

    def check(self) -> None:
        """Every combination of the profile's widths must build at its resolution."""
        h, w = self.resolution
        for n_s in self.choices("N_S"):
            scale = encoder_scale(n_s)
            if h % scale or w % scale:
                raise ValueError(f"profile {self.name}: N_S={n_s} needs H and W divisible by {scale}, "
                                 f"but the resolution is {h}x{w}")
        for hid_s in self.choices("hid_S"):
            for hid_t in self.choices("hid_T"):
                if not valid_groups(hid_s, hid_t):
                    raise ValueError(f"profile {self.name}: no group count fits hid_S={hid_s}, hid_T={hid_t}")
        low, high = self.choices("lr")
        if not 0 < low < high:
            raise ValueError(f"profile {self.name}: lr bounds {(low, high)} must be 0 < low < high")
        names = [dim.name for dim in self.space]
        for i, dim in enumerate(self.space):
            if dim.when is not None and dim.when[0] not in names[:i]:
                raise ValueError(f"profile {self.name}: {dim.name} depends on {dim.when[0]}, which is not before it")


def correct_groups(groups: int, hid_S: int, hid_T: int) -> int:
    """The largest valid group count not above ``groups`` (1 always divides)."""
    return max(g for g in valid_groups(hid_S, hid_T, range(1, groups + 1)))


FULL = Profile(
    name="full",
    description="GPU clusters: 160x240 shards, ranges up to the paper's largest model (8/16/64/512)",
    resolution=(160, 240),
    counts={"train": 1000, "val": 100, "unlabeled": 1000, "hidden": 100},
    unet_size=(160, 240), unet_width=64, unet_epochs=30, unet_frame_stride=1,
    unet_crop=(96, 128), unet_foreground_crops=0.5,  # the recipe measured at 160x240 on CPU (docs/performance.md)
    space=SPACE,
    # grace 3 (a tenth of the epochs, the demo's evidence scaled) and factor 3, as the demo's replays
    # chose; no table at this scale yet (the demo's has no late bloomers, which a GPU-scale one may)
    num_samples=64, max_epochs=30, grace_period=3, reduction_factor=3, max_concurrent=8,
    cpus_per_trial=2, fixed={"amp": True, "device": "auto"},  # layout and compile: the device's measured defaults
)
DEMO = dataclasses.replace(
    FULL, name="demo", description="a 2-core CPU in under 15 minutes: 40x60 shards, small models",
    resolution=(40, 60), counts={"train": 240, "val": 48, "unlabeled": 24, "hidden": 12},
    unet_size=(80, 120), unet_width=16, unet_epochs=24, unet_frame_stride=2,
    # 48x64 windows, half on objects: val Jaccard 0.290 in 264 s, against 0.153 in 147 s for 8 epochs
    # of whole frames (and 0.137 in 83 s for 8 epochs of these windows). From the frame cache with
    # on-device augmentation: 0.3235 in 231 s with seed 1 (the old path: 0.3233 in 293 s)
    unet_crop=(48, 64), unet_foreground_crops=0.5, unet_lr=3e-3,
    unet_shipped=True,  # the shipped UNet (vidseg.segment.pretrained); the recipe above is --train-unet's
    # Narrowed to what learns within a 2-core CPU's minutes (the replay table and the session-7 runs,
    # docs/search.md): every trial above copy-last-frame had the last-frame skip, none had an autoregressive
    # rollout (twice the time an epoch), and the soft-Jaccard term took gSTA 2/8/16/32 from 1.21x to
    # 1.27x copy-last-frame (1.29x at weight 4). The reference configurations keep their own settings.
    space=with_choices(SPACE, N_S=(2, 4), N_T=(2, 4, 8), hid_S=(4, 8, 16), hid_T=(32, 64), groups=(1, 2, 4),
                       last_frame_skip=(True,), iou_loss_weight=(1.0, 4.0), rollout=("direct",),
                       embed_dim=(8, 16), lr=(3e-4, 3e-3), batch_size=(4, 8)),
    # The scheduler's settings from 100 replays of 48 configurations of this space run 10 epochs each
    # (python -m search.replay, docs/search.md): ASHA grace 1, factor 3, ties by the soft score, with the
    # floor, reaches within 2% of the table's best in 9% (6-14%) of the full budget's trial-epochs and
    # kept the best in every replay; PASHA gets there as fast but keeps it in half; 16 trials find
    # 0.3179 (0.3153-0.3191) of its 0.3226 (20 would find 0.3191, past the demo's 15 minutes).
    num_samples=16, max_epochs=10, grace_period=1, reduction_factor=3, max_concurrent=2, scheduler="asha",
    cpus_per_trial=1, fixed={"device": "cpu"},
)
SMOKE = dataclasses.replace(
    DEMO, name="smoke", description="the tests' tiny run: a few videos, 4 trials of up to 3 epochs, under a minute on a 2-core CPU",
    counts={"train": 4, "val": 2, "unlabeled": 2, "hidden": 2},
    unet_size=(80, 120), unet_width=4, unet_epochs=1, unet_frame_stride=1, unet_crop=None, unet_foreground_crops=0.0,
    unet_lr=2e-3,
    unet_shipped=False,
    # the skip always on, as in the demo: trials start at copy-last-frame, and its ties are decided by the soft score
    space=with_choices(SPACE, N_S=(2,), N_T=(2, 4), hid_S=(4, 8), hid_T=(16, 32), groups=(1, 2), embed_dim=(4, 8),
                       last_frame_skip=(True,), lr=(1e-3, 1e-2), batch_size=(2, 4)),
    num_samples=4, max_epochs=3, grace_period=1, reduction_factor=2, max_concurrent=2,
)
PROFILES: dict[str, Profile] = {p.name: p for p in (FULL, DEMO, SMOKE)}

for _profile in PROFILES.values():
    _profile.check()


def fit_to_shards(profile: Profile, resolution: tuple[int, int], counts: dict[str, int],
                  labeled: tuple[str, ...] = ("train", "val")) -> tuple[Profile, list[str]]:
    """The profile narrowed to what a shard set can run, and one line per value left out.

    ``resolution`` (H, W), ``counts`` (videos per split) and ``labeled`` (the splits with true
    masks) are the shard set's. N_S values whose encoder does not divide H and W, and pseudo-labels
    without an unlabeled split, are left out. Raises ``InputError`` when a split the trials need is
    missing or unlabeled, or nothing valid is left."""
    h, w = resolution
    for split in ("train", "val"):
        if not counts.get(split):
            raise InputError(f"the shard set has no {split} videos: every trial trains on train and reports val IoU")
        if split not in labeled:
            raise InputError(f"the shard set's {split} split has no true masks: every trial trains on train and "
                             "reports val IoU against them")
    notes = []
    all_n_s = profile.choices("N_S")
    n_s = tuple(n for n in all_n_s if h % encoder_scale(n) == 0 and w % encoder_scale(n) == 0)
    if not n_s:
        raise InputError(f"the shards are {h}x{w}, which no N_S of profile {profile.name} can run "
                         f"({', '.join(f'N_S={n} needs H and W divisible by {encoder_scale(n)}' for n in all_n_s)})")
    if n_s != all_n_s:
        notes.append(f"N_S={', '.join(str(n) for n in all_n_s if n not in n_s)} left out of the space: "
                     f"{h}x{w} shards are not divisible by {', '.join(str(encoder_scale(n)) for n in all_n_s if n not in n_s)}")
    pseudo = profile.choices("pseudo_labels")
    if True in pseudo and not counts.get("unlabeled"):
        pseudo = (False,)
        notes.append("pseudo_labels=True left out of the space: the shard set has no unlabeled videos")
    return dataclasses.replace(profile.narrowed(N_S=n_s, pseudo_labels=pseudo), resolution=(h, w)), notes


def narrowed(profile: Profile, limits: dict[str, Any] | None) -> Profile:
    """``profile`` with the values saved by ``limits_of`` (a search's record of its narrowed space)."""
    if not limits:
        return profile
    return dataclasses.replace(profile.narrowed(N_S=tuple(limits["N_S"]), pseudo_labels=tuple(limits["pseudo_labels"])),
                               resolution=tuple(limits["resolution"]))


def limits_of(profile: Profile) -> dict[str, Any]:
    return {"resolution": list(profile.resolution), "N_S": list(profile.choices("N_S")),
            "pseudo_labels": list(profile.choices("pseudo_labels"))}


# The paper's configurations (N_S, N_T, hid_S, hid_T, groups, loss): its Table 1 (MSE) and its final
# CE model, 4_8_64_256_7. With hid_T=256 the Inception branch has 128 channels, which 7 does not
# divide, so the reference code ran groups=1: that is the count enqueued here.
PAPER = (
    ("paper-mse-8_16_64_512_8", 8, 16, 64, 512, 8, "mse"),
    ("paper-mse-8_16_64_256_8", 8, 16, 64, 256, 8, "mse"),
    ("paper-mse-4_8_64_256_4", 4, 8, 64, 256, 4, "mse"),
    ("paper-mse-4_8_16_64_4", 4, 8, 16, 64, 4, "mse"),
    ("paper-mse-2_4_4_32_1", 2, 4, 4, 32, 1, "mse"),
    ("paper-ce-4_8_64_256_1", 4, 8, 64, 256, 7, "ce"),
)


def reference_groups(groups: int, hid_S: int, hid_T: int) -> int:
    """The group count A4Bio/SimVP's code actually ran: its GroupConv2d fell back to 1 where the
    count did not divide its input channels."""
    return groups if groups in valid_groups(hid_S, hid_T, (groups,)) else 1


def paper_configs() -> dict[str, dict[str, Any]]:
    """The paper's six configurations, as search points, groups corrected to what actually ran: every
    dimension they set, so that none is sampled (one-hot inputs, no stem, 11 frames at once)."""
    out = {}
    for name, n_s, n_t, hid_s, hid_t, groups, loss in PAPER:
        out[name] = {"N_S": n_s, "N_T": n_t, "hid_S": hid_s, "hid_T": hid_t, "translator": "incep",
                     "groups": reference_groups(groups, hid_s, hid_t), "loss": loss,
                     "train_inputs": "true", "pseudo_labels": False, "last_frame_skip": False, "stem_stride": 1,
                     "rollout": "direct", **({} if loss == "mse" else {"input_encoding": "onehot", "iou_loss_weight": 0.0})}
    return out


TOP_TEAM = "top-team-maskpredformer"


def top_team_config(profile: Profile) -> dict[str, Any]:
    """The best teams' recipe (maskpredformer, 2nd of 38; tanmayy24's fine-tune) in this profile's
    terms: gSTA on a learned embedding of the masks, behind a stride-2 stem; CE; one frame at a
    time, rolled out autoregressively, trained with scheduled sampling (exponential); pseudo-labels
    of the unlabeled videos where the shard set has them; at the profile's largest widths (their N_S
    4, N_T 8, 64/512 in full)."""
    def pick(name: str, wanted: Any) -> Any:
        choices = profile.choices(name)
        return wanted if wanted in choices else max(choices)
    return {"N_S": pick("N_S", 4), "N_T": pick("N_T", 8), "hid_S": max(profile.choices("hid_S")),
            "hid_T": max(profile.choices("hid_T")), "translator": "gsta", "groups": 1, "last_frame_skip": False,
            "loss": "ce", "iou_loss_weight": 0.0, "input_encoding": "embed", "embed_dim": max(profile.choices("embed_dim")),
            "stem_stride": 2, "rollout": "autoregressive", "sampling": "exponential", "train_inputs": "true",
            "pseudo_labels": True in profile.choices("pseudo_labels")}  # False where the shards have none


def reference_name(config: dict[str, Any], references: dict[str, dict[str, Any]]) -> str:
    """The name of the reference configuration (the paper's, the top teams') that ``config`` is."""
    for name, point in references.items():
        if all(config.get(k) == v for k, v in point.items() if k not in ("lr", "batch_size")):
            return name
    return ""


SCALE = ("N_S", "N_T", "hid_S", "hid_T")


def _within(profile: Profile, point: dict[str, Any]) -> bool:
    """A reference configuration runs where the profile's scale holds it; its other settings are its
    own, even where the profile narrows them (the demo fixes the last-frame skip, which the paper
    did not have)."""
    return all(dim.holds(point[dim.name]) for dim in profile.space if dim.name in point and dim.name in SCALE)


def points_to_evaluate(profile: Profile) -> dict[str, dict[str, Any]]:
    """The reference configurations that lie in this profile's space, run first in every search:
    the paper's, then the top teams' recipe (``top_team_config``).

    Learning rate and batch size, which neither gives here, are the profile's middle values.
    """
    middle = {name: profile.dim(name).middle() for name in ("lr", "batch_size")}
    points = {**paper_configs(), TOP_TEAM: top_team_config(profile)}
    return {name: {**p, **middle} for name, p in points.items() if _within(profile, p)}


def complete(config: dict[str, Any]) -> dict[str, Any]:
    """A sampled config made valid: a group count the chosen widths cannot use runs as the largest
    valid one below it, and gSTA (no group convolutions) runs one group."""
    if "groups" in config:
        config["groups"] = correct_groups(config["groups"], config["hid_S"], config["hid_T"])
    elif config.get("translator") == "gsta":
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
