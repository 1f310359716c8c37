"""What a search will cost, said before its first trial, in device time (``vidseg.train.cost``).

1. **Configurations**: the reference configurations the search runs first, and the profile's
   ``estimate_draws`` drawn at random from the profile's space by the search's own ``SearchSpace``.
2. **A probe on the device at hand** (``vidseg.train.loop.probe``: a few optimiser steps and one
   validation batch of ``fit``'s own path, on the real shards) of every one of them, as Ray tasks
   with a trial's resources, each in a fresh worker process as a trial's, as many at once as
   trials will run at once (trials that share a machine slow each other). A configuration's epoch
   is its training samples at its seconds per sample, its validation clips at its seconds per
   clip, a checkpoint's save and Ray's report (``REPORT_S``); a trial adds its set-up and its first
   step's warm-up, and each process the trials run in its cold start (the first probe's time
   beyond the same probe again). Seconds per sample are not a function of multiply-adds: a
   class-probability output (the one-hot inputs, the softmax, the CE and soft-Jaccard terms) costs
   a sample far more than multiply-adds say, and so do narrow, deep models, whose time goes to
   memory, not arithmetic, on a CPU. Where the profile is for GPUs and none is here to probe
   (``--estimate-only``), an ``ASSUMED_GPU`` rate of multiply-adds (counted on the ``meta``
   device, ``training_macs``: an autoregressive model trains one step of its rollout, after its
   self-fed steps) stands in, and the estimate says so in one line.
3. **The scheduler's share**: the search's own scheduler (``search.run.tuner.make_scheduler``)
   replayed (``search.tools.replay.replay``, ``REPLAYS`` seeds) over ``num_samples`` trials with
   those epoch times, at the search's concurrency: the device time it lets the trials spend, and
   the wall time until the last trial ends. The trials come in the live search's order of proposals
   (``search.run.proposals``): the reference configurations where it runs them, the sampler's random
   draws as the pool's draws of the same seed (past the pool, its draws at random), and TPE's guided
   proposals as draws at random from the better half of the pool. Each learns as the nearest configuration in the learning
   curves that ship with the profile (``shipped_curves``: a ``--scheduler fifo`` search's table,
   every trial to the end), so that the scheduler stops and promotes what it would; a profile
   without curves gets made-up ones (each trial's quality drawn at random, the pool's draws
   uniform).

Without stopping: every trial runs ``max_epochs``. With ``--budget`` alone (no ``--num-samples``),
the estimate is per trial, and says how many trials the budget affords.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from search.run.settings import Settings, UsageError
from search.space import CURVES, Profile, SearchSpace, enqueue, points_to_evaluate, train_config
from vidseg.task import OUTPUT_FRAMES
from search.results.durations import duration_text
from vidseg.train.counted import Counted

__all__ = ["Estimate", "Probed", "estimate", "check_budget", "configurations", "probe_on_workers", "assumed_probe",
           "epoch_parts", "ASSUMED_GPU"]

log = logging.getLogger("vidseg.search")

REPLAYS, PROBE_STEPS = 40, 4
RANGE = (5, 95)  # the percentiles of the replays that the estimate gives as one search's range (90% of searches)
# how far a trial's epochs land from the probe's figure: its configuration's (a finished demo's epochs against
# its configurations probed again, bench_estimate.py --check-epochs: 6-14% under on a CPU without bf16, 2-31% over
# on the imitation of one) and each epoch's own (3.6-6.3%: the median coefficient of variation of a demo trial's
# epochs after its first); log-normal spreads in the replays, which decide where a budget cuts the epochs in flight
PROBE_SPREAD, EPOCH_SPREAD = 0.15, 0.05
REPORT_S = 0.03  # an epoch's report to Ray Tune, its round trip: 23-48 ms in the smoke search (docs/search.md)
# no GPU here to probe: bf16 training at an effective 100 TFLOP/s (a tenth of an H100's dense peak),
# a training step 3 forward passes' work, a set-up of 10 s
ASSUMED_GPU = {"name": "an H100", "flops": 100e12, "setup_s": 10.0, "checkpoint_s": 0.2}


@dataclass
class Estimate:
    """What a search is expected to cost, in device seconds (share x wall seconds)."""

    trials: int | None  # the trials it runs; None: as many as the budget affords
    concurrency: int
    full_s: float  # every trial to max_epochs
    expected_s: float  # with the scheduler
    wall_s: float  # until the last trial ends, at the concurrency
    trial_s: float  # one trial with the scheduler, on average
    cheapest_epoch_s: float  # the set-up and one epoch of the cheapest configuration
    basis: str  # what was probed, or assumed
    budget_s: float | None = None
    # the spread of the scheduler's replays (TPE proposes from whichever trials end first, so one search
    # may land far from the middle): their RANGE percentiles, device seconds and wall seconds
    expected_range_s: tuple[float, float] | None = None
    wall_range_s: tuple[float, float] | None = None
    # under the budget (the replays kept to it as the live search keeps to it): device and wall seconds
    budgeted_s: float | None = None
    budgeted_range_s: tuple[float, float] | None = None
    budgeted_wall_s: float | None = None
    budgeted_wall_range_s: tuple[float, float] | None = None
    # what was probed, saved with the rest: a search grown on --resume is estimated again for its new size from it
    probed: Probed | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def affordable(self) -> float | None:
        """The trials the budget affords at the expected cost of one."""
        return None if self.budget_s is None else self.budget_s / max(self.trial_s, 1e-9)

    def lines(self) -> list[str]:
        hours = lambda s: f"{s / 3600:.3g} device-hours ({duration_text(s)})"  # noqa: E731
        count = f"{self.trials} trials" if self.trials is not None else "per trial"
        lines = [f"estimate ({self.basis}):"]
        if self.trials is None:
            lines.append(f"  one trial: {hours(self.trial_s)} with the scheduler; the budget of "
                         f"{duration_text(self.budget_s)} affords about {self.affordable:.0f} trials")
        else:
            lines += [f"  {count} without stopping: {hours(self.full_s)}",
                      f"  {count} with the scheduler: {hours(self.expected_s)} expected{_said_range(self.expected_range_s)}",
                      f"  wall time at {self.concurrency} trials at once: {duration_text(self.wall_s)}"
                      f"{_said_range(self.wall_range_s)}"]
            if self.budget_s is not None:
                lines.append(f"  budget {duration_text(self.budget_s)}: "
                             + ("enough for all of them, as expected" if self.expected_s <= self.budget_s else
                                f"about {self.affordable:.0f} of the {self.trials} trials (whichever ends first)"))
        return lines + self.kept_lines()

    def kept_lines(self) -> list[str]:
        """What the search kept to its budget is expected to spend, and how long it runs (none without a budget)."""
        if self.budgeted_s is None or self.budgeted_wall_s is None:
            return []
        return [f"  kept to the budget: {duration_text(self.budgeted_s)} spent{_said_range(self.budgeted_range_s)}",
                f"  kept to the budget, wall time: {duration_text(self.budgeted_wall_s)}"
                f"{_said_range(self.budgeted_wall_range_s)}"]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> Estimate:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: tuple(v) if k.endswith("_range_s") and v is not None else v for k, v in saved.items() if k in known}
        probed = values.get("probed")
        values["probed"] = Probed(list(probed["points"]), float(probed.get("cold_s", 0.0))) if isinstance(probed, dict) \
            and isinstance(probed.get("points"), list) else None
        return cls(**values)


def configurations(profile: Profile, settings: Settings, draws: int | None = None) -> list[dict[str, Any]]:
    """The reference configurations the search runs (in its order), then ``draws`` (the profile's
    ``estimate_draws``) from the space at random, each as the search's ``SearchSpace`` makes it."""
    draws = profile.estimate_draws if draws is None else draws
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=settings.seed))
        references = list(points_to_evaluate(profile).values())
        for point in references:
            enqueue(study, point)
        space = SearchSpace(profile, settings.max_epochs, settings.seed)
        return [space(study.ask()) for _ in range(len(references) + draws)]
    finally:
        optuna.logging.set_verbosity(verbosity)


