"""vidseg-search: find SimVP's configuration with Ray Tune, Optuna (TPE) and ASHA.

    python search/run_search.py                              # the embedded demo, on a local Ray
    python search/run_search.py --profile full --data DIR --address auto --gpu-memory-gb 22   # A10G workers
    python search/run_search.py --resume                     # continue the latest search
    tensorboard --logdir results                             # watch and compare trials
    optuna-dashboard results/NAME/optuna.journal             # the search's Optuna study

With no arguments it prepares the demo data under data/ (a synthetic dataset, segmented by the
UNet the project ships or, with --train-unet, by one trained here, into Arrow shards of masks;
each step is cached and reused), then runs a demo search on a local Ray instance, within 12
minutes of its start on a 2-core CPU from a cold cache: where its estimate says the search would
end later (a CPU without bf16), it runs with the device-time budget that ends it in time, and says
so. `--data DIR` takes a real dataset root in
the competition layout instead, and `--shards DIR` an existing shard set (skipping the UNet).

Every trial trains SimVP on the shards and reports val IoU (of the target frame, the competition's metric)
each epoch. Optuna's TPE proposes trials, the paper's configurations that fit the
profile and the top teams' recipe among the first; ASHA stops weak ones early, and the Optuna study, stored with the results, records them
as pruned. Results go to STORAGE/NAME/: trial folders with TensorBoard events, leaderboard.csv,
report.md, best_config.json, the best checkpoint, a submission, optuna.journal and curves.parquet.

Before the first trial it says what the search will cost in device time (a trial's GPU share, or
its CPUs, x the wall seconds it holds them): a short probe of the reference configurations and of a
random draw of the space on the device at hand (the cost model's figures for simulated trials and
for GPUs not up yet), and a replay of the scheduler (--estimate-only stops there).
--budget DURATION bounds that device time: no trial starts that would overrun it, and the report
says what it bought, with the fronts of val IoU against cost and the cheapest near-best configurations.

Input is checked before any trial starts: values of the space that the shards cannot run are left
out (one line each), and storage must be writable. Exit codes: 0 a trial completed; 1 every trial
failed (or a bug, with its traceback); 2 bad input, in one line; 130 Ctrl-C and 143 SIGTERM, with the
command that continues the search. A full disk ends it with one line naming the path (exit 2 before any
trial started, else 1), and the command that continues it once space is freed.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search.run import prepare, state, tuner  # noqa: E402
from search.run.resume import resume_command, resume_state  # noqa: E402
from search.run.settings import Settings, build_parser  # noqa: E402
from search.run.state import SearchState  # noqa: E402
from search.run.stops import (SAVE_WATCH, STOP, DiskFull, SpaceGuard, Stopped, Terminated, no_space,  # noqa: E402
                              quiet_no_space_tracebacks, watch_signals)
from search.space import PROFILES, Profile, narrowed  # noqa: E402
from vidseg.errors import InputError  # noqa: E402

log = logging.getLogger("vidseg.search")


@dataclass
class Search:
    """What the steps of ``run`` share: which search, its settings and shards, and how far it got."""

    args: argparse.Namespace
    storage: str
    name: str
    address: str | None
    settings: Settings
    saved: SearchState | None  # None until search.json is written
    shards: str | None
    profile: Profile
    source: prepare.DataSource
    where: str  # what a full disk met now would be about
    root: Path | None = None  # the dataset root, where shards are still to be made from it
    trials_started: bool = False
    started: float = dataclasses.field(default_factory=time.perf_counter)  # the command's start, about
    estimate: Any = None  # search.tools.estimate.Estimate: what it is expected to cost
    world: Any = None  # search.run.simulate.World: a simulated search's trials (--simulate)
    budget: Any = None  # search.run.budget.BudgetLimiter: what it spent, and whether its budget ended it
    hold: Any = None  # search.run.lock.Hold: this driver's hold on STORAGE/NAME (None: it writes nothing there)

    @property
    def command(self) -> str | None:
        """The command that continues the search; None before it is saved."""
        return resume_command(self.storage, self.name, self.args.address) if self.saved else None

    @property
    def study_file(self) -> Path:
        return state.study_path(self.storage, self.name)


def prepare_search(args) -> Search:
    """Flags to a named search with its settings, checked before any data work: a resumed search's
    saved state, or a new name in a writable storage; held by this driver (``search.run.lock``)
    where it writes there."""
    storage = state.storage_root(args.storage)
    if args.hidden_answers is not None:
        from vidseg.eval.score import read_answers

        read_answers(args.hidden_answers)  # a bad file is named now, not after the search
    if args.resume:
        name, saved, held = resume_state(args, storage)
        settings, shards = saved.settings, saved.shards
    else:
        settings, saved, shards = Settings.from_args(args), None, None
        name = state.new_search(storage, args.name or f"simvp-{settings.profile}-{datetime.now():%Y-%m-%d_%H-%M-%S}",
                                probe=not (args.prepare_only or args.estimate_only))
        held = None
        if not (args.prepare_only or args.estimate_only):  # these write nothing there
            from search.run.lock import hold

            held = hold(storage, name)
    try:
        source = prepare.DataSource.from_args(args)
        address = args.address or os.environ.get("RAY_ADDRESS") or None
        tuner.check_address(address)  # before any data work
        where = str((args.data_dir or prepare.DATA_DIR) if source.shards is None else source.shards)
        return Search(args, storage, name, address, settings, saved, shards,
                      narrowed(PROFILES[settings.profile], settings.limits), source, where, hold=held)
    except BaseException:
        if held is not None:
            held.release()
        raise


def _fit_to(search: Search, shards: str) -> None:
    search.shards = shards
    search.profile, limits = prepare.fit_space(search.profile, shards)
    search.settings = search.settings.replace(limits=limits)


def prepare_data(search: Search) -> None:
    """A new search's data, as far as it goes without Ray: the dataset (generated for the demo) and,
    for ``--shards``, the shards checked against the space."""
    if search.args.resume or search.settings.simulate:  # a simulated search trains on nothing
        return
    search.root = prepare.prepare_dataset(search.source, search.profile, search.settings.seed)
    if search.root is None:
        _fit_to(search, prepare.prepare_shards(search.source, search.profile, search.settings.seed, None))


def prepare_only(search: Search) -> int:
    """``--prepare-only``: Ray starts only where shards remain to be made, for them."""
    if search.root is not None:
        search.shards = prepare.prepare_shards(search.source, search.profile, search.settings.seed, search.root,
                                               address=search.address)
        prepare.fit_space(search.profile, search.shards)  # what a search on them would leave out, said now
    print(f"shards ready: {search.shards}")
    return 0


def estimate_cost(search: Search):
    """What the search is expected to cost (``search.tools.estimate``), probed on the device the
    trials get; where the profile is for GPUs and none is here (``--estimate-only`` without a
    cluster), from ``ASSUMED_GPU``'s rate and the profile's video counts, said in one line."""
    from search.tools.estimate import ASSUMED_GPU, estimate, probe_on_workers
    from search.space import train_config

    settings, profile = search.settings, search.profile
    trials = settings.num_samples if settings.bounded else None
    if settings.simulate:
        return _simulated_estimate(search, trials)
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
                    probed=probed, capacity=_capacity(settings))


def _simulated_estimate(search: Search, trials: int | None):
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
                    None, "simulated trials' cost model", trials, curves=world.curves(), capacity=_capacity(settings))


def _capacity(settings) -> float | None:
    """What the trials' shares are shares of, in the cluster that Ray has up now: its GPUs (where the
    trials ask for GPU shares), else its CPUs; None without Ray."""
    import ray

    if not ray.is_initialized():
        return None
    return ray.cluster_resources().get("GPU" if settings.gpu_memory_gb is not None else "CPU") or None


def _said(found) -> None:
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
    from vidseg.train.cost import duration_text

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


def _gpu_profile_without_gpu(search: Search) -> bool:
    """A profile for GPUs, with no GPU to probe: no cluster named, and none in this machine."""
    import torch

    return (search.profile.fixed.get("device", "auto") != "cpu" and search.address is None
            and search.source.shards is None and not torch.cuda.is_available())


def _before_the_first_trial(search: Search) -> None:
    """On resume, what a full disk may have cut short is mended (the journal's last record, Ray Tune's
    state files); then a local storage must have the reserve a search keeps free (``DiskFull`` if not)."""
    local = state.local_path(search.storage)
    if search.args.resume and search.study_file.is_file():
        from search.results.journal import trim_partial_record

        trim_partial_record(search.study_file)
    if search.args.resume and local is not None:
        from search.run.ray_internals import repair_tune_state

        repair_tune_state(local / search.name)
    if local is not None:
        low = SpaceGuard(local / search.name, search.settings.max_concurrent).check(now=True)
        if low is not None:
            raise low.where(search.command, trials_started=False)


def search_on_ray(search: Search):
    """Ray up, the shards made on it (a new search from a dataset), the search saved, its trials run
    through Tune, Ray down. Returns Tune's results; raises what the stop means (``stop_meaning``)."""
    import ray

    _before_the_first_trial(search)  # before Ray starts: a refusal costs no Ray start-up
    tuner.init_ray(search.address)
    watch_signals()  # Ray's SIGTERM handler, set by its start-up, would exit 1 at once
    quiet_no_space_tracebacks()
    try:
        settings = search.settings
        if settings.simulate:  # the simulated trials' world: the same settings build the same one
            from search.tools.simulation import build_world

            search.world = build_world(search.profile, settings, dict(search.profile.counts))
        if not search.args.resume:
            search.settings = settings = tuner.detect_gpus(settings, search.address)
            if search.root is not None:
                _fit_to(search, prepare.prepare_shards(search.source, search.profile, settings.seed, search.root))
            from search.tools.estimate import check_budget

            search.estimate = estimate_cost(search)
            _said(search.estimate)
            if fit_the_machine(search):  # the scheduler replayed again, kept to that budget (nothing probed again)
                search.estimate = estimate_cost(search)
                for line in search.estimate.kept_lines():
                    log.info("%s", line)
            check_budget(search.estimate)  # a budget that covers no whole trial: refused, nothing saved
            if search.args.estimate_only:
                return None
            search.saved = state.save_new(search.storage, search.name, search.settings, search.shards,
                                          search.args.hidden_answers, search.estimate.to_dict())
            search.shards, settings = search.saved.shards, search.settings
        elif search.saved.estimate:
            _estimate_again_if_grown(search)
        search.where = f"{search.storage}/{search.name}"  # the search's own files, from here on
        from vidseg.train.cost import duration_text

        log.info("[4/4] search %s: %s of up to %d epochs, %d at a time, %s%s", search.name,
                 f"{settings.num_samples} trials" if settings.bounded else "trials", settings.max_epochs,
                 settings.max_concurrent, settings.scheduler if settings.scheduler == "fifo"
                 else f"{settings.scheduler} grace {settings.grace_period}, factor {settings.reduction_factor}",
                 "" if settings.budget_s is None else f", a budget of {duration_text(settings.budget_s)} of device time")
        fit = tuner.restore_or_build(search.args.resume, search.args.retry_errored, settings, search.profile,
                                     search.shards, search.storage, search.name, search.study_file,
                                     search.estimate.trial_s if search.estimate is not None else 0.0, search.world)
        from search.run.budget import budget_of
        from search.run.ray_internals import tune_config as tune_config_of

        search.budget = budget_of(tune_config_of(fit).search_alg)
        started, search.trials_started = time.perf_counter(), True
        try:
            results = fit.fit()
        finally:
            STOP.armed = False
        stop_meaning(search, results)
        log.info("search finished in %.0f s", time.perf_counter() - started)
        return results
    finally:
        ray.shutdown()


