"""What a search will cost, said before its first trial: the estimate (``search.tools.estimate``)
probed on the device its trials get, or from the cost model (simulated trials, or a GPU profile with
no GPU up), fitted to the machine where the profile has a run target, its budget checked; on
``--resume``, the saved estimate, or a grown search's for its new size. The module is the
``search.run.steps.Costing`` that ``search/run_search.py`` gives ``search.run.steps.search_on_ray``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search.run.steps import Search

__all__ = ["estimate_cost", "simulated_estimate", "capacity", "said", "fit_the_machine", "FINISH_S",
           "gpu_profile_without_gpu", "new", "resumed", "world"]

log = logging.getLogger("vidseg.search")


def estimate_cost(search: Search):
    """What the search is expected to cost (``search.tools.estimate``), probed on the device the
    trials get; where the profile is for GPUs and none is here (``--estimate-only`` without a
    cluster), from ``ASSUMED_GPU``'s rate and the profile's video counts, said in one line."""
    from search.tools.estimate import ASSUMED_GPU, estimate, probe_on_workers
    from search.space import train_config

    settings, profile = search.settings, search.profile
    trials = settings.num_samples if settings.bounded else None
    if settings.simulate:
        return simulated_estimate(search, trials)
    if search.shards is None:  # no data here, and no GPU to probe
        counts = dict(profile.counts)
        log.info("no GPU here to probe: the estimate assumes %s training at an effective %.0f TFLOP/s in bf16 "
                 "(a training step 3 forward passes' multiply-adds), one GPU per trial, a %.0f s set-up, and the "
                 "%s profile's %d train and %d val videos", ASSUMED_GPU["name"], ASSUMED_GPU["flops"] / 1e12,
                 ASSUMED_GPU["setup_s"], profile.name, counts.get("train", 0), counts.get("val", 0))
        return estimate(settings, profile, counts, lambda config: 1.0, None,
                        f"assumed: {ASSUMED_GPU['name']} at {ASSUMED_GPU['flops'] / 1e12:.0f} TFLOP/s", trials)
    from search.run.prepare import shard_counts

    counts = shard_counts(search.shards)
    probed = search.estimate.probed if search.estimate is not None else None  # again, for new settings: not probed again
    plan = None
    if settings.gpu_memory_gb is not None:
        import ray

        from search.run.trainable import trial_plan

        def plan(config):
            return trial_plan(train_config(config), profile.resolution, settings.gpu_memory_gb, counts)

        def share(config):
            return plan(config).share
        if probed is None and ray.cluster_resources().get("GPU", 0) < 1 and profile.fixed.get("device", "auto") != "cpu":
            log.info("no GPU is up in the cluster to probe on (an autoscaling cluster starts GPU workers for the "
                     "trials): the estimate assumes %s at an effective %.0f TFLOP/s, each trial's GPU share as "
                     "packed for %g GiB GPUs; nothing is trained on CPUs for it", ASSUMED_GPU["name"],
                     ASSUMED_GPU["flops"] / 1e12, settings.gpu_memory_gb)
            return estimate(settings, profile, counts, share, None,
                            f"assumed: {ASSUMED_GPU['name']} at {ASSUMED_GPU['flops'] / 1e12:.0f} TFLOP/s, no GPU up",
                            trials)
        basis = "probed on GPU workers, packed as the trials"
    else:
        def share(config):
            return float(profile.cpus_per_trial)
        basis = f"probed on this machine's CPU, {profile.cpus_per_trial:g} per trial"
    return estimate(settings, profile, counts, share,
                    probe_on_workers(search.shards, profile.cpus_per_trial, settings.max_concurrent, plan), basis, trials,
                    probed=probed, capacity=capacity(settings))


def simulated_estimate(search: Search, trials: int | None):
    """A simulated search's estimate: its trials' own cost model and learning-curve table
    (``search.run.simulate``), each trial's share as the live search packs it."""
    from search.run.trainable import trial_resources
    from search.tools.estimate import ASSUMED_GPU, estimate

    settings, profile = search.settings, search.profile
    world = search.world
    resources = trial_resources(profile.cpus_per_trial, profile.resolution, settings.gpu_memory_gb, dict(profile.counts))
    log.info("simulated trials: learning curves from %s (%d configurations), costs from %s at an effective %.0f "
             "TFLOP/s, %g simulated seconds a wall second", world.source, len(world.recorded), ASSUMED_GPU["name"],
             ASSUMED_GPU["flops"] / 1e12, settings.time_scale)
    return estimate(settings, profile, dict(profile.counts), lambda config: resources(config).get("gpu") or resources(config)["cpu"],
                    None, "simulated trials' cost model", trials, curves=world.curves(), capacity=capacity(settings))