# what a model's multiply-adds depend on (the rest of a TrainConfig trains it, and costs nothing here)
SHAPE = ("N_S", "N_T", "hid_S", "hid_T", "translator", "groups", "loss", "input_encoding", "embed_dim", "stem_stride",
         "rollout", "last_frame_skip")


def _macs(config: dict[str, Any], resolution: tuple[int, int]) -> float:
    """A configuration's multiply-adds for one clip, counted on the ``meta`` device (a few tenths of
    a second each), once a machine per model shape (``vidseg.train.counted``)."""
    import json

    key = json.dumps([list(resolution), *(config.get(name) for name in SHAPE)])
    return _MACS.get(key, lambda: _count_macs(config, resolution))


def _count_macs(config: dict[str, Any], resolution: tuple[int, int]) -> float:
    import torch

    from vidseg.train.cost import model_macs
    from vidseg.train.model import build_model

    with torch.device("meta"):
        model = build_model(train_config(config), *resolution)
    return float(model_macs(model, *resolution))


_MACS = Counted("macs")


@dataclass
class Probed:
    """What the probes measured: each configuration's figures (``vidseg.train.loop.probe``), and
    what a trial process's first trial costs beyond the others (``cold_s``: imports, torch's
    first use of its kernels and its FLOP counter)."""

    points: list[dict[str, float]]
    cold_s: float = 0.0