def _estimate_again_if_grown(search: Search) -> None:
    """A resumed search's estimate: the saved one; for a search grown to more trials (``--resume
    --num-samples``), estimated again for its new size from the saved probe's figures (probed again
    where an older search.json has none), said, and saved."""
    from search.tools.estimate import Estimate

    settings = search.settings
    search.estimate = Estimate.from_dict({**search.saved.estimate, "budget_s": settings.budget_s})
    if not settings.bounded or search.estimate.trials in (None, settings.num_samples):
        return
    log.info("the estimate again, for the search grown from %d to %d trials:", search.estimate.trials,
             settings.num_samples)
    search.estimate = estimate_cost(search)
    _said(search.estimate)
    search.saved = dataclasses.replace(search.saved, estimate=search.estimate.to_dict())
    state.write_state(search.storage, search.name, search.saved)


def _last_save(search: Search) -> tuple[bool, str]:
    """Whether Ray Tune's last save of the search completed, and if not, why."""
    if STOP.cut_short:
        return False, "a second signal stopped it at once"
    if SAVE_WATCH.failed:
        return False, SAVE_WATCH.failed
    local = state.local_path(search.storage)
    if local is not None:
        from search.run.ray_internals import damaged_tune_state, unsynced_tune_state

        damaged = damaged_tune_state(local / search.name)
        if damaged:
            return False, f"{', '.join(damaged)} cut short"
        unsynced = unsynced_tune_state(local / search.name, SAVE_WATCH.staging) if SAVE_WATCH.staging else []
        if unsynced:
            return False, f"{', '.join(unsynced)} not copied to storage"
    return True, ""


