"""vidseg-search: find SimVP's configuration with Ray Tune, Optuna (TPE) and ASHA.

    python search/run_search.py                              # the embedded demo, on a local Ray
    python search/run_search.py --profile full --data DIR --address auto --gpu-memory-gb 22   # A10G workers
    python search/run_search.py --resume                     # continue the latest search
    tensorboard --logdir results                             # watch and compare trials
    optuna-dashboard results/NAME/optuna.journal             # the search's Optuna study

With no arguments it prepares the demo data under data/ (a synthetic dataset, segmented by the
UNet the project ships or, with --train-unet, by one trained here, into Arrow shards of masks;
each step is cached and reused), then runs a demo search on a local Ray instance: about 13-14
minutes on a 2-core CPU from a cold cache. `--data DIR` takes a real dataset root in
the competition layout instead, and `--shards DIR` an existing shard set (skipping the UNet).

Every trial trains SimVP on the shards and reports val IoU (of the target frame, the competition's metric)
each epoch. Optuna's TPE proposes trials, the paper's configurations that fit the
profile and the top teams' recipe among the first; ASHA stops weak ones early, and the Optuna study, stored with the results, records them
as pruned. Results go to STORAGE/NAME/: trial folders with TensorBoard events, leaderboard.csv,
report.md, best_config.json, the best checkpoint, a submission, optuna.journal and curves.parquet.

Input is checked before any trial starts: values of the space that the shards cannot run are left
out (one line each), and storage must be writable. Exit codes: 0 a trial completed; 1 every trial
failed (or a bug, with its traceback); 2 bad input, in one line; 130 Ctrl-C and 143 SIGTERM, with the
command that continues the search. A full disk ends it with one line naming the path (exit 2 before any
trial started, else 1), and the command that continues it once space is freed.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search.run import prepare, state, tuner  # noqa: E402
from search.run.resume import resume_command, resume_state  # noqa: E402
from search.run.settings import Settings, build_parser  # noqa: E402
from search.run.stops import (DiskFull, SpaceGuard, Stopped, Terminated, no_space,  # noqa: E402
                              quiet_no_space_tracebacks, watch_sigterm)
from search.space import PROFILES, narrowed  # noqa: E402
from vidseg.errors import InputError  # noqa: E402

log = logging.getLogger("vidseg.search")


def _before_the_first_trial(args, storage: str, name: str, settings: Settings, study_file: Path) -> None:
    """On resume, what a full disk may have cut short is mended (the journal's last record, Ray Tune's
    state files); then a local storage must have the reserve a search keeps free (``DiskFull`` if not)."""
    local = state.local_path(storage)
    if args.resume and study_file.is_file():
        from search.results.journal import trim_partial_record

        trim_partial_record(study_file)
    if args.resume and local is not None:
        from search.run.ray_internals import repair_tune_state

        damaged = repair_tune_state(local / name)
        if damaged:
            log.warning("Ray Tune's state in %s was cut short (%s): the search goes on from its last whole copy",
                        local / name, ", ".join(damaged))
    if local is not None:
        low = SpaceGuard(local / name, settings.max_concurrent).check(now=True)
        if low is not None:
            raise low.where(resume_command(storage, name, args.address), trials_started=False)


def run(args) -> int:
    """The search, flags to results: 0 a trial completed, 1 none did; InputError, Stopped (a signal),
    DiskFull."""
    import ray

    storage = state.storage_root(args.storage)
    address = args.address or os.environ.get("RAY_ADDRESS") or None
    if args.hidden_answers is not None:
        from vidseg.eval.score import read_answers

        read_answers(args.hidden_answers)  # a bad file is named now, not after the search
    if args.resume:
        name, saved = resume_state(args, storage)
        settings, shards = saved.settings, saved.shards
    else:
        settings, saved = Settings.from_args(args), None
        name = state.new_search(storage, args.name or f"simvp-{settings.profile}-{datetime.now():%Y-%m-%d_%H-%M-%S}",
                                probe=not args.prepare_only)
    profile, source = narrowed(PROFILES[settings.profile], settings.limits), prepare.DataSource.from_args(args)
    tuner.check_address(address)  # before any data work
    where = str((args.data_dir or prepare.DATA_DIR) if source.shards is None else source.shards)  # written now
    trials_started = False
    try:
        root = None if args.resume else prepare.prepare_dataset(source, profile, settings.seed)
        if not args.resume and root is None:  # --shards: checked against the space before Ray starts
            shards = prepare.prepare_shards(source, profile, settings.seed, None)
            profile, limits = prepare.fit_space(profile, shards)
            settings = settings.replace(limits=limits)
        if args.prepare_only:  # no search: Ray starts only where shards remain to be made, for them
            if root is not None:
                shards = prepare.prepare_shards(source, profile, settings.seed, root, address=address)
                prepare.fit_space(profile, shards)  # what a search on them would leave out, said now
            print(f"shards ready: {shards}")
            return 0
        tuner.init_ray(address)
        watch_sigterm()  # Ray's handler, set by its start-up, would exit 1 at once
        quiet_no_space_tracebacks()
        try:
            if not args.resume:
                settings = tuner.detect_gpus(settings, address)
                if root is not None:
                    shards = prepare.prepare_shards(source, profile, settings.seed, root)
                    profile, limits = prepare.fit_space(profile, shards)
                    settings = settings.replace(limits=limits)
            where = f"{storage}/{name}"  # the search's own files, from here on
            if not args.resume:
                saved = state.save_new(storage, name, settings, shards, args.hidden_answers)
                shards = saved.shards
            log.info("[4/4] search %s: %d trials of up to %d epochs, %d at a time, %s", name, settings.num_samples,
                     settings.max_epochs, settings.max_concurrent, settings.scheduler if settings.scheduler == "fifo"
                     else f"{settings.scheduler} grace {settings.grace_period}, factor {settings.reduction_factor}")
            study_file = state.study_path(storage, name)
            _before_the_first_trial(args, storage, name, settings, study_file)
            search, callback = tuner.restore_or_build(args.resume, args.retry_errored, settings, profile, shards,
                                                      storage, name, study_file)
            started, trials_started = time.perf_counter(), True
            try:
                results = search.fit()
            except Exception:  # noqa: BLE001 - Ray Tune, failing on the full disk it was stopped for
                if isinstance(callback.stopped, DiskFull):
                    raise callback.stopped.where(resume_command(storage, name, args.address), True) from None
                raise
            if threading.current_thread() is threading.main_thread():  # Tune leaves its handlers behind
                signal.signal(signal.SIGINT, signal.default_int_handler)
                watch_sigterm()
            if isinstance(callback.stopped, DiskFull):  # Tune saved its state and stopped the trials
                raise callback.stopped.where(resume_command(storage, name, args.address), trials_started=True)
            if callback.stopped == signal.SIGTERM:
                raise Terminated
            if callback.stopped is not None or len(results) < settings.num_samples:
                raise KeyboardInterrupt  # Tune saved its state and stopped the trials
            log.info("search finished in %.0f s", time.perf_counter() - started)
            from search.results.report import no_trial_completed, write_results

            out, rows = write_results(results, settings.to_dict(), shards, f"{storage}/{name}", saved.hidden_answers,
                                      study_file=study_file)
        finally:
            ray.shutdown()
    except KeyboardInterrupt as err:
        raise Stopped(signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT,
                      resume_command(storage, name, args.address) if saved else None) from None
    except (DiskFull, InputError):
        raise
    except Exception as err:  # noqa: BLE001 - a full disk, however it reached us; anything else goes on up
        full = no_space(err)
        if full is None:
            raise
        raise DiskFull(full.filename or where, resume_command(storage, name, args.address) if saved else None,
                       trials_started) from None
    print(f"\nresults: {out}\n  best config: {out}/best_config.json   report: {out}/report.md   "
          f"leaderboard: {out}/leaderboard.csv\n  watch and compare trials: tensorboard --logdir {out} (all searches: --logdir {args.storage})\n"
          f"  the Optuna study: optuna-dashboard {study_file}")
    failed = no_trial_completed(rows, out)
    if failed:
        print(failed, file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 the search finished and a trial completed; 1 every trial failed, or a bug (with
    its traceback); 2 bad input, in one line; 130 Ctrl-C and 143 SIGTERM, with the command that
    continues; a full disk: one line naming the path, 2 before any trial started, else 1."""
    args = build_parser("python search/run_search.py", __doc__).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    watch_sigterm()
    try:
        return run(args)
    except DiskFull as err:
        print(err.message(), file=sys.stderr)
        return err.exit_code
    except InputError as err:  # the project's own checks: they name the file, flag or value
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if no_space(err) is not None:  # before the search's storage was known
            print(DiskFull(err.filename or Path.cwd()).message(), file=sys.stderr)
            return 2
        if err.filename is None:  # not about a file the user gave: a bug, or the machine; keep its traceback
            raise
        print(f"error: {err.filename}: {err.strerror or err}", file=sys.stderr)
        return 2
    except (Stopped, KeyboardInterrupt) as err:
        if not isinstance(err, Stopped):
            err = Stopped(signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT, None)
        print(err.message(), file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
