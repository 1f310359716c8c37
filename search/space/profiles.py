"""Profiles: the scales a search runs at, and how a profile narrows to what a shard set can run.

A profile is everything a search needs to know about its scale: the shard resolution, how the
demo data is prepared, the ranges of each dimension, and the search's default budget. ``full`` is
for GPU clusters at the competition's frame size; ``demo`` fits a 2-core CPU in under 15 minutes;
``smoke`` is the tests' tiny run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.space.dimensions import SPACE, Dim, with_choices
from vidseg.errors import InputError
from vidseg.models.simvp import encoder_scale, valid_groups
from vidseg.task import FRAME_SIZE

__all__ = ["Profile", "FULL", "DEMO", "SMOKE", "PROFILES", "fit_to_shards", "narrowed", "limits_of"]


# the learning curves that ship with a profile: NAME.parquet, a --scheduler fifo search's curves.parquet
CURVES = Path(__file__).resolve().parent / "curves"


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
    scheduler: str = "asha"  # search.run.tuner.make_scheduler's kinds
    # the UNet's training windows (UNetConfig.crop, .foreground_crops); None: the paper's whole frames
    unet_crop: tuple[int, int] | None = None
    unet_foreground_crops: float = 0.0
    unet_lr: float = 2e-3
    # demo data: segment with the shipped UNet (vidseg.segment.pretrained) unless --train-unet
    unet_shipped: bool = False
    fixed: dict[str, Any] = field(default_factory=dict)  # TrainConfig values every trial shares
    estimate_draws: int = 32  # configurations drawn from the space for the cost estimate (search.tools.estimate)
    # the wall time the whole run should fit on the machine at hand, from the command's start to its
    # results (None: no target). A new search given neither --num-samples nor --budget whose estimate
    # says it would end later runs with the device-time budget that ends it in time, and says so
    # (search.tools.costing.fit_the_machine): the demo on a CPU without bf16, or a slower machine
    run_target_s: float | None = None

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


FULL = Profile(
    name="full",
    description="GPU clusters: shards at the competition's frame size, ranges up to the paper's largest model (8/16/64/512)",
    resolution=FRAME_SIZE,
    counts={"train": 1000, "val": 100, "unlabeled": 1000, "hidden": 100},
    unet_size=FRAME_SIZE, unet_width=64, unet_epochs=30, unet_frame_stride=1,
    unet_crop=(96, 128), unet_foreground_crops=0.5,  # the recipe measured at the full frame size on CPU (docs/performance.md)
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
    # on-device augmentation: 0.3235 in 231 s with seed 1 (decoding the frames every epoch: 0.3233 in 293 s)
    unet_crop=(48, 64), unet_foreground_crops=0.5, unet_lr=3e-3,
    unet_shipped=True,  # the shipped UNet (vidseg.segment.pretrained); the recipe above is --train-unet's
    # Narrowed to what learns within a 2-core CPU's minutes (the replay table and the demo's
    # recorded runs, docs/search.md): every trial above copy-last-frame had the last-frame skip, none had an autoregressive
    # rollout (twice the time an epoch), and the soft-Jaccard term took gSTA 2/8/16/32 from 1.21x to
    # 1.27x copy-last-frame (1.29x at weight 4). The reference configurations keep their own settings.
    # Translators and decodings from their equal-budget table (tests/bench/bench_translators.py,
    # docs/performance.md: the demo's best recipe, 5 CPU minutes, 3 seeds): TAU 0.3211 and gSTA 0.3184
    # lead, IncepU 0.3096, ConvNeXt 0.3107 and ConvMixer 0.2656 trail, so TAU takes IncepU's place (the
    # paper's references keep theirs); known decoding gained 0.0002 at most and the region repair
    # -0.0033 to +0.0073 per arm (within the seeds' spread), so plain; no divergence term (it was
    # not in this table).
    space=with_choices(SPACE, N_S=(2, 4), N_T=(2, 4, 8), hid_S=(4, 8, 16), hid_T=(32, 64), groups=(1, 2, 4),
                       last_frame_skip=(True,), iou_loss_weight=(1.0, 4.0), rollout=("direct",),
                       embed_dim=(8, 16), lr=(3e-4, 3e-3), batch_size=(4, 8), translator=("gsta", "tau"),
                       divergence_weight=(0.0,), decode=("plain",)),
    # The scheduler's settings from 100 replays of 48 configurations of this space run 10 epochs each
    # (python -m search.replay, docs/search.md): ASHA grace 1, factor 3, ties by the soft score, with the
    # floor, reaches within 2% of the table's best in 9% (6-14%) of the full budget's trial-epochs and
    # kept the best in every replay; PASHA gets there as fast but keeps it in half; 16 trials find
    # 0.3179 (0.3153-0.3191) of its 0.3226 (20 would find 0.3191, past the demo's 15 minutes).
    num_samples=16, max_epochs=10, grace_period=1, reduction_factor=3, max_concurrent=2, scheduler="asha",
    cpus_per_trial=1, fixed={"device": "cpu"},
    # 15 minutes from a fresh clone, the install's 1.5-2 included, with room for the epochs in flight when
    # a budget ends the search; 20 draws to probe, not 32: 10-15 s less of estimate (docs/performance.md)
    run_target_s=720.0, estimate_draws=20,
)
SMOKE = dataclasses.replace(
    DEMO, name="smoke", description="the tests' tiny run: a few videos, 4 trials of up to 3 epochs, under a minute on a 2-core CPU",
    counts={"train": 4, "val": 2, "unlabeled": 2, "hidden": 2},
    unet_size=(80, 120), unet_width=4, unet_epochs=1, unet_frame_stride=1, unet_crop=None, unet_foreground_crops=0.0,
    unet_lr=2e-3,
    unet_shipped=False,
    # the skip always on, as in the demo: trials start at copy-last-frame, and its ties are decided by the soft score
    space=with_choices(SPACE, N_S=(2,), N_T=(2, 4), hid_S=(4, 8), hid_T=(16, 32), groups=(1, 2), embed_dim=(4, 8),
                       last_frame_skip=(True,), lr=(1e-3, 1e-2), batch_size=(2, 4), translator=("incep", "gsta"),
                       divergence_weight=(0.0,), decode=("plain",)),
    num_samples=4, max_epochs=3, grace_period=1, reduction_factor=2, max_concurrent=2,
    estimate_draws=8,  # the tests' searches: a second of estimate, not five
    run_target_s=None,
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