def stop_meaning(search: Search, results) -> None:
    """What a search that Tune ended means: nothing where every trial ran; else ``DiskFull`` or
    ``Stopped`` (a signal; Tune stopped by a SIGUSR1 from elsewhere counts as Ctrl-C), saying
    whether Tune's last save completed."""
    why = STOP.why
    if why is None and (len(results) >= search.settings.num_samples or (search.budget and search.budget.ended)):
        return  # every trial ran, or the budget ended it
    saved, lost = _last_save(search)
    if isinstance(why, DiskFull):
        raise why.where(search.command, trials_started=True, lost=lost)
    raise Stopped(why if why in (signal.SIGINT, signal.SIGTERM) else signal.SIGINT, search.command, saved, lost)


def as_stop(search: Search, err: BaseException) -> BaseException:
    """An exception out of the steps as what it means for the search: ``Stopped`` (a signal),
    ``DiskFull`` (however a full disk reached us), or itself (bad input, or a bug)."""
    if isinstance(err, (Stopped, DiskFull, InputError)):
        return err
    if isinstance(err, KeyboardInterrupt):  # outside Tune's loop, or a second signal in it
        signum = STOP.why if STOP.why in (signal.SIGINT, signal.SIGTERM) else \
            signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT
        saved, lost = _last_save(search) if search.trials_started and search.saved else (True, "")
        return Stopped(signum, search.command, saved, lost)
    lost = _last_save(search)[1] if search.trials_started else ""
    if isinstance(STOP.why, DiskFull):  # Ray Tune, failing on the full disk it was stopped for
        return STOP.why.where(search.command, trials_started=True, lost=lost)
    full = no_space(err)
    if full is not None:
        return DiskFull(full.filename or search.where, search.command, search.trials_started, lost=lost)
    return err