def _probe_all(configs: list[dict[str, Any]], shards: str, plans: list[dict[str, Any]] | None = None) -> Probed:
    """Every configuration probed in this (fresh) process, in order (each figure with the process's
    ``pid`` and its GPU share, ``gpus``); then the first again, warm: what the first took beyond it is the process's cold start.
    ``plans``, on GPUs, are each configuration's trial plan (``search.run.trainable.trial_plan``: its
    micro-batches, data on the device, memory cap), applied as the trainable applies them."""
    import dataclasses as fields

    import torch

    from vidseg.data.remote import cached_shards
    from vidseg.train.loop import probe

    import ray

    opened = cached_shards(shards)
    plans = plans if plans is not None and torch.cuda.is_available() else [{}] * len(configs)
    gpus = float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0)) if ray.is_initialized() else 0.0
    points, walls = [], []
    for config, plan in [*zip(configs, plans), (configs[0], plans[0])]:
        started = time.perf_counter()
        points.append({**probe(fields.replace(train_config(config), **plan), opened, PROBE_STEPS), "pid": os.getpid(),
                       "gpus": gpus})
        walls.append(time.perf_counter() - started)
    return Probed([points[-1], *points[1:-1]], max(0.0, walls[0] - walls[-1]))  # the first's figures warm


# what a configuration that cannot fit a GPU costs: nothing, it ends at once as INFEASIBLE (search.run.trainable)
INFEASIBLE_POINT = {"setup_s": 0.0, "warmup_s": 0.0, "train_s_per_sample": 0.0, "val_s_per_clip": 0.0,
                    "checkpoint_s": 0.0, "infeasible": True}


