"""Building the search: Ray start-up, the scheduler, the searcher with its stored study, the tuner.

``make_scheduler`` is the one place a scheduler is made, for the live search and for
``search.tools.replay`` alike: ASHA or PASHA (``search.run.schedulers.RungScheduler``), asynchronous
Hyperband (Ray's ``AsyncHyperBandScheduler`` with three brackets), or FIFO.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from search.run.settings import Settings, UsageError
from search.space import Profile, SearchSpace, points_to_evaluate
from vidseg.data.remote import is_uri

__all__ = ["check_address", "init_ray", "make_scheduler", "make_searcher", "build_tuner", "restore_or_build",
           "HYPERBAND_BRACKETS"]

log = logging.getLogger("vidseg.search")

HYPERBAND_BRACKETS = 3


def check_address(address: str | None) -> None:
    """Fail fast, in one line, when nothing listens at HOST:PORT (ray.init would retry for a minute)."""
    if not address or address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address {address!r} is not 'auto' or HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as err:
        raise UsageError(f"--address {address}: no Ray cluster answers there ({err.strerror or err})") from None


def init_ray(address: str | None) -> None:
    import ray

    try:
        ray.init(address=address, include_dashboard=False, configure_logging=False, log_to_driver=True)
    except ConnectionError as err:
        raise UsageError(f"--address {address}: {str(err).splitlines()[0]}") from None
    resources = ray.cluster_resources()
    log.info("Ray: %d CPU, %g GPU across %d node(s)", resources.get("CPU", 0), resources.get("GPU", 0),
             len([n for n in ray.nodes() if n["Alive"]]))


def detect_gpus(settings: Settings, address: str | None) -> Settings:
    """The settings with the GPUs' memory, read on a GPU worker where the cluster has GPUs and no
    ``--gpu-memory-gb`` was given."""
    import ray

    if settings.gpu_memory_gb is None and ray.cluster_resources().get("GPU", 0) > 0:
        from search.run.trainable import detect_gpu_memory_gb

        settings = settings.replace(gpu_memory_gb=detect_gpu_memory_gb())  # InputError when it cannot tell
        log.info("GPUs of %.1f GiB: trials are packed for that size (--gpu-memory-gb overrides)", settings.gpu_memory_gb)
    if settings.gpu_memory_gb is None and address:
        log.warning("the cluster has no GPU up now, so trials run on CPUs; on an autoscaling GPU cluster "
                    "(min_workers 0) pass --gpu-memory-gb (an A10G: 22) so that trials ask for GPU shares "
                    "and the autoscaler starts GPU workers")
    return settings


def make_scheduler(kind: str, max_epochs: int, grace_period: int, reduction_factor: int, floor: float | None = None,
                   ties: str = "score", seed: int | None = None):
    """Ray Tune's scheduler for ``kind``, on ``val_iou`` at ``epoch``: ``asha`` and ``pasha``
    (``search.run.schedulers.RungScheduler``, PASHA's budget growing rung by rung), ``hyperband`` (Ray's
    asynchronous Hyperband over three brackets, ties by arrival) or ``fifo``. ``floor`` is
    copy-last-frame's val IoU, below which a trial is not promoted at a rung with too few results to
    rank it; ``ties`` decides equal val IoUs by the tie score (``score``) or by arrival
    (``arrival``, Ray's ASHA's rule, kept for replays); ``seed`` seeds Hyperband's draws of brackets."""
    from ray.tune.schedulers import FIFOScheduler

    from search.run.schedulers import RungScheduler, TieBreakingASHA

    if kind == "fifo":
        return FIFOScheduler()
    if kind == "hyperband":
        return TieBreakingASHA(time_attr="epoch", metric="val_iou", mode="max", max_t=max_epochs,
                               grace_period=grace_period, reduction_factor=reduction_factor, brackets=HYPERBAND_BRACKETS,
                               seed=seed)
    if kind not in ("asha", "pasha") or ties not in ("score", "arrival"):
        raise ValueError(f"no scheduler {kind!r} with ties by {ties!r}")
    return RungScheduler(max_epochs, grace_period, reduction_factor, floor=floor, progressive=kind == "pasha",
                         **({} if ties == "score" else {"tie_metric": None, "tie_tolerance": 0.0}))


def make_searcher(settings: Settings, profile: Profile, study_file: Path, name: str):
    """Optuna behind Ray, its study stored in ``study_file`` under ``name`` (``search.run.study``)."""
    from search.results.journal import journal_storage
    from search.run.proposals import proposal_order
    from search.run.study import StudySearch, make_sampler

    points = list(points_to_evaluate(profile).values())
    order = proposal_order(settings.searcher, settings.scheduler, settings.num_samples, settings.max_concurrent,
                           len(points))
    return StudySearch(space=SearchSpace(profile, settings.max_epochs, settings.seed), max_epochs=settings.max_epochs,
                       references=points, references_after=order.references_after,
                       sampler=make_sampler(settings.searcher, settings.seed, settings.num_samples, settings.max_concurrent),
                       storage=journal_storage(study_file), study_name=name)


