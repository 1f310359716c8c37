"""What a search will cost, said before its first trial, in device time (``vidseg.train.cost``).

1. **Configurations**: the reference configurations the search runs first, and the profile's ``estimate_draws`` drawn at
   random from the profile's space by the search's own ``SearchSpace``; each one's multiply-adds
   for one clip are counted on the ``meta`` device (no memory, no compute).
2. **A probe on the device at hand** (``vidseg.train.loop.probe``: a few optimiser steps and one
   validation batch of ``fit``'s own path, on the real shards): the cheapest and the costliest of
   them to train (``training_macs``: an autoregressive model trains one step of its rollout, after its
   self-fed steps), of each kind of output (``mse``'s one channel; the class probabilities of the
   other losses, whose one-hot inputs, softmax and loss terms cost a sample far more than
   multiply-adds say), and the one halfway between by training work (``PROBE_AT``). Every other
   configuration's seconds per training sample are interpolated on the broken line through its
   kind's probes by its training work, and per validation clip by its multiply-adds; an epoch adds a
   checkpoint's save and Ray's report (``REPORT_S``), a trial its set-up, and each process the
   trials run in the first use of torch's FLOP counter (timed here, on the first count). On a cluster with GPUs
   the probe runs as a one-GPU Ray task on a worker; elsewhere in the driver, with the trial's CPU
   threads. Where the profile is for GPUs and none is here to probe (``--estimate-only``), an
   ``ASSUMED_GPU`` rate of multiply-adds stands in, and the estimate says so in one line.
3. **The scheduler's share**: the search's own scheduler (``search.run.tuner.make_scheduler``)
   replayed (``search.tools.replay.replay``, ``REPLAYS`` seeds) over ``num_samples`` trials with
   those epoch times and made-up learning curves (each trial's quality drawn at random, so that
   the scheduler ranks trials as it would rank any), at the search's concurrency: the device time
   it lets the trials spend, and the wall time until the last trial ends.

Without stopping: every trial runs ``max_epochs``. With ``--budget`` alone (no ``--num-samples``),
the estimate is per trial, and says how many trials the budget affords.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from search.run.settings import Settings, UsageError
from search.space import Profile, SearchSpace, enqueue, points_to_evaluate, train_config
from vidseg.task import INPUT_FRAMES
from vidseg.train.cost import duration_text

__all__ = ["Estimate", "estimate", "check_budget", "configurations", "probe_here", "assumed_probe",
           "ASSUMED_GPU"]

log = logging.getLogger("vidseg.search")

REPLAYS, PROBE_STEPS = 20, 2
PROBE_AT = (0.0, 0.5, 1.0)  # the probed configurations of each kind: quantiles of training work
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
                      f"  {count} with the scheduler: {hours(self.expected_s)} expected",
                      f"  wall time at {self.concurrency} trials at once: {duration_text(self.wall_s)}"]
            if self.budget_s is not None:
                lines.append(f"  budget {duration_text(self.budget_s)}: "
                             + ("enough for all of them, as expected" if self.expected_s <= self.budget_s else
                                f"about {self.affordable:.0f} of the {self.trials} trials (whichever ends first)"))
        return lines

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> Estimate:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})


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


def _macs(config: dict[str, Any], resolution: tuple[int, int], seen: dict[tuple, float]) -> float:
    import torch

    from vidseg.train.cost import model_macs
    from vidseg.train.model import build_model

    key = tuple(config.get(name) for name in SHAPE)
    if key not in seen:
        with torch.device("meta"):
            model = build_model(train_config(config), *resolution)
        seen[key] = float(model_macs(model, *resolution))
    return seen[key]


def probe_here(shards: str, cpus: float) -> Callable[[dict[str, Any]], dict[str, float]]:
    """Probes in this process, with a trial's CPU threads, or as a one-GPU Ray task where the Ray
    cluster this driver joined has GPUs (the device the trials get)."""
    def run(config: dict[str, Any]) -> dict[str, float]:
        import torch

        from vidseg.data.remote import cached_shards
        from vidseg.train.loop import probe

        try:
            import ray

            gpus = ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0
        except ImportError:
            gpus = False
        if gpus:
            remote = ray.remote(num_gpus=1, num_cpus=cpus)(lambda c, s: probe(train_config(c), cached_shards(s),
                                                                               PROBE_STEPS))
            return ray.get(remote.remote(config, shards))
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, int(cpus)))
        try:
            return probe(train_config(config), cached_shards(shards), PROBE_STEPS)
        finally:
            torch.set_num_threads(threads)

    return run


def assumed_probe(config: dict[str, Any], macs: float) -> dict[str, float]:
    """A probe's figures from ``ASSUMED_GPU``'s rate, for a GPU profile where no GPU is here."""
    rate = ASSUMED_GPU["flops"] / 2  # multiply-adds per second
    return {"setup_s": ASSUMED_GPU["setup_s"], "train_s_per_sample": 3 * training_macs(config, macs) / rate,
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
    return macs / INPUT_FRAMES * (1 + self_fed / 3)


def estimate(settings: Settings, profile: Profile, counts: dict[str, int], share: Callable[[dict[str, Any]], float],
             probe: Callable[[dict[str, Any]], dict[str, float]] | None, basis: str,
             trials: int | None) -> Estimate:
    """The estimate for ``trials`` trials (None: per trial, for a budget alone) with ``settings``'
    scheduler and concurrency. ``probe`` measures one configuration (``probe_here``); None uses
    ``assumed_probe``. ``share`` is a configuration's device share (its CPUs, or its GPU share)."""
    from search.results.curves import Curves
    from search.run.tuner import references_after
    from search.tools.replay import Setting, replay

    configs = configurations(profile, settings)
    references = len(points_to_evaluate(profile))
    seen: dict[tuple, float] = {}
    times, macs = [], []
    for config in configs:
        started, new = time.perf_counter(), len(seen)
        macs.append(_macs(config, profile.resolution, seen))
        if len(seen) > new:
            times.append(time.perf_counter() - started)
    macs = np.array(macs)
    # torch's FLOP counter costs a process about a second the first time (every trial's process counts
    # its model once): what the first count here took beyond the others, once per process the trials run in
    warmup = max(0.0, times[0] - float(np.median(times[1:]))) if len(times) > 1 else 0.0
    work = np.array([training_macs(c, m) for c, m in zip(configs, macs)])
    # a class-probability output (a channel per class: the one-hot, the softmax, the CE and soft-Jaccard terms)
    # costs a sample far more than multiply-adds say, mse's one channel little: each kind has its own line
    kinds = np.array(["mse" if c.get("loss") == "mse" else "classes" for c in configs])
    lines: dict[str, list[dict[str, float]]] = {}  # a kind's probes, by training work
    for kind in dict.fromkeys(kinds):
        members = sorted(np.flatnonzero(kinds == kind), key=lambda i: work[i])
        chosen = sorted({int(members[round(q * (len(members) - 1))]) for q in PROBE_AT}, key=lambda i: work[i])
        points = []
        for i in chosen:
            point = assumed_probe(configs[i], float(macs[i])) if probe is None else probe(configs[i])
            points.append({**point, "macs": float(macs[i]), "train_macs": float(work[i])})
        if probe is not None:
            log.info("probed %d %s configuration(s) from the cheapest to train to the costliest: %s", len(points), kind,
                     ", ".join(f"{p['macs'] / 1e9:.3g} GMACs {1e3 * p['train_s_per_sample']:.1f} ms a sample"
                               for p in points))
        lines[kind] = points
    setup = float(np.mean([point["setup_s"] for points in lines.values() for point in points]))

    def at(points: list[dict[str, float]], x: float, key: str, by: str) -> float:
        """``key`` at ``x`` of ``by``, on the broken line through the probes (flat beyond them)."""
        ordered = sorted(points, key=lambda p: p[by])
        return float(np.interp(x, [p[by] for p in ordered], [p[key] for p in ordered]))

    def epoch_wall(config: dict[str, Any], m: float, w: float, kind: str) -> float:
        points = lines[kind]
        samples = counts.get("train", 0) + (counts.get("unlabeled", 0) if config.get("pseudo_labels") else 0)
        return (samples * at(points, w, "train_s_per_sample", "train_macs")
                + counts.get("val", 0) * at(points, m, "val_s_per_clip", "macs")
                + at(points, m, "checkpoint_s", "macs") + REPORT_S)

    epochs = settings.max_epochs
    walls = np.array([epoch_wall(c, m, w, k) for c, m, w, k in zip(configs, macs, work, kinds)])
    shares = np.array([share(c) for c in configs])
    cheapest = float(min(shares[i] * (setup + walls[i]) for i in range(len(configs))))
    n = trials if trials is not None else profile.num_samples  # a budget alone: per trial, over the profile's count
    rng = np.random.default_rng(settings.seed)
    setting = Setting(settings.scheduler, settings.grace_period, settings.reduction_factor)
    first = references_after(settings.replace(num_samples=n)) if references else 0

    def replay_once(seed: int) -> tuple[float, float, float]:
        """One made-up search: (device seconds without stopping, with the scheduler, its wall time)."""
        # the draws in order: the search's sampler, seeded alike, proposes these while it starts up; past the
        # draws, the pool at random
        drawn = list(range(references, len(configs)))
        drawn += list(rng.choice(np.arange(references, len(configs)), size=max(0, n - len(drawn))))
        order = (drawn[:first] + list(range(references)) + drawn[first:])[:n]  # the references where they run
        seconds = np.repeat(walls[order, None], epochs, axis=1)
        seconds[:, 0] += setup
        quality = rng.random(n)  # how good each trial is, at random: the scheduler ranks them as it ranks any
        values = quality[:, None] * (1 - 0.6 ** np.arange(1, epochs + 1))[None, :]
        curves = Curves([f"t{i}" for i in range(n)], [configs[i] for i in order], values, seconds,
                        {"max_epochs": epochs, "scheduler": settings.scheduler})
        ran = replay(curves, setting, list(range(n)), settings.max_concurrent, seed)
        device = shares[order]
        return (float((device * seconds.sum(axis=1)).sum()),
                float(sum(device[i] * seconds[i, :ran.epochs_run[i]].sum() for i in range(n))), ran.makespan)

    quiet, log.disabled = log.disabled, True  # the scheduler's reasons for stopping made-up trials
    try:
        full, spent, makespan = (list(values) for values in zip(*(replay_once(seed) for seed in range(REPLAYS))))
    finally:
        log.disabled = quiet
    processes = min(settings.max_concurrent, n)  # reuse_actors: a finished trial's process runs the next
    cold = warmup * processes * float(np.mean(shares))
    expected = float(np.mean(spent)) + cold
    return Estimate(trials=trials, concurrency=settings.max_concurrent, full_s=float(np.mean(full)) + cold,
                    expected_s=expected, wall_s=float(np.mean(makespan)) + warmup, trial_s=expected / n,
                    cheapest_epoch_s=cheapest, basis=basis, budget_s=settings.budget_s)


def check_budget(found: Estimate) -> None:
    """A budget below one epoch of the cheapest trial buys nothing: refused, in one line."""
    if found.budget_s is not None and found.budget_s < found.cheapest_epoch_s:
        raise UsageError(f"--budget {duration_text(found.budget_s)} is less than one epoch of the cheapest trial "
                         f"(about {duration_text(found.cheapest_epoch_s)} of device time, set-up included): "
                         "give a larger budget")
