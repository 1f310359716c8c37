"""A search's settings: the command line, and the frozen ``Settings`` it resolves to.

``Settings`` is what a search is: the profile, its budget, the scheduler and the searcher. The
flags override the profile's defaults; ``search.json`` keeps the settings (``to_dict``), and
``--resume`` reads them back (``from_dict``; a file written before a field existed takes the
field's default).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.space import PROFILES
from vidseg.errors import InputError
from search.results.durations import parse_duration
from vidseg.task import FRAME_SIZE, TARGET

__all__ = ["Settings", "UsageError", "build_parser", "SCHEDULERS", "SEARCHERS", "UNBOUNDED"]

SCHEDULERS = ("asha", "pasha", "hyperband", "fifo")
UNBOUNDED = 1_000_000  # num_samples of a search bounded by its --budget alone
SEARCHERS = ("tpe", "random")


class UsageError(InputError):
    """Bad input: printed as one line, exit code 2."""


@dataclass(frozen=True)
class Settings:
    """One search's settings (the profile's defaults, overridden by flags)."""

    profile: str
    num_samples: int
    max_epochs: int
    grace_period: int
    reduction_factor: int
    max_concurrent: int
    max_failures: int = 2  # retries of a trial whose worker died
    seed: int = 0
    searcher: str = "tpe"
    scheduler: str = "asha"
    gpu_memory_gb: float | None = None  # one GPU of the cluster; None: CPUs only (or not yet detected)
    budget_s: float | None = None  # device seconds the search may spend (--budget); None: no bound
    simulate: str | None = None  # simulated trials (search.run.simulate): the learning-curve table they draw from
    time_scale: float = 1.0  # a simulated trial's seconds per wall second
    limits: dict[str, Any] | None = field(default=None, compare=False)  # the space narrowed to the shards

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        """The flags over the profile's defaults. Raises UsageError, naming the flag."""
        for name in ("num_samples", "max_epochs", "grace_period", "max_concurrent", "workers"):
            _at_least(args, name, 1)
        _at_least(args, "reduction_factor", 2)
        _at_least(args, "max_failures", 0)
        _at_least(args, "seed", 0)
        if args.retry_errored:
            raise UsageError("--retry-errored retries the errored trials of a saved search: give it with --resume")
        if args.profile and args.smoke_test and args.profile != "smoke":
            raise UsageError(f"--smoke-test runs the smoke profile, not --profile {args.profile}")
        if args.data is not None and args.shards is not None:
            raise UsageError("give --data or --shards, not both")
        if args.gpu_memory_gb is not None and args.gpu_memory_gb <= 0:
            raise UsageError(f"--gpu-memory-gb is {args.gpu_memory_gb}, but must be > 0")
        profile = PROFILES[args.profile or ("smoke" if args.smoke_test else "demo")]
        given = {name: getattr(args, name) for name in cls.flag_names() if getattr(args, name, None) is not None}
        if getattr(args, "time_scale", None) is not None and not args.time_scale > 0:
            raise UsageError(f"--time-scale is {args.time_scale}, but must be > 0")
        if getattr(args, "simulate", None) is not None:
            if args.data is not None or args.shards is not None:
                raise UsageError("--simulate trains nothing: give it without --data or --shards")
            from search.run.simulate import table_path

            table = table_path(profile, args.simulate)
            if not table.is_file():
                raise UsageError(f"--simulate {args.simulate}: no such learning-curve table")
            given["simulate"] = str(table)
        elif getattr(args, "time_scale", None) is not None:
            raise UsageError("--time-scale scales simulated trials: give it with --simulate")
        if getattr(args, "budget", None) is not None:
            given["budget_s"] = parse_duration(args.budget)
            if args.num_samples is None:  # the budget alone: trials are drawn until it is spent
                given["num_samples"] = UNBOUNDED
        defaults = {name: getattr(profile, name) for name in
                    ("num_samples", "max_epochs", "grace_period", "reduction_factor", "max_concurrent", "scheduler")}
        settings = cls(**{"profile": profile.name, **defaults, **given})
        if settings.grace_period > settings.max_epochs:
            raise UsageError(f"--grace-period {settings.grace_period} is more than --max-epochs {settings.max_epochs}")
        return settings

    @staticmethod
    def flag_names() -> tuple[str, ...]:
        """The fields a flag of the same name sets."""
        return tuple(f.name for f in dataclasses.fields(Settings) if f.name not in ("profile", "limits", "budget_s"))

    @property
    def bounded(self) -> bool:
        """Whether the trial count bounds the search (not a budget alone)."""
        return self.num_samples < UNBOUNDED

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> Settings:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The fields' defaults: what a search.json written before a field existed means."""
        return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _at_least(args: argparse.Namespace, name: str, minimum: int) -> None:
    value = getattr(args, name, None)
    if value is not None and value < minimum:
        raise UsageError(f"--{name.replace('_', '-')} is {value}, but must be >= {minimum}")