def make_trainable(settings: Settings, profile: Profile, shards: str, world=None):
    """The trainable with its shards and its per-trial resources: CPUs only where there are no GPUs,
    else the share of one GPU that the trial's planned peak needs. With ``world``
    (``search.run.simulate.World``), simulated trials in place of training ones, packed alike."""
    from ray import tune

    from search.run.prepare import shard_counts
    from search.run.ray_internals import joined_trainable
    from search.run.trainable import train_simvp, trial_resources

    gpu_memory_gb = settings.gpu_memory_gb
    if world is not None:
        from search.run.simulate import SimulatedResources, simulated_trial

        return tune.with_resources(tune.with_parameters(simulated_trial, world=world),
                                   SimulatedResources(profile.cpus_per_trial, profile.resolution, gpu_memory_gb,
                                                      dict(profile.counts)))
    counts = shard_counts(shards) if gpu_memory_gb is not None else None
    return tune.with_resources(  # a trial's process ends only after its training thread (joined_trainable)
        joined_trainable(tune.with_parameters(train_simvp, shards=shards, gpu_memory_gb=gpu_memory_gb, counts=counts,
                                              resolution=profile.resolution)),
        trial_resources(profile.cpus_per_trial, profile.resolution, gpu_memory_gb, counts))


class TrialNamer:
    """Names a trial's folder (and its TensorBoard run) by what it is: ``search.results.board.run_name``."""

    def __init__(self, profile: Profile) -> None:
        self.references = points_to_evaluate(profile)

    def __call__(self, trial) -> str:
        from search.space import reference_name
        from search.results.board import run_name

        config = trial.config or {}
        return run_name(config, trial.trial_id, reference_name(config, self.references))


def build_tuner(settings: Settings, profile: Profile, shards: str, storage: str, name: str, study_file: Path,
                floor: float | None = None, trial_s: float = 0.0, world=None):
    from ray import tune

    from search.run.budget import BudgetLimiter
    from search.run.ray_internals import GrowingSearch
    from search.run.study import RetryingLimiter

    searcher = make_searcher(settings, profile, study_file, name)
    namer = TrialNamer(profile)
    return tune.Tuner(
        make_trainable(settings, profile, shards, world),
        tune_config=tune.TuneConfig(
            search_alg=GrowingSearch(BudgetLimiter(RetryingLimiter(searcher, max_concurrent=settings.max_concurrent),
                                                   settings.budget_s, trial_s)),
            scheduler=make_scheduler(settings.scheduler, settings.max_epochs, settings.grace_period,
                                     settings.reduction_factor, floor=floor, seed=settings.seed),
            num_samples=settings.num_samples, trial_dirname_creator=namer, trial_name_creator=namer,
            reuse_actors=True),  # a finished trial's process takes the next: no new process, no torch import
        run_config=tune.RunConfig(
            name=name, storage_path=storage, failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            # the two best by val IoU, and the latest beside them (Ray always keeps it), so that the
            # checkpoints a kept copy of Ray Tune's state names (search.run.ray_internals.keep_tune_state)
            # are there a while longer; a trial's folder holds up to three
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="val_iou",
                                                    checkpoint_score_order="max"),
            verbose=0),  # the progress table (search.results.progress) instead of Ray's status tables
    )