def report(search: Search, results) -> int:
    """The finished search's results written and named; 0 where a trial completed, else 1."""
    from search.results.report import no_trial_completed, write_results

    folder = f"{search.storage}/{search.name}"
    try:
        found, settings = search.estimate, search.settings
        budget = {"budget_s": settings.budget_s, "ended": search.budget.ended if search.budget else "",
                  "estimate_s": None, "estimate_range_s": None}
        if found is not None and found.budgeted_s is not None:  # the search as kept to its budget
            budget.update(estimate_s=found.budgeted_s, estimate_range_s=found.budgeted_range_s)
        elif found is not None and settings.bounded and not (search.budget and search.budget.ended):
            budget.update(estimate_s=found.expected_s, estimate_range_s=found.expected_range_s)  # the whole search
        world = search.world
        out, rows = write_results(results, search.settings.to_dict(), search.shards, folder,
                                  search.saved.hidden_answers, study_file=search.study_file, budget=budget,
                                  baselines=world.baselines if world is not None else None)
    except BaseException as err:  # noqa: BLE001 - a signal or a full disk, however it reached us; a bug goes on up
        meant = as_stop(search, err)
        if meant is err:
            raise
        raise meant from None
    print(f"\nresults: {out}\n  best config: {out}/best_config.json   report: {out}/report.md   "
          f"leaderboard: {out}/leaderboard.csv\n  watch and compare trials: tensorboard --logdir {out} (all searches: "
          f"--logdir {search.args.storage})\n  the Optuna study: optuna-dashboard {search.study_file}")
    failed = no_trial_completed(rows, out)
    if failed:
        print(failed, file=sys.stderr)
        return 1
    return 0


