"""The Ray Tune trainable: one SimVP trial, reported every epoch, checkpointed every epoch.

``vidseg.train.loop.fit`` does the work. This wrapper restores from ``tune.get_checkpoint()`` (so a
trial whose worker died, or whose driver was restarted, goes on from its last epoch), and turns
each epoch's report into ``tune.report(metrics, checkpoint=...)``.

On GPUs each trial is packed by ``vidseg.train.memory.plan_trial`` for the GPUs the search runs
on (``gpu_memory_gb``, detected on a worker or given as a flag): it asks Ray for the share of a
GPU its modelled peak needs, in eighths; it runs in micro-batches where its batch would not fit
one GPU; its allocator is capped at that share; and a configuration that cannot fit at all ends
at once as INFEASIBLE, naming why, before it touches the GPU. Each report then carries the plan
(``gpu_share``, ``planned_peak_gb``, ``memory_budget_gb``) beside fit's measured
``peak_memory_gb``. A trial whose loss diverges ends at once as DIVERGED. Neither is an error, so
Ray Tune does not retry them (``end_trial``); a worker that dies is still retried from its last
checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from vidseg.data.remote import cached_shards
from vidseg.errors import InputError
from vidseg.checkpoint import load_checkpoint
from vidseg.train.config import TrainConfig
from vidseg.train.loop import CHECKPOINT, TrialDiverged, fit
from vidseg.train.memory import GIB, TrialPlan, data_bytes, plan_trial

__all__ = ["train_simvp", "trial_resources", "device_share", "trial_plan", "end_trial", "detect_gpu_memory_gb", "OUTCOME", "DIVERGED",
           "INFEASIBLE"]


log = logging.getLogger("vidseg.search")

from search.results.outcome import DIVERGED, INFEASIBLE, OUTCOME  # noqa: E402  (re-exported)


def trial_plan(config: TrainConfig, resolution: tuple[int, int], gpu_memory_gb: float,
               counts: dict[str, int] | None = None) -> TrialPlan:
    data = data_bytes(config, counts, resolution) if counts else 0
    return plan_trial(config, resolution, int(gpu_memory_gb * GIB), data)


def train_simvp(config: dict[str, Any], shards: str, gpu_memory_gb: float | None = None,
                counts: dict[str, int] | None = None, resolution: tuple[int, int] | None = None) -> None:
    """Ray Tune function trainable; ``shards`` (a path, or a URI cached once per node), and on GPU
    clusters ``gpu_memory_gb``, the shard set's video ``counts`` and its ``resolution``, come
    through ``tune.with_parameters``."""
    from ray import tune
    from ray.tune import Checkpoint

    from search.space import train_config

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # not a line per saved checkpoint
    # before CUDA starts: fewer fragments, so the capped share holds the modelled peak
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    train = train_config(config)
    if gpu_memory_gb is not None and resolution is not None:
        plan = trial_plan(train, resolution, gpu_memory_gb, counts)
        if plan.infeasible:  # before any work: the search records why, and goes on
            end_trial(INFEASIBLE, 0, f"infeasible on a {gpu_memory_gb:g} GiB GPU: {plan.infeasible}")
            return
    planned: dict[str, float] = {}
    if gpu_memory_gb is not None and resolution is not None and torch.cuda.is_available():
        train = dataclasses.replace(train, micro_batch_size=plan.micro_batch_size, data_on_device=plan.data_on_device,
                                    memory_budget_gb=plan.budget_gb)
        # reported beside fit's measured peak_memory_gb, so the plan can be checked against it
        planned = {"gpu_share": plan.share, "planned_peak_gb": plan.peak_bytes / GIB, "memory_budget_gb": plan.budget_gb}
    state = None
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder:
            state = load_checkpoint(Path(folder) / CHECKPOINT)
    with tempfile.TemporaryDirectory(prefix="vidseg-trial-") as folder:
        def report(metrics: dict[str, Any]) -> None:
            # fit saved this epoch's checkpoint to ``folder`` just before; Ray copies it to storage now.
            tune.report({**metrics, **planned}, checkpoint=Checkpoint.from_directory(folder))

        try:
            fit(train, cached_shards(shards), report, checkpoint=state, checkpoint_dir=folder,
                share=device_share(tune.get_context().get_trial_resources().required_resources, train.device))
        except TrialDiverged as err:  # it would diverge again the same way: not retried
            end_trial(DIVERGED, err.epoch, str(err))
        finally:
            if torch.cuda.is_available():  # the process may run the next trial (reuse_actors): its share, empty
                torch.cuda.empty_cache()


def device_share(resources: dict[str, float], device: str) -> float:
    """What a trial's device time counts (``vidseg.train.cost``): its share of a GPU where it trains on
    one, else its CPUs."""
    gpus = float(resources.get("GPU", 0) or 0)
    if gpus > 0 and device != "cpu" and torch.cuda.is_available():
        return gpus
    return float(resources.get("CPU", 1) or 1)


def end_trial(outcome: str, epoch: int, reason: str) -> None:
    """End a trial that cannot go on as ``outcome`` (DIVERGED or INFEASIBLE), without an error, so
    that Ray Tune does not retry it: a last report with no checkpoint carries the outcome and the
    reason, and a NaN val_iou, which Optuna records as a failed trial and ASHA never promotes."""
    from ray import tune

    log.warning("trial %s: %s", outcome.lower(), reason)
    tune.report({"epoch": epoch, "val_iou": float("nan"), OUTCOME: outcome, "reason": reason[:300]})


def trial_resources(cpus: float, resolution: tuple[int, int], gpu_memory_gb: float | None,
                    counts: dict[str, int] | None = None):
    """A function of a trial's config that gives its resources, for ``tune.with_resources``: CPUs
    only without GPUs (``gpu_memory_gb`` None), else the planned share of one GPU."""
    from search.space import train_config

    def resources(config: dict[str, Any]) -> dict[str, float]:
        if gpu_memory_gb is None:
            return {"cpu": cpus}
        plan = trial_plan(train_config(config), resolution, gpu_memory_gb, counts)
        return {"cpu": cpus, "gpu": plan.share}

    return resources


def detect_gpu_memory_gb(timeout_s: float = 300.0) -> float:
    """The memory of one of the cluster's GPUs, read by a one-GPU task on a worker. Raises
    ``InputError``, naming ``--gpu-memory-gb``, when no such task runs within ``timeout_s`` or the
    worker's GPUs are not CUDA devices (Ray's logical GPUs)."""
    import ray

    @ray.remote(num_gpus=1, num_cpus=0)
    def gpu_memory() -> float | None:
        import torch as worker_torch

        if not worker_torch.cuda.is_available():
            return None
        return worker_torch.cuda.get_device_properties(0).total_memory / GIB

    try:
        memory = ray.get(gpu_memory.remote(), timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise InputError(f"no GPU worker answered within {timeout_s:.0f} s to tell its GPU's memory; "
                           f"give it with --gpu-memory-gb") from None
    if memory is None:
        raise InputError("the cluster's GPU workers show torch no CUDA device (logical GPUs?); "
                           "give the GPUs' memory with --gpu-memory-gb")
    return float(memory)