def restore_or_build(resume: bool, retry_errored: bool, settings: Settings, profile: Profile, shards: str,
                     storage: str, name: str, study_file: Path, trial_s: float = 0.0, world=None):
    """A new tuner, or the saved search restored (its searcher, and so its study, included, and its
    scheduler's state: ``search.run.saved_states.SavedStates``; grown to ``settings.num_samples``
    where that is more than it had), with ``max_failures`` applied to every trial and the driver's
    callbacks (``search.run.driver.DriverCallback`` first).
    Ray's TensorBoard logger is replaced by ``search.results.board.TrialBoard``, and its output by
    ``search.results.progress.ProgressTable``. With a budget (``settings.budget_s``), the searcher's
    ``search.run.budget.BudgetLimiter`` gets it, with ``trial_s`` (one trial's expected device
    seconds), and ``BudgetStop`` stops running trials once it is spent. A simulated search
    (``settings.simulate``) gives its ``world`` (``search.run.simulate.World``): its trials and baselines."""
    from ray import tune

    from search.run.ray_internals import run_config as run_config_of, tune_config as tune_config_of
    from search.run.saved_states import name_callback_states

    experiment = f"{storage}/{name}"
    _tune_environment(study_file)
    baselines = _baselines(settings, profile, shards, storage, name, world)
    if resume and tune.Tuner.can_restore(experiment):  # its scheduler, with the floor it was given, is restored
        name_callback_states(experiment)  # a folder saved before states were kept by name
        tuner = tune.Tuner.restore(experiment, trainable=make_trainable(settings, profile, shards, world),
                                   resume_unfinished=True, resume_errored=retry_errored)
    else:  # a new search, or one stopped before Tune saved anything: it starts as saved
        tuner = build_tuner(settings, profile, shards, storage, name, study_file, floor=baselines["unet"],
                            trial_s=trial_s, world=world)
    # Ray Tune keeps the run config it was started with; what is given now applies to every trial
    tune_config, run_config = tune_config_of(tuner), run_config_of(tuner)
    tune_config.search_alg.grow_to, tune_config.search_alg.storage = settings.num_samples, storage
    tune_config.num_samples = settings.num_samples
    limiter = _apply_budget(tune_config, run_config, settings, trial_s, experiment)
    run_config.failure_config = tune.FailureConfig(max_failures=settings.max_failures)
    run_config.verbose = 0
    run_config.callbacks = _callbacks(settings, profile, storage, name, tune_config.scheduler, limiter)
    return tuner


def _tune_environment(study_file: Path) -> None:
    """Ray Tune's settings that this search runs with, and where a restored searcher reopens its study."""
    from search.run.study import STUDY_FILE_ENV

    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")  # saved often, so a killed driver loses little
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # a small num_to_keep wants it
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # its CSV and JSON loggers are given, not its TBX
    os.environ[STUDY_FILE_ENV] = str(study_file)


def _baselines(settings: Settings, profile: Profile, shards: str, storage: str, name: str, world) -> dict:
    """Copy-last-frame's val IoUs, known before the first trial (the scheduler's floor and TensorBoard's
    baselines), written as the experiment's TensorBoard runs where the storage is local (a cloud
    one gets them with the results)."""
    if world is not None:
        baselines = world.baselines
    else:
        from vidseg.baselines import copy_last_frame
        from vidseg.data.remote import cached_shards
        from vidseg.data.shards import ShardSet

        baselines = copy_last_frame(ShardSet.open(cached_shards(shards), verify=False))
    if not is_uri(storage):
        from search.results.board import write_board

        write_board(Path(storage) / name, profile, baselines, settings.max_epochs)
    return baselines


def _apply_budget(tune_config, run_config, settings: Settings, trial_s: float, experiment: str):
    """The budget given now (the saved one, or raised), counted from what was spent, on the searcher's
    limiter, and ``BudgetStop`` for the trials running when it is spent; the limiter (None for a
    search saved by a version without one, which a budget cannot bound)."""
    from search.run.budget import BudgetStop, budget_of

    limiter = budget_of(tune_config.search_alg)
    if limiter is None and settings.budget_s is not None:
        raise UsageError(f"{experiment} was started by a version that kept no budget: --budget cannot bound it")
    if limiter is not None:
        limiter.budget_s, limiter.trial_s = settings.budget_s, trial_s or limiter.trial_s
    run_config.stop = BudgetStop(limiter) if limiter is not None and settings.budget_s is not None else None
    return limiter


def _callbacks(settings: Settings, profile: Profile, storage: str, name: str, scheduler, limiter) -> list:
    """The driver's callbacks, ``SavedStates`` first: the one whose state Ray Tune saves (by its place
    in this list), holding the scheduler's and the progress table's states by name. The others may
    be added, removed or reordered freely."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from search.results.board import TrialBoard
    from search.results.progress import ProgressTable
    from search.run.driver import DriverCallback
    from search.run.saved_states import PLACE, SavedStates
    from search.run.schedulers import SchedulerState
    from search.run.stops import SpaceGuard, begin_search

    guard = None if is_uri(storage) else SpaceGuard(Path(storage) / name, settings.max_concurrent)
    begin_search()  # this process's stop path, clean for this search
    progress = ProgressTable(settings.max_epochs, settings.num_samples if settings.bounded else None, settings.scheduler,
                             stopped_by=limiter.stopped_by if limiter is not None else None)
    callbacks = [DriverCallback(settings.max_failures, f"{storage}/{name}", guard), progress, CSVLoggerCallback(),
                 JsonLoggerCallback(), TrialBoard(profile, settings.max_epochs)]
    callbacks.insert(PLACE, SavedStates(scheduler=SchedulerState(scheduler), progress=progress))
    return callbacks
