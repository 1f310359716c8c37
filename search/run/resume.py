"""What ``--resume`` may change, and the command that resumes an interrupted search.

A resumed search continues exactly as it was started: its settings, space and shards are read
back from ``search.json``, and a flag that would change them is refused, naming it (a flag given
with the same value as saved is fine). These flags may change on resume, and are applied:

- ``--max-failures``: retries of a trial whose worker died, for the trials to come and the ones
  restored;
- ``--num-samples N``, larger than saved: the search grows to N trials, finished or not. The new
  trials come from the same Optuna study (TPE goes on from its history), the scheduler's rungs
  hold the earlier trials, and the leaderboard, report and study cover them all. A smaller N is
  refused: a search never shrinks;
- ``--address``: the cluster to continue on; ``--storage`` and ``--name``: which search;
- ``--retry-errored``: errored trials start again from their last checkpoints;
- ``--hidden-answers``: the answers the final report scores the hidden split against.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidseg.errors import InputError
from vidseg.data.remote import is_uri

if TYPE_CHECKING:
    from search.run.lock import Hold
    from search.run.state import SearchState

__all__ = ["SEARCH_FLAGS", "DATA_FLAGS", "check_resume_flags", "resume_command", "resume_state"]

log = logging.getLogger("vidseg.search")

# flag dest -> settings key: the flags that define a search, compared with the saved settings
SEARCH_FLAGS = {"profile": "profile", "num_samples": "num_samples", "max_epochs": "max_epochs",
                "grace_period": "grace_period", "reduction_factor": "reduction_factor",
                "max_concurrent": "max_concurrent", "searcher": "searcher", "scheduler": "scheduler",
                "seed": "seed", "gpu_memory_gb": "gpu_memory_gb", "simulate": "simulate", "time_scale": "time_scale"}
# flags that only prepare data, which a resumed search already has
DATA_FLAGS = ("data", "data_dir", "workers", "prepare_only", "train_unet")


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_resume_flags(args: argparse.Namespace, state: dict[str, Any], where: str,
                       defaults: dict[str, Any] | None = None) -> None:
    """Refuse, naming it, any flag given with ``--resume`` that would change the saved search
    (``defaults``: the values of settings that an older ``search.json`` lacks)."""
    defaults = defaults or {}
    settings = {**defaults, **state["settings"]}
    if args.smoke_test and settings["profile"] != "smoke":
        raise InputError(f"--smoke-test conflicts with the saved search {where} (profile {settings['profile']}); "
                         "--resume continues a search as it was started")
    for dest, key in SEARCH_FLAGS.items():
        given = getattr(args, dest)
        if dest == "num_samples" and given is not None and given < settings[key]:
            raise InputError(f"--num-samples {given} is fewer than the saved search {where} has (--num-samples "
                             f"{settings[key]}): --resume grows a search, never shrinks it; drop the flag, or give "
                             "a larger number")
        if dest == "num_samples" and given is not None and given > settings[key]:
            continue  # grows the search (resume_state)
        if dest == "simulate" and given == "" and settings.get(key):
            continue  # --simulate with no table: the one the simulated search has
        if given is not None and given != settings.get(key):
            raise InputError(f"{_flag(dest)} {given} conflicts with the saved search {where} ({_flag(dest)} "
                             f"{settings.get(key)}); --resume continues a search as it was started: drop the flag, "
                             "or start a new search with another --name")
    if args.shards is not None:
        given = args.shards if is_uri(args.shards) else str(Path(args.shards).resolve())
        if given not in (state["shards"], state.get("shards_source")):  # as given, or as published to the bucket
            raise InputError(f"--shards {args.shards} conflicts with the saved search {where} (its shards: "
                             f"{state.get('shards_source') or state['shards']})")
    for dest in DATA_FLAGS:
        if getattr(args, dest) not in (None, False):
            raise InputError(f"{_flag(dest)} has no effect with --resume: the search {where} has its shards already")


def resume_command(storage: str, name: str, address: str | None = None) -> str:
    """The exact command that continues the search ``name`` in ``storage``."""
    script = sys.argv[0] if sys.argv[0].endswith("run_search.py") else "search/run_search.py"
    words = ["python", script, "--resume", "--storage", storage, "--name", name]
    if address:
        words += ["--address", address]
    return shlex.join(words)


def resume_state(args: argparse.Namespace, storage: str) -> tuple[str, SearchState, Hold]:
    """The name and saved state of the search ``--resume`` continues, with what it may change
    applied and saved back (so that a later resume keeps it), and this driver's hold on it
    (``search.run.lock``), taken before anything is written. Raises InputError, naming the flag or
    the file, or the driver that holds the search."""
    from search.run.lock import hold
    from search.run.settings import Settings
    from search.run.state import check_format, check_storage, latest_experiment, read_state, write_state

    if args.max_failures is not None and args.max_failures < 0:
        raise InputError(f"--max-failures is {args.max_failures}, but must be >= 0")
    if args.estimate_only:
        raise InputError("--estimate-only estimates a new search; a resumed one's is in its search.json and "
                         "report.md")
    name = args.name or latest_experiment(storage)
    state = read_state(storage, name)
    if state is None:
        raise InputError(f"{storage}/{name}: no search to resume here")
    check_format(storage, name, state)
    check_resume_flags(args, {"settings": state.settings.to_dict(), "shards": state.shards,
                              "shards_source": state.shards_source}, f"{storage}/{name}", Settings.defaults())
    check_storage(storage)
    held = hold(storage, name)  # before anything is written
    try:
        settings = state.settings
        if args.max_failures is not None:
            settings = settings.replace(max_failures=args.max_failures)
        if args.num_samples is not None and args.num_samples > settings.num_samples:
            log.info("growing %s from %d to %d trials", name, settings.num_samples, args.num_samples)
            settings = settings.replace(num_samples=args.num_samples)
        if args.budget is not None:
            from search.results.durations import duration_text, parse_duration

            budget = parse_duration(args.budget)
            if settings.budget_s is not None and budget < settings.budget_s:
                raise InputError(f"--budget {args.budget} is less than the saved search {storage}/{name} has "
                                 f"(--budget {duration_text(settings.budget_s)}): --resume raises a budget, never "
                                 "lowers it; drop the flag, or give a larger one")
            if budget != settings.budget_s:
                log.info("the budget of %s: %s (it was %s)", name, duration_text(budget),
                         "none" if settings.budget_s is None else duration_text(settings.budget_s))
            settings = settings.replace(budget_s=budget)
        hidden = str(args.hidden_answers.resolve()) if args.hidden_answers is not None else state.hidden_answers
        if hidden and not Path(hidden).is_file():
            log.warning("%s: the hidden answers given when the search started are not on this machine; the report "
                        "will not score the hidden split (give --hidden-answers again)", hidden)
            hidden = None
        state = dataclasses.replace(state, settings=settings, hidden_answers=hidden)
        write_state(storage, name, state)
    except BaseException:
        held.release()
        raise
    log.info("resuming %s (%s profile) from %s", name, settings.profile, storage)
    return name, state, held