def capacity(settings) -> float | None:
    """What the trials' shares are shares of, in the cluster that Ray has up now: its GPUs (where the
    trials ask for GPU shares), else its CPUs; None without Ray."""
    import ray

    if not ray.is_initialized():
        return None
    return ray.cluster_resources().get("GPU" if settings.gpu_memory_gb is not None else "CPU") or None


def said(found) -> None:
    for line in found.lines():
        log.info("%s", line)


FINISH_S = 30.0  # after the budget ends a search: the epochs in flight (BudgetStop), the results written (5 s)


def fit_the_machine(search: Search) -> bool:
    """A profile with a run target (``Profile.run_target_s``: the demo), started with neither
    ``--num-samples`` nor ``--budget``, whose estimate says the search would end after the target on
    this machine: the search gets the device-time budget that ends it in time (the wall time left at
    the estimate's device seconds per wall second), and says so in one line. The budget then decides
    which trials start (``search.run.budget``); the report says what it bought. True where it did."""
    target, args, found = search.profile.run_target_s, search.args, search.estimate
    if target is None or args.num_samples is not None or args.budget is not None or found is None:
        return False
    from search.results.durations import duration_text

    left = target - (time.perf_counter() - search.started) - FINISH_S
    if found.wall_s <= left:
        return False
    budget = max(left * found.expected_s / max(found.wall_s, 1e-9), found.trial_s, found.cheapest_epoch_s)
    log.info("fitting the machine: the %d trials would take about %s of wall time here, more than the %s left of "
             "the %s profile's %s; so it runs with --budget %s of device time (about %.0f trials; --num-samples or "
             "--budget chooses)", found.trials, duration_text(found.wall_s), duration_text(max(left, 0.0)),
             search.profile.name, duration_text(target), duration_text(budget), budget / max(found.trial_s, 1e-9))
    search.settings = search.settings.replace(budget_s=budget)
    search.estimate = dataclasses.replace(found, budget_s=budget)
    return True


def gpu_profile_without_gpu(search: Search) -> bool:
    """A profile for GPUs, with no GPU to probe: no cluster named, and none in this machine."""
    import torch

    return (search.profile.fixed.get("device", "auto") != "cpu" and search.address is None
            and search.source.shards is None and not torch.cuda.is_available())


def world(search: Search) -> Any:
    """A simulated search's world (``search.tools.simulation``): the same settings build the same one."""
    if not search.settings.simulate:
        return None
    from search.tools.simulation import build_world

    return build_world(search.profile, search.settings, dict(search.profile.counts))


def new(search: Search):
    """A new search's estimate, said; where the machine cannot run it within the profile's run target,
    kept to the budget that does (``fit_the_machine``); a budget that covers no whole trial refused."""
    from search.tools.estimate import check_budget

    search.estimate = estimate_cost(search)
    said(search.estimate)
    if fit_the_machine(search):  # the scheduler replayed again, kept to that budget (nothing probed again)
        search.estimate = estimate_cost(search)
        for line in search.estimate.kept_lines():
            log.info("%s", line)
    check_budget(search.estimate)  # a budget that covers no whole trial: refused, nothing saved
    return search.estimate


def resumed(search: Search) -> tuple[Any, bool]:
    """A resumed search's estimate: the saved one; for a search grown to more trials (``--resume
    --num-samples``), estimated again for its new size from the saved probe's figures (probed again
    where an older search.json has none), and said; and whether it was estimated again (the driver
    saves it then)."""
    from search.tools.estimate import Estimate

    settings = search.settings
    saved = Estimate.from_dict({**search.saved.estimate, "budget_s": settings.budget_s})
    if not settings.bounded or saved.trials in (None, settings.num_samples):
        return saved, False
    log.info("the estimate again, for the search grown from %d to %d trials:", saved.trials, settings.num_samples)
    search.estimate = saved  # its probe's figures serve again
    found = estimate_cost(search)
    said(found)
    return found, True