def run(args) -> int:
    """The search, flags to results: 0 a trial completed, 1 none did; raises InputError, Stopped (a
    signal) or DiskFull, which ``ending`` turns into a message and an exit code."""
    search = prepare_search(args)
    try:
        if args.estimate_only and not args.resume and _gpu_profile_without_gpu(search):
            _said(estimate_cost(search))  # nothing to probe: no data needed
            return 0
        prepare_data(search)
        if args.prepare_only:
            return prepare_only(search)
        results = search_on_ray(search)
        if results is None:  # --estimate-only: said, and nothing trained
            return 0
    except BaseException as err:  # noqa: BLE001 - what it means, or itself
        meant = as_stop(search, err)
        if meant is err:
            raise
        raise meant from None
    else:
        return report(search, results)
    finally:
        if search.hold is not None:
            search.hold.release()  # however the driver ends


def ending(err: BaseException) -> tuple[str, int] | None:
    """The one place an ending other than the search's own becomes its message and exit code; None
    for a bug (it keeps its traceback)."""
    if isinstance(err, (DiskFull, Stopped)):
        return err.message(), err.exit_code
    if isinstance(err, KeyboardInterrupt):  # before the search was named
        return ending(Stopped(signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT, None))
    if isinstance(err, InputError):  # the project's own checks: they name the file, flag or value
        return f"error: {err}", 2
    if isinstance(err, OSError) and no_space(err) is not None:  # before the search's storage was known
        return DiskFull(err.filename or Path.cwd()).message(), 2
    if isinstance(err, OSError) and err.filename is not None:  # a file the user gave
        return f"error: {err.filename}: {err.strerror or err}", 2
    return None  # not about a file the user gave: a bug, or the machine; keep its traceback


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 the search finished and a trial completed; 1 every trial failed, or a bug (with
    its traceback); 2 bad input, in one line; 130 Ctrl-C and 143 SIGTERM, with the command that
    continues; a full disk: one line naming the path, 2 before any trial started, else 1."""
    args = build_parser("python search/run_search.py", __doc__).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    watch_signals()
    try:
        return run(args)
    except BaseException as err:  # noqa: BLE001 - ending() says which
        ended = ending(err)
        if ended is None:
            raise
        print(ended[0], file=sys.stderr)
        return ended[1]


if __name__ == "__main__":
    raise SystemExit(main())