def build_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """The search's command line; ``doc``'s first paragraph is the description, the rest the epilog."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0], epilog=doc.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _where_flags(parser.add_argument_group("data and cluster"))
    search = parser.add_argument_group("search (defaults come from the profile)")
    _scale_flags(search)
    _scheduling_flags(search)
    _run_flags(search)
    _rehearsal_flags(parser.add_argument_group("rehearsal (docs/cluster.md)"))
    search.add_argument("--smoke-test", action="store_true",
                        help="a tiny run (the smoke profile: a few videos, a few trials), for tests")
    return parser


def _where_flags(where) -> None:
    """Where the data, the cluster and the results are."""
    where.add_argument("--data", type=Path, default=None,
                       help="a dataset root in the competition layout (default: generate the demo set)")
    where.add_argument("--shards", default=None,
                       help="an existing shard set, a folder or a URI (python -m vidseg.segment's --out); "
                            "skips data, UNet and shards")
    where.add_argument("--data-dir", type=Path, default=None,
                       help="where prepared data (dataset, UNet, shards) is cached (default: data/)")
    where.add_argument("--address", default=None,
                       help="a running Ray cluster to join ('auto', or HOST:PORT; default: $RAY_ADDRESS, "
                            "else a local Ray)")
    where.add_argument("--storage", default="results",
                       help="where results go: a local path or a cloud URI such as s3://bucket/results "
                            "(default: results/)")
    where.add_argument("--gpu-memory-gb", type=float, default=None,
                       help="memory of one of the cluster's GPUs in GiB (an A10G: 22; an H100: 79), for packing "
                            "trials (default: read on a GPU worker when the cluster has GPUs)")
    where.add_argument("--workers", type=int, default=None,
                       help="processes for demo data generation (default: all cores)")
    where.add_argument("--train-unet", action="store_true",
                       help="demo: train the UNet from scratch with the profile's recipe instead of using the shipped "
                            "checkpoint (vidseg/segment/weights/unet-demo.pt, rebuilt by python -m "
                            "vidseg.segment.pretrained); a --data dataset always trains its own")


def _scale_flags(search) -> None:
    """How large the search is: its profile, its trials, its budget, and its estimate."""
    search.add_argument("--profile", choices=sorted(PROFILES), default=None,
                        help="search scale: " + "; ".join(f"{p.name}: {p.description}" for p in PROFILES.values())
                             + " (default: demo, or smoke with --smoke-test)")
    search.add_argument("--num-samples", type=int, default=None,
                        help="trials to run; with --resume, a larger number grows the saved search (finished or not) "
                             "from the same Optuna study")
    search.add_argument("--budget", default=None, metavar="DURATION",
                        help="device time the search may spend, such as 20h, 45m or 1h30m: a trial's GPU share (or "
                             "its CPUs) x the wall seconds it holds them. No trial starts whose expected cost would "
                             "overrun what is left, and running trials stop at their next epoch once it is spent; "
                             "with --num-samples, whichever ends first, alone, trials are drawn until it is spent. "
                             "With --resume it may be raised")
    search.add_argument("--estimate-only", action="store_true",
                        help="print what the search would cost (device-hours without stopping and with the "
                             "scheduler, and the wall time) from a short probe of the reference configurations "
                             "and a random draw of the space on the device at hand (the cost model's figures for "
                             "simulated trials and GPUs not up yet), and exit 0 without training")


def _scheduling_flags(search) -> None:
    """How the trials are proposed, stopped and run at once."""
    search.add_argument("--max-epochs", type=int, default=None, help="epochs of a trial that is never stopped early")
    search.add_argument("--grace-period", type=int, default=None,
                        help="epochs before the scheduler may stop a trial: its first rung")
    search.add_argument("--reduction-factor", type=int, default=None,
                        help="the scheduler keeps the top 1/factor of trials at each rung; rungs are at grace x factor^k")
    search.add_argument("--max-concurrent", type=int, default=None, help="trials running at once")
    search.add_argument("--searcher", choices=SEARCHERS, default=None,
                        help="Optuna's sampler: tpe (the default) or random, for comparisons")
    search.add_argument("--scheduler", choices=SCHEDULERS, default=None,
                        help="early stopping (default: the profile's). asha: asynchronous successive halving, ties in "
                             "val IoU decided by the soft val IoU, trials clearly below copy-last-frame not promoted at "
                             "a rung with too few results to rank them; pasha: the same, with the budget grown rung by "
                             "rung only while the two top rungs rank trials differently (PASHA); hyperband: Ray's "
                             "asynchronous Hyperband, 3 brackets of grace periods; fifo: every trial runs to "
                             "--max-epochs, which writes the learning-curve table curves.parquet that python -m "
                             "search.tools.replay replays")


def _run_flags(search) -> None:
    """The run's retries, seed and name, resuming it, its answers, and preparing its data alone."""
    search.add_argument("--max-failures", type=int, default=None,
                        help="retries of a trial whose worker died, each from its last checkpoint (default 2); "
                             "a diverged or infeasible trial is never retried")
    search.add_argument("--seed", type=int, default=None,
                        help="seed of the demo data, Optuna's TPE and every trial (default 0)")
    search.add_argument("--name", default=None,
                        help="experiment name (default: simvp-PROFILE-DATE_TIME); also the Optuna study's name")
    search.add_argument("--resume", action="store_true",
                        help="continue the search --name (default: the latest in --storage) with Tuner.restore: "
                             "the searcher, the Optuna study and the scheduler's rungs are kept, unfinished trials go "
                             "on from their checkpoints. Flags that would change the search are refused; "
                             "--max-failures, --address, --retry-errored, --hidden-answers, a larger "
                             "--num-samples and a larger --budget may be given, and apply")
    search.add_argument("--retry-errored", action="store_true",
                        help="with --resume: errored trials start again from their last checkpoints")
    search.add_argument("--hidden-answers", type=Path, default=None,
                        help=f"an .npy of the hidden split's {TARGET} masks (N, {FRAME_SIZE[0]}, {FRAME_SIZE[1]}), in its video order, to score "
                             "the submission (default: the answers the shard set carries, if any)")
    search.add_argument("--prepare-only", action="store_true",
                        help="prepare the data (dataset, UNet, shards), print the shard set's path, and stop; Ray "
                             "starts only where shards remain to be made")


def _rehearsal_flags(rehearsal) -> None:
    """A cluster's search rehearsed with simulated trials."""
    rehearsal.add_argument("--simulate", nargs="?", const="", default=None, metavar="TABLE",
                           help="simulated trials: nothing trains, and each trial reports what a real one of its "
                                "configuration would (the val IoU of the nearest configuration in the learning-curve "
                                "table TABLE, a --scheduler fifo search's curves.parquet, default: the one the profile "
                                "ships, else the demo's; its cost from the estimate's cost model), holding its Ray "
                                "resources that long; the rest is the real search. Needs no data and no GPU: with "
                                "--address on a cluster of logical GPUs (ray start --num-gpus) and --gpu-memory-gb it "
                                "rehearses a GPU cluster's search")
    rehearsal.add_argument("--time-scale", type=float, default=None, metavar="X",
                           help="simulated seconds per wall second (default 1; 3600: an hour in a second)")