def probe_on_workers(shards: str, cpus: float, at_once: int, plan: Callable[[dict[str, Any]], Any] | None = None
                     ) -> Callable[[list[dict[str, Any]]], Probed]:
    """Probes as Ray tasks with a trial's resources, each in a fresh Ray worker process, as a
    trial's: ``at_once`` tasks at the same time (the trials that run at once, as many as the
    cluster's CPUs, or its GPUs, hold), each a share of the configurations, so that they slow each
    other as trials that share a machine do (its cores, caches, memory bandwidth, or GPU). On GPUs,
    ``plan`` gives a configuration's trial plan (``search.run.trainable.trial_plan``): a task asks
    for the largest GPU share among its configurations, so tasks pack on a GPU as trials do, and
    probes each under its plan; a configuration that cannot fit is not probed (``INFEASIBLE_POINT``)."""
    def run(configs: list[dict[str, Any]]) -> Probed:
        import ray

        resources = ray.cluster_resources()
        gpus = resources.get("GPU", 0) >= 1
        plans = [plan(config) for config in configs] if gpus and plan is not None else None
        feasible = [i for i in range(len(configs)) if plans is None or not plans[i].infeasible]
        points: list[dict[str, Any]] = [dict(INFEASIBLE_POINT) for _ in configs]
        if not feasible:
            return Probed(points)
        if plans is not None:  # packed as trials are: as many at once as the trials
            tasks = max(1, min(at_once, len(feasible)))
        else:
            held = resources.get("GPU", 0) if gpus else resources.get("CPU", 1) / max(cpus, 1e-9)
            tasks = max(1, min(at_once, int(held), len(feasible)))
        groups = [feasible[k::tasks] for k in range(tasks)]
        runs = []
        for group in groups:
            share = max(plans[i].share for i in group) if plans is not None else (1 if gpus else 0)
            changes = None if plans is None else [
                {"micro_batch_size": plans[i].micro_batch_size, "data_on_device": plans[i].data_on_device,
                 "memory_budget_gb": plans[i].budget_gb} for i in group]
            remote = ray.remote(num_cpus=cpus, num_gpus=share, max_calls=1)(_probe_all)
            runs.append(remote.remote([configs[i] for i in group], shards, changes))
        found = ray.get(runs)
        for group, probed in zip(groups, found):
            for i, point in zip(group, probed.points):
                points[i] = point
        return Probed(points, float(np.mean([f.cold_s for f in found])))

    return run


