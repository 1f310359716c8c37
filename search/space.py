"""The search space as data: profiles, their dimensions, and the paper's configurations.

A profile is everything a search needs to know about its scale: the shard resolution, how the
demo data is prepared, the ranges of each dimension, and the search's default budget. ``full`` is
for GPU clusters at the competition's 160x240; ``demo`` fits a 2-core CPU in about 15 minutes;
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
from vidseg.train.config import INPUT_FRAMES, TrainConfig

__all__ = ["Profile", "PROFILES", "SearchSpace", "valid_groups", "correct_groups", "reference_groups", "paper_configs",
           "points_to_evaluate", "SEARCHED", "INPUT_FRAMES", "fit_to_shards", "narrowed", "limits_of"]


# The dimensions Optuna searches, in the order they are suggested.
SEARCHED = ("N_S", "N_T", "hid_S", "hid_T", "translator", "groups", "last_frame_skip", "loss", "last_frame_weight", "lr",
            "batch_size", "train_inputs", "unet_input_fraction", "pseudo_labels")


@dataclass(frozen=True)
class Profile:
    """One scale of search. Choices are tuples (categorical); ``*_range`` are (low, high) floats."""

    name: str
    description: str
    resolution: tuple[int, int]  # the shards' H x W
    # demo data preparation (ignored when --data or --shards is given)
    counts: dict[str, int]
    unet_size: tuple[int, int]
    unet_width: int
    unet_epochs: int
    unet_frame_stride: int
    # the space
    N_S: tuple[int, ...]
    N_T: tuple[int, ...]
    hid_S: tuple[int, ...]
    hid_T: tuple[int, ...]
    groups: tuple[int, ...]
    translator: tuple[str, ...]
    last_frame_skip: tuple[bool, ...]
    loss: tuple[str, ...]
    last_frame_weight_range: tuple[float, float]
    lr_range: tuple[float, float]
    batch_size: tuple[int, ...]
    train_inputs: tuple[str, ...]
    pseudo_labels: tuple[bool, ...]
    # the search's defaults
    num_samples: int
    max_epochs: int
    grace_period: int
    reduction_factor: int
    max_concurrent: int
    cpus_per_trial: float
    # the UNet's training windows (UNetConfig.crop, .foreground_crops); None: the paper's whole frames
    unet_crop: tuple[int, int] | None = None
    unet_foreground_crops: float = 0.0
    unet_lr: float = 2e-3
    fixed: dict[str, Any] = field(default_factory=dict)  # TrainConfig values every trial shares

    def check(self) -> None:
        """Every combination of the profile's widths must build at its resolution."""
        h, w = self.resolution
        for n_s in self.N_S:
            scale = 2 ** (n_s // 2)
            if h % scale or w % scale:
                raise ValueError(f"profile {self.name}: N_S={n_s} needs H and W divisible by {scale}, "
                                 f"but the resolution is {h}x{w}")
        for hid_s in self.hid_S:
            for hid_t in self.hid_T:
                if not valid_groups(hid_s, hid_t):
                    raise ValueError(f"profile {self.name}: no group count fits hid_S={hid_s}, hid_T={hid_t}")
        low, high = self.lr_range
        if not 0 < low < high:
            raise ValueError(f"profile {self.name}: lr_range {self.lr_range} must be 0 < low < high")


def valid_groups(hid_S: int, hid_T: int, candidates=(1, 2, 4, 8, 16)) -> list[int]:
    """Group counts the Inception translator accepts: they divide hid_T // 2, hid_T and 11 * hid_S."""
    return [g for g in candidates if (hid_T // 2) % g == 0 and hid_T % g == 0 and (INPUT_FRAMES * hid_S) % g == 0]


def correct_groups(groups: int, hid_S: int, hid_T: int) -> int:
    """The largest valid group count not above ``groups`` (1 always divides)."""
    return max(g for g in valid_groups(hid_S, hid_T, range(1, groups + 1)))


PROFILES: dict[str, Profile] = {
    "full": Profile(
        name="full",
        description="GPU clusters: 160x240 shards, ranges up to the paper's largest model (8/16/64/512)",
        resolution=(160, 240),
        counts={"train": 1000, "val": 100, "unlabeled": 1000, "hidden": 100},
        unet_size=(160, 240), unet_width=64, unet_epochs=30, unet_frame_stride=1,
        unet_crop=(96, 128), unet_foreground_crops=0.5,  # the recipe measured at 160x240 on CPU (README)
        N_S=(2, 4, 8), N_T=(4, 8, 16), hid_S=(4, 8, 16, 32, 64), hid_T=(32, 64, 128, 256, 512),
        groups=(1, 2, 4, 8), translator=("incep", "gsta"), last_frame_skip=(False, True), loss=("mse", "ce", "weighted_ce"),
        last_frame_weight_range=(1.0, 16.0), lr_range=(1e-4, 1e-2), batch_size=(4, 8, 16, 32),
        train_inputs=("true", "unet", "mix"), pseudo_labels=(False, True),
        num_samples=64, max_epochs=30, grace_period=3, reduction_factor=3, max_concurrent=8,
        cpus_per_trial=2, fixed={"amp": True, "device": "auto"},  # layout and compile: the device's measured defaults
    ),
    "demo": Profile(
        name="demo",
        description="a 2-core CPU in about 15 minutes: 40x60 shards, small models",
        resolution=(40, 60),
        counts={"train": 120, "val": 24, "unlabeled": 24, "hidden": 12},
        unet_size=(80, 120), unet_width=16, unet_epochs=24, unet_frame_stride=2,
        # 48x64 windows, half on objects: val Jaccard 0.290 in 264 s, against 0.153 in 147 s for 8 epochs
        # of whole frames (and 0.137 in 83 s for 8 epochs of these windows). From the frame cache with
        # on-device augmentation: 0.3235 in 231 s with seed 1 (the old path: 0.3233 in 293 s)
        unet_crop=(48, 64), unet_foreground_crops=0.5, unet_lr=3e-3,
        N_S=(2, 4), N_T=(2, 4, 8), hid_S=(4, 8, 16), hid_T=(32, 64, 128),
        groups=(1, 2, 4), translator=("incep", "gsta"), last_frame_skip=(False, True), loss=("mse", "ce", "weighted_ce"),
        last_frame_weight_range=(1.0, 16.0), lr_range=(3e-4, 1e-2), batch_size=(4, 8, 16),
        train_inputs=("true", "unet", "mix"), pseudo_labels=(False, True),
        num_samples=10, max_epochs=6, grace_period=2, reduction_factor=2, max_concurrent=2,
        cpus_per_trial=1, fixed={"device": "cpu"},
    ),
    "smoke": Profile(
        name="smoke",
        description="the tests' tiny run: a few videos, 2-3 epochs, about 3 minutes on CPU",
        resolution=(40, 60),
        counts={"train": 4, "val": 2, "unlabeled": 2, "hidden": 2},
        unet_size=(80, 120), unet_width=4, unet_epochs=1, unet_frame_stride=1,
        N_S=(2,), N_T=(2, 4), hid_S=(4, 8), hid_T=(16, 32),
        groups=(1, 2), translator=("incep", "gsta"), last_frame_skip=(False, True), loss=("mse", "ce", "weighted_ce"),
        last_frame_weight_range=(1.0, 16.0), lr_range=(1e-3, 1e-2), batch_size=(2, 4),
        train_inputs=("true", "unet", "mix"), pseudo_labels=(False, True),
        num_samples=4, max_epochs=3, grace_period=1, reduction_factor=2, max_concurrent=2,
        cpus_per_trial=1, fixed={"device": "cpu"},
    ),
}

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
    n_s = tuple(n for n in profile.N_S if h % 2 ** (n // 2) == 0 and w % 2 ** (n // 2) == 0)
    if not n_s:
        raise InputError(f"the shards are {h}x{w}, which no N_S of profile {profile.name} can run "
                         f"({', '.join(f'N_S={n} needs H and W divisible by {2 ** (n // 2)}' for n in profile.N_S)})")
    if n_s != profile.N_S:
        notes.append(f"N_S={', '.join(str(n) for n in profile.N_S if n not in n_s)} left out of the space: "
                     f"{h}x{w} shards are not divisible by {', '.join(str(2 ** (n // 2)) for n in profile.N_S if n not in n_s)}")
    pseudo = profile.pseudo_labels
    if True in pseudo and not counts.get("unlabeled"):
        pseudo = tuple(p for p in pseudo if not p) or (False,)
        notes.append("pseudo_labels=True left out of the space: the shard set has no unlabeled videos")
    return dataclasses.replace(profile, resolution=(h, w), N_S=n_s, pseudo_labels=pseudo), notes


def narrowed(profile: Profile, limits: dict[str, Any] | None) -> Profile:
    """``profile`` with the values saved by ``limits_of`` (a search's record of its narrowed space)."""
    if not limits:
        return profile
    return dataclasses.replace(profile, resolution=tuple(limits["resolution"]), N_S=tuple(limits["N_S"]),
                               pseudo_labels=tuple(limits["pseudo_labels"]))


def limits_of(profile: Profile) -> dict[str, Any]:
    return {"resolution": list(profile.resolution), "N_S": list(profile.N_S), "pseudo_labels": list(profile.pseudo_labels)}


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
    """The paper's six configurations, as search points, groups corrected to what actually ran."""
    out = {}
    for name, n_s, n_t, hid_s, hid_t, groups, loss in PAPER:
        out[name] = {"N_S": n_s, "N_T": n_t, "hid_S": hid_s, "hid_T": hid_t, "translator": "incep",
                     "groups": reference_groups(groups, hid_s, hid_t), "loss": loss,
                     "train_inputs": "true", "pseudo_labels": False, "last_frame_skip": False}
    return out


def _within(profile: Profile, point: dict[str, Any]) -> bool:
    return all(point[k] in getattr(profile, k) for k in ("N_S", "N_T", "hid_S", "hid_T", "groups", "loss"))


def points_to_evaluate(profile: Profile) -> dict[str, dict[str, Any]]:
    """The paper's configurations that lie in this profile's space, run first in every search.

    Learning rate and batch size, which the paper does not give, are the profile's middle values.
    """
    lr = math.sqrt(profile.lr_range[0] * profile.lr_range[1])
    batch = profile.batch_size[len(profile.batch_size) // 2]
    return {name: {**p, "lr": float(f"{lr:.3g}"), "batch_size": batch}
            for name, p in paper_configs().items() if _within(profile, p)}


class SearchSpace:
    """Optuna's define-by-run space for one profile (picklable, so a resumed searcher keeps it)."""

    def __init__(self, profile: Profile, max_epochs: int, seed: int) -> None:
        self.profile, self.max_epochs, self.seed = profile, max_epochs, seed

    def __call__(self, trial) -> dict[str, Any]:
        p = self.profile
        hid_S = trial.suggest_categorical("hid_S", p.hid_S)
        hid_T = trial.suggest_categorical("hid_T", p.hid_T)
        config: dict[str, Any] = {
            "N_S": trial.suggest_categorical("N_S", p.N_S),
            "N_T": trial.suggest_categorical("N_T", p.N_T),
            "hid_S": hid_S,
            "hid_T": hid_T,
            "translator": trial.suggest_categorical("translator", p.translator),
        }
        if config["translator"] == "incep":
            config["groups"] = correct_groups(trial.suggest_categorical("groups", p.groups), hid_S, hid_T)
        else:
            config["groups"] = 1  # gSTA has no group convolutions
        config["last_frame_skip"] = trial.suggest_categorical("last_frame_skip", p.last_frame_skip)
        config["loss"] = trial.suggest_categorical("loss", p.loss)
        if config["loss"] == "weighted_ce":
            config["last_frame_weight"] = trial.suggest_float("last_frame_weight", *p.last_frame_weight_range, log=True)
        config["lr"] = trial.suggest_float("lr", *p.lr_range, log=True)
        config["batch_size"] = trial.suggest_categorical("batch_size", p.batch_size)
        config["train_inputs"] = trial.suggest_categorical("train_inputs", p.train_inputs)
        if config["train_inputs"] == "mix":
            config["unet_input_fraction"] = trial.suggest_float("unet_input_fraction", 0.1, 0.9)
        config["pseudo_labels"] = trial.suggest_categorical("pseudo_labels", p.pseudo_labels)
        return {**p.fixed, **config, "epochs": self.max_epochs, "seed": self.seed}


def train_config(trial_config: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of a trial's config (Optuna's raw suggestions such as a pre-correction
    ``groups`` are overridden by the space's returned values, which Ray merges last)."""
    fields = TrainConfig.__dataclass_fields__
    return TrainConfig.from_dict({k: v for k, v in trial_config.items() if k in fields})
