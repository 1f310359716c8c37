"""The search's steps, flags to results, that ``search/run_search.py`` runs: the search named and
held (``prepare_search``), its data (``prepare_data``), Ray and Tune (``search_on_ray``), what a stop
means (``stop_meaning``, ``as_stop``), the results (``report``), and the one place an ending becomes
its message and exit code (``ending``). What the search will cost, said before its first trial,
comes from ``search.tools.costing`` through ``Costing``.
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
from typing import Any, Protocol

from search.run import prepare, state, tuner
from search.run.resume import resume_command, resume_state
from search.run.settings import Settings
from search.run.state import SearchState
from search.run.stops import (SAVE_WATCH, STOP, DiskFull, SpaceGuard, Stopped, Terminated, no_space,
                              quiet_no_space_tracebacks, watch_signals)
from search.space import PROFILES, Profile, narrowed
from vidseg.errors import InputError

__all__ = ["Search", "Costing", "prepare_search", "prepare_data", "prepare_only", "fit_to", "before_the_first_trial",
           "search_on_ray", "last_save", "stop_meaning", "as_stop", "report", "ending"]

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


class Costing(Protocol):
    """What a search will cost, before its first trial (``search.tools.costing``)."""

    def world(self, search: Search) -> Any:
        """A simulated search's world (``search.run.simulate.World``), else None."""

    def new(self, search: Search) -> Any:
        """A new search's estimate (``search.tools.estimate.Estimate``), said; its budget checked."""

    def resumed(self, search: Search) -> tuple[Any, bool]:
        """A resumed search's estimate: the saved one, or one for its new size; and whether it is new."""


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


def fit_to(search: Search, shards: str) -> None:
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
        fit_to(search, prepare.prepare_shards(search.source, search.profile, search.settings.seed, None))


def prepare_only(search: Search) -> int:
    """``--prepare-only``: Ray starts only where shards remain to be made, for them."""
    if search.root is not None:
        search.shards = prepare.prepare_shards(search.source, search.profile, search.settings.seed, search.root,
                                               address=search.address)
        prepare.fit_space(search.profile, search.shards)  # what a search on them would leave out, said now
    print(f"shards ready: {search.shards}")
    return 0


def before_the_first_trial(search: Search) -> None:
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


def search_on_ray(search: Search, costing: Costing):
    """Ray up, the shards made on it (a new search from a dataset), its cost said (``costing``), the
    search saved, its trials run through Tune, Ray down. Returns Tune's results, or None for
    ``--estimate-only``; raises what the stop means (``stop_meaning``)."""
    import ray

    before_the_first_trial(search)  # before Ray starts: a refusal costs no Ray start-up
    tuner.init_ray(search.address)
    watch_signals()  # Ray's SIGTERM handler, set by its start-up, would exit 1 at once
    quiet_no_space_tracebacks()
    try:
        search.world = costing.world(search)
        settings = search.settings
        if not search.args.resume:
            search.settings = settings = tuner.detect_gpus(settings, search.address)
            if search.root is not None:
                fit_to(search, prepare.prepare_shards(search.source, search.profile, settings.seed, search.root))
            search.estimate = costing.new(search)  # said, fitted to the machine, its budget checked
            if search.args.estimate_only:
                return None
            search.saved = state.save_new(search.storage, search.name, search.settings, search.shards,
                                          search.args.hidden_answers, search.estimate.to_dict())
            search.shards, settings = search.saved.shards, search.settings
        elif search.saved.estimate:
            search.estimate, again = costing.resumed(search)
            if again:  # estimated again, for a grown search
                search.saved = dataclasses.replace(search.saved, estimate=search.estimate.to_dict())
                state.write_state(search.storage, search.name, search.saved)
        search.where = f"{search.storage}/{search.name}"  # the search's own files, from here on
        from search.results.durations import duration_text

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


def last_save(search: Search) -> tuple[bool, str]:
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
    if why is None and (len(results) >= search.settings.num_samples or (search.budget and search.budget.end_reason)):
        return  # every trial ran, or the budget ended it
    saved, lost = last_save(search)
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
        saved, lost = last_save(search) if search.trials_started and search.saved else (True, "")
        return Stopped(signum, search.command, saved, lost)
    lost = last_save(search)[1] if search.trials_started else ""
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
        budget = {"budget_s": settings.budget_s, "end_reason": search.budget.end_reason if search.budget else "",
                  "estimate_s": None, "estimate_range_s": None}
        if found is not None and found.budgeted_s is not None:  # the search as kept to its budget
            budget.update(estimate_s=found.budgeted_s, estimate_range_s=found.budgeted_range_s)
        elif found is not None and settings.bounded and not (search.budget and search.budget.end_reason):
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