def epoch_parts(configs: list[dict[str, Any]], points: list[dict[str, float]],
                counts: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each configuration's epoch from its probe's figures and the video ``counts``: its training
    seconds (its training samples at its seconds per sample), the rest of it (its validation clips
    at its seconds per clip, a checkpoint's save and Ray's report), and a trial's set-up and first
    step's warm-up (once a trial)."""
    def samples(config: dict[str, Any]) -> int:
        return counts.get("train", 0) + (counts.get("unlabeled", 0) if config.get("pseudo_labels") else 0)

    train = np.array([samples(c) * point["train_s_per_sample"] for c, point in zip(configs, points)])
    rest = np.array([counts.get("val", 0) * point["val_s_per_clip"] + point["checkpoint_s"] + REPORT_S
                     for point in points])
    return train, rest, np.array([point["setup_s"] + point["warmup_s"] for point in points])


def assumed_probe(config: dict[str, Any], macs: float) -> dict[str, float]:
    """A probe's figures from ``ASSUMED_GPU``'s rate, for a GPU profile where no GPU is here."""
    rate = ASSUMED_GPU["flops"] / 2  # multiply-adds per second
    return {"setup_s": ASSUMED_GPU["setup_s"], "warmup_s": 0.0, "train_s_per_sample": 3 * training_macs(config, macs) / rate,
            "val_s_per_clip": 2 * macs / rate, "checkpoint_s": ASSUMED_GPU["checkpoint_s"], "macs": macs}


SELF_FED = {"none": 0.0, "linear": 0.5, "exponential": 1 - 0.95 / math.log(20)}  # mean share over the epochs


def training_macs(config: dict[str, Any], macs: float) -> float:
    """A training sample's work, in a forward pass's multiply-adds: the forward itself for a direct
    rollout; for an autoregressive one, one step (its forward rolls out one per output frame) and
    the self-fed steps before it, without gradients (a third of a step with them), as
    ``vidseg.train.loop`` trains it."""
    if config.get("rollout") != "autoregressive":
        return macs
    from vidseg.train.loop import MAX_SELF_FED

    self_fed = MAX_SELF_FED * SELF_FED.get(config.get("sampling", "none"), 0.0)
    return macs / OUTPUT_FRAMES * (1 + self_fed / 3)


def estimate(settings: Settings, profile: Profile, counts: dict[str, int], share: Callable[[dict[str, Any]], float],
             probe: Callable[[list[dict[str, Any]]], Probed] | None, basis: str,
             trials: int | None, probed: Probed | None = None, curves=None, capacity: float | None = None) -> Estimate:
    """The estimate for ``trials`` trials (None: per trial, for a budget alone) with ``settings``'
    scheduler, concurrency and budget. ``probe`` measures some configurations (``probe_on_workers``); None
    uses ``assumed_probe``; ``probed``, what an earlier call's probe measured of the same settings'
    configurations, is used as it is; ``curves``, a learning-curve table, stands for the profile's shipped one
    (a simulated search's, ``search.run.simulate``); ``capacity``, the cluster's GPUs (or CPUs) where
    it is known, bounds how many trials run at once by their shares, as Ray packs them. ``share`` is a
    configuration's device share (its CPUs, or its GPU share). What was probed comes back in
    ``Estimate.probed``."""
    from search.run.proposals import proposal_order

    configs = configurations(profile, settings)
    references = len(points_to_evaluate(profile))
    found = _measured(configs, probe, probed, profile)
    train_s, val_s, setups = epoch_parts(configs, found.points, counts)
    shares = np.array([share(c) for c in configs])
    cheapest = float(min(shares * (setups + train_s + val_s)))
    n = trials if trials is not None else profile.num_samples  # a budget alone: per trial, over the profile's count
    # the live search's order of proposals (search.run.proposals), at its size
    rule = proposal_order(settings.searcher, settings.scheduler, settings.num_samples, settings.max_concurrent,
                          references)
    made = _MadeUp(settings, configs, train_s + val_s, setups, shares, _learning(profile, configs, references,
                                                                                settings.max_epochs, curves),
                   rule, references, capacity)
    full, spent, makespan = made.replays(n)
    processes = min(settings.max_concurrent, n)  # reuse_actors: a finished trial's process runs the next
    cold = found.cold_s * processes * float(np.mean(shares))
    expected = float(np.mean(spent)) + cold
    kept: dict[str, Any] = {}
    if settings.budget_s is not None:  # the same, kept to the budget: with a budget alone, trials enough to spend it
        held = n if trials is not None else max(n, math.ceil(2 * settings.budget_s * n / expected) + settings.max_concurrent)
        _, spent_b, makespan_b = made.replays(held, settings.budget_s, expected / n)
        kept = dict(budgeted_s=float(np.mean(spent_b)) + cold, budgeted_range_s=_spread(spent_b, cold),
                    budgeted_wall_s=float(np.mean(makespan_b)) + found.cold_s,
                    budgeted_wall_range_s=_spread(makespan_b, found.cold_s))
    return Estimate(trials=trials, concurrency=settings.max_concurrent, full_s=float(np.mean(full)) + cold,
                    expected_s=expected, wall_s=float(np.mean(makespan)) + found.cold_s, trial_s=expected / n,
                    cheapest_epoch_s=cheapest, basis=basis, budget_s=settings.budget_s,
                    expected_range_s=_spread(spent, cold), wall_range_s=_spread(makespan, found.cold_s),
                    probed=found, **kept)


def _measured(configs: list[dict[str, Any]], probe, probed: Probed | None, profile: Profile) -> Probed:
    """What each configuration costs: measured before (``probed``), probed now (and said), or assumed."""
    if probed is not None:
        return probed
    if probe is None:
        return Probed([assumed_probe(config, _macs(config, profile.resolution)) for config in configs])
    found = probe(configs)
    ran = [point for point in found.points if not point.get("infeasible")]
    if ran:
        per_sample = [1e3 * point["train_s_per_sample"] for point in ran]
        log.info("probed %d configurations: %.3g-%.3g ms a training sample, %.3g-%.3g ms a validation clip, "
                 "a trial process's cold start %.2f s%s", len(ran), min(per_sample), max(per_sample),
                 *(1e3 * f([point["val_s_per_clip"] for point in ran]) for f in (min, max)), found.cold_s,
                 f"; {len(configs) - len(ran)} cannot fit a GPU" if len(ran) < len(configs) else "")
    return found


@dataclass(frozen=True)
class _Learning:
    """How each configuration learns in the replays: as the nearest one a learning-curve table
    recorded (``values``, ``ties``, the table's ``floor``), or, with no table, at random (``values``
    None); ``later``, the configurations TPE proposes past its start-up."""

    values: np.ndarray | None
    ties: np.ndarray | None
    floor: float | None
    later: np.ndarray


def _learning(profile: Profile, configs: list[dict[str, Any]], references: int, epochs: int, curves) -> _Learning:
    from search.tools.replay import distance

    shipped = curves if curves is not None else shipped_curves(profile)
    if shipped is None:
        return _Learning(None, None, None, np.arange(references, len(configs)))
    log.info("the scheduler replayed over the %d learning curves %s (each configuration as the nearest recorded "
             "one)", len(shipped.configs), f"that ship with profile {profile.name}" if curves is None else "given")
    nearest = [int(np.argmin([distance(config, recorded, profile.space) for recorded in shipped.configs]))
               for config in configs]
    values = _to_epochs(shipped.values[nearest], epochs)
    ties = _to_epochs(shipped.ties[nearest], epochs) if shipped.ties is not None else None
    # TPE past its start-up proposes near the best trials it has seen: the better half of the pool
    peaks = values.max(axis=1)
    later = np.array([i for i in range(references, len(configs)) if peaks[i] >= np.median(peaks[references:])])
    return _Learning(values, ties, shipped.floor, later)


class _MadeUp:
    """Made-up searches of the drawn configurations (``search.tools.replay``), in the live search's
    order of proposals, each epoch's seconds spread as probes and epochs spread."""

    def __init__(self, settings: Settings, configs: list[dict[str, Any]], walls: np.ndarray, setups: np.ndarray,
                 shares: np.ndarray, learning: _Learning, rule, references: int, capacity: float | None) -> None:
        from search.tools.replay import Setting

        self.settings, self.configs, self.walls, self.setups, self.shares = settings, configs, walls, setups, shares
        self.learning, self.rule, self.capacity = learning, rule, capacity
        self.pool = np.arange(references, len(configs))
        self.setting = Setting(settings.scheduler, settings.grace_period, settings.reduction_factor)
        self.rng = np.random.default_rng(settings.seed)

    def replays(self, n: int, budget_s: float | None = None, trial_s: float = 0.0) -> tuple[list, list, list]:
        """``REPLAYS`` searches of ``n`` trials: each one's device seconds without stopping, with the
        scheduler (kept to ``budget_s`` if given), and its wall time."""
        return tuple(list(values) for values in zip(*(self.once(seed, n, budget_s, trial_s) for seed in range(REPLAYS))))

    def once(self, seed: int, n: int, budget_s: float | None, trial_s: float) -> tuple[float, float, float]:
        from search.results.curves import Curves
        from search.tools.replay import Budget, replay

        rng, epochs, learning = self.rng, self.settings.max_epochs, self.learning
        order = [_proposed(kind, i, self.pool, learning.later, rng) for kind, i in self.rule.kinds(n)]
        seconds = np.repeat(self.walls[order, None], epochs, axis=1)
        seconds[:, 0] += self.setups[order]
        seconds *= rng.lognormal(0.0, PROBE_SPREAD, (n, 1)) * rng.lognormal(0.0, EPOCH_SPREAD, (n, epochs))
        if learning.values is not None:  # the recorded curves, their exact ties broken at random
            values = learning.values[order]
            ties = None if learning.ties is None else learning.ties[order] + rng.normal(0, 1e-6, (n, epochs))
        else:  # how good each trial is, at random: the scheduler ranks them as it ranks any
            values, ties = rng.random(n)[:, None] * (1 - 0.6 ** np.arange(1, epochs + 1))[None, :], None
        curves = Curves([f"t{i}" for i in range(n)], [self.configs[i] for i in order], values, seconds,
                        {"max_epochs": epochs, "scheduler": self.settings.scheduler,
                         "baselines": {"unet": learning.floor}}, ties=ties)
        device = self.shares[order]
        kept = None if budget_s is None else Budget(budget_s, trial_s, device)
        ran = replay(curves, self.setting, list(range(n)), self.settings.max_concurrent, seed, budget=kept,
                     capacity=self.capacity, shares=device, narrate=False)
        return (float((device * seconds.sum(axis=1)).sum()),
                float(sum(device[i] * seconds[i, :ran.epochs_run[i]].sum() for i in range(n))), ran.makespan)


def _proposed(kind: str, i: int, pool: np.ndarray, later: np.ndarray, rng: np.random.Generator) -> int:
    """The configuration (its row in ``configurations``) that a proposal of ``kind`` (the i-th of its
    kind, ``search.run.proposals``) runs in a replay: a reference as it is; a random draw as the
    pool's draw of the same seed, past the pool one of its draws at random (the pool stands for the
    space's random draws); a guided one, which follows results unknown here, one of ``later`` at random."""
    from search.run.proposals import GUIDED, REFERENCE

    if kind == REFERENCE:
        return i
    if kind == GUIDED:
        return int(rng.choice(later))
    return int(pool[i]) if i < len(pool) else int(rng.choice(pool))


def _said_range(span: tuple[float, float] | None) -> str:
    return ("" if span is None else f" (one search: {duration_text(span[0])} to {duration_text(span[1])}, the "
                                    f"replays' {RANGE[0]}th to {RANGE[1]}th percentile)")


def _spread(values: list[float], add: float) -> tuple[float, float]:
    """The ``RANGE`` percentiles of ``values``, each plus ``add``."""
    low, high = (float(np.percentile(values, q)) + add for q in RANGE)
    return low, high




def shipped_curves(profile: Profile):
    """The learning curves that ship with ``profile`` (a ``--scheduler fifo`` search's
    ``curves.parquet``, ``search.results.curves``), or None."""
    from search.results.curves import read_curves

    path = CURVES / f"{profile.name}.parquet"
    return read_curves(path) if path.is_file() else None


def _to_epochs(table: np.ndarray, epochs: int) -> np.ndarray:
    """(trials, recorded epochs) -> (trials, ``epochs``): cut, or the last epoch's value kept."""
    if table.shape[1] >= epochs:
        return table[:, :epochs]
    return np.concatenate([table, np.repeat(table[:, -1:], epochs - table.shape[1], axis=1)], axis=1)


def check_budget(found: Estimate) -> None:
    """A budget that covers no whole trial buys nothing, since no trial starts whose expected cost
    would overrun it (``search.run.budget.BudgetLimiter``): refused, in one line, before anything is
    saved. The floor is one trial's expected cost with the scheduler, or the cheapest
    configuration's set-up and first epoch where that is more."""
    if found.budget_s is None:
        return
    need = max(found.trial_s, found.cheapest_epoch_s)
    if found.budget_s < need:
        # rounded up to what duration_text shows, so that the figure given is enough
        need = math.ceil(need * 10) / 10 if need < 60 else math.ceil(need) if need < 3600 else math.ceil(need / 60) * 60
        raise UsageError(f"--budget {duration_text(found.budget_s)} covers no whole trial: one is expected to cost "
                         f"about {duration_text(found.trial_s)} of device time (the cheapest configuration's set-up "
                         f"and first epoch alone about {duration_text(found.cheapest_epoch_s)}), and no trial starts "
                         f"that would overrun the budget: give at least {duration_text(need)}")
