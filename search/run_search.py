"""vidseg-search: find SimVP's configuration with Ray Tune, Optuna (TPE) and ASHA.

    python search/run_search.py                              # the embedded demo, on a local Ray
    python search/run_search.py --profile full --data DIR --address auto --gpu-memory-gb 22   # A10G workers
    python search/run_search.py --resume                     # continue the latest search
    tensorboard --logdir results                             # watch and compare trials

With no arguments it prepares the demo data under data/ (a synthetic dataset, a UNet, and Arrow
shards of pre-segmented masks; each step is cached and reused), then runs a demo search on a
local Ray instance: about 15 minutes on a 2-core CPU. `--data DIR` takes a real dataset root in
the competition layout instead, and `--shards DIR` an existing shard set (skipping the UNet).

Every trial trains SimVP on the shards and reports val IoU (frame 22, the competition's metric)
each epoch. Optuna's TPE proposes trials, starting from the paper's configurations that fit the
profile; ASHA stops weak ones early. Results go to STORAGE/NAME/: Ray Tune's trial folders with
TensorBoard events, leaderboard.csv, report.md, best_config.json, the best checkpoint, and the
hidden split's predictions in the competition's submission format.

Input is checked before any trial starts: values of the space that the shards cannot run are left
out (one line each), and storage must be writable. Exit codes: 0 the search finished and a trial
completed; 1 every trial failed (or a bug, with its traceback); 2 bad input, in one line; 130
Ctrl-C, with the exact command that continues the search.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search.space import PROFILES, Profile, SearchSpace, points_to_evaluate  # noqa: E402
from vidseg.errors import InputError  # noqa: E402

log = logging.getLogger("vidseg.search")

STATE = "search.json"  # our own record of a search's settings, for --resume
DATA_DIR = Path("data")  # the default --data-dir
# defaults of the flags that are not the profile's (a search.json written before a flag existed takes them)
SETTING_DEFAULTS = {"max_failures": 2, "seed": 0, "searcher": "tpe", "scheduler": "asha", "gpu_memory_gb": None}


class UsageError(InputError):
    """Bad input: printed as one line, exit code 2."""


class Interrupted(Exception):
    """Ctrl-C: exit code 130, with the command that continues (None: nothing was started yet)."""

    def __init__(self, command: str | None) -> None:
        super().__init__(command)
        self.command = command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python search/run_search.py", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_argument_group("data and cluster")
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
    search = parser.add_argument_group("search (defaults come from the profile)")
    search.add_argument("--profile", choices=sorted(PROFILES), default=None,
                        help="search scale: " + "; ".join(f"{p.name}: {p.description}" for p in PROFILES.values())
                             + " (default: demo, or smoke with --smoke-test)")
    search.add_argument("--num-samples", type=int, default=None, help="trials to run")
    search.add_argument("--max-epochs", type=int, default=None, help="epochs of a trial that ASHA never stops")
    search.add_argument("--grace-period", type=int, default=None, help="epochs before ASHA may stop a trial")
    search.add_argument("--reduction-factor", type=int, default=None,
                        help="ASHA keeps the top 1/factor of trials at each rung")
    search.add_argument("--max-concurrent", type=int, default=None, help="trials running at once")
    search.add_argument("--searcher", choices=("tpe", "random"), default=None,
                        help="Optuna's sampler: tpe (the default) or random, for comparisons")
    search.add_argument("--scheduler", choices=("asha", "fifo"), default=None,
                        help="asha stops weak trials early (the default); fifo runs every trial to --max-epochs")
    search.add_argument("--max-failures", type=int, default=None,
                        help="retries of a trial whose worker died, each from its last checkpoint (default 2); "
                             "a diverged or infeasible trial is never retried")
    search.add_argument("--seed", type=int, default=None,
                        help="seed of the demo data, Optuna's TPE and every trial (default 0)")
    search.add_argument("--name", default=None,
                        help="experiment name (default: simvp-PROFILE-DATE_TIME)")
    search.add_argument("--resume", action="store_true",
                        help="continue the search --name (default: the latest in --storage) with Tuner.restore: "
                             "searcher and scheduler state are kept, unfinished trials go on from their checkpoints. "
                             "Flags that would change the search are refused; --max-failures, --address, "
                             "--retry-errored and --hidden-answers may be given, and apply")
    search.add_argument("--retry-errored", action="store_true",
                        help="with --resume: errored trials start again from their last checkpoints")
    search.add_argument("--hidden-answers", type=Path, default=None,
                        help="an .npy of the hidden split's frame-22 masks (N, 160, 240), in its video order, to score "
                             "the submission (default: the answers the shard set carries, if any)")
    search.add_argument("--prepare-only", action="store_true",
                        help="prepare the data (dataset, UNet, shards), print the shard set's path, and stop")
    search.add_argument("--smoke-test", action="store_true",
                        help="a tiny run (the smoke profile: a few videos, a few trials), for tests")
    return parser


# ----------------------------------------------------------------------------------------------
# settings


def _positive(args: argparse.Namespace, name: str, minimum: int = 1) -> None:
    value = getattr(args, name)
    if value is not None and value < minimum:
        raise UsageError(f"--{name.replace('_', '-')} is {value}, but must be >= {minimum}")


def resolve_settings(args: argparse.Namespace) -> dict:
    """The search's settings: flags over the profile's defaults. Raises UsageError."""
    for name in ("num_samples", "max_epochs", "grace_period", "max_concurrent", "workers"):
        _positive(args, name)
    _positive(args, "reduction_factor", 2)
    _positive(args, "max_failures", 0)
    if args.profile and args.smoke_test and args.profile != "smoke":
        raise UsageError(f"--smoke-test runs the smoke profile, not --profile {args.profile}")
    if args.data is not None and args.shards is not None:
        raise UsageError("give --data or --shards, not both")
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed is {args.seed}, but must be >= 0")
    profile = PROFILES[args.profile or ("smoke" if args.smoke_test else "demo")]
    settings = {
        "profile": profile.name,
        "num_samples": args.num_samples or profile.num_samples,
        "max_epochs": args.max_epochs or profile.max_epochs,
        "grace_period": args.grace_period or profile.grace_period,
        "reduction_factor": args.reduction_factor or profile.reduction_factor,
        "max_concurrent": args.max_concurrent or profile.max_concurrent,
        "max_failures": SETTING_DEFAULTS["max_failures"] if args.max_failures is None else args.max_failures,
        "seed": args.seed or SETTING_DEFAULTS["seed"],
        "searcher": args.searcher or SETTING_DEFAULTS["searcher"],
        "scheduler": args.scheduler or SETTING_DEFAULTS["scheduler"],
        "gpu_memory_gb": args.gpu_memory_gb,
    }
    if args.gpu_memory_gb is not None and args.gpu_memory_gb <= 0:
        raise UsageError(f"--gpu-memory-gb is {args.gpu_memory_gb}, but must be > 0")
    if settings["grace_period"] > settings["max_epochs"]:
        raise UsageError(f"--grace-period {settings['grace_period']} is more than --max-epochs {settings['max_epochs']}")
    return settings


def storage_root(storage: str) -> str:
    """A URI stays as it is; a local path becomes absolute (Ray Tune needs that)."""
    if "://" in storage:
        return storage
    return str(Path(storage).expanduser().resolve())


def _local(storage: str) -> Path | None:
    return None if "://" in storage else Path(storage)


# ----------------------------------------------------------------------------------------------
# data: dataset -> UNet -> shards


def prepare_dataset(args: argparse.Namespace, profile: Profile, seed: int) -> Path | None:
    """The dataset root, generated for the demo and checked; None when --shards is given.

    This runs before Ray starts: the generator's worker processes must not inherit Ray's handlers.
    """
    from vidseg.data.check import check_dataset, print_errors
    from vidseg.data.remote import cached_shards
    from vidseg.data.shards import ShardSet

    if args.shards is not None:
        ShardSet.open(cached_shards(args.shards), verify=True)  # ShardError names the file
        return None
    if args.data is not None:
        if not args.data.is_dir():
            raise UsageError(f"{args.data}: no such dataset folder")
        root = args.data
    else:
        root = prepare_demo_dataset(args, profile, seed)
    log.info("[1/4] checking the dataset %s", root)
    report = check_dataset(root, progress=sys.stderr.isatty())
    if not report.ok:
        print_errors(report, max_errors=20)
        raise UsageError(f"{root}: not a valid dataset (see the errors above)")
    return root


def prepare_shards(args: argparse.Namespace, profile: Profile, seed: int, root: Path | None) -> str:
    """The shard set the trials read: given, or made (and cached) from the dataset root."""
    from vidseg.segment.presegment import presegment
    from vidseg.segment.train import UNetConfig, settings_key, train_unet

    if root is None:
        return args.shards if "://" in args.shards else str(Path(args.shards).resolve())
    if args.data is not None:
        cache = (args.data_dir or DATA_DIR) / "shards" / f"{root.resolve().name}-{profile.name}"
    else:
        cache = root.parent / f"{root.name}-shards-{profile.resolution[0]}x{profile.resolution[1]}"
    progress = sys.stderr.isatty()
    unet = UNetConfig(width=profile.unet_width, size=profile.unet_size, epochs=profile.unet_epochs,
                      train_frame_stride=profile.unet_frame_stride, crop=profile.unet_crop,
                      foreground_crops=profile.unet_foreground_crops, lr=profile.unet_lr,
                      num_workers=min(8, os.cpu_count() or 1),  # decode once into the frame cache
                      seed=seed)
    unet_dir = cache / f"unet-{settings_key(unet)}"  # a profile's new UNet recipe trains anew, beside the old
    log.info("[2/4] UNet (width %d at %dx%d, %d epochs) in %s", unet.width, *unet.size, unet.epochs, unet_dir)
    started = time.perf_counter()
    result = train_unet(root, unet_dir, unet, progress=progress)
    log.info("      UNet val IoU %.3f (%.0f s)", result.val_iou, time.perf_counter() - started)
    log.info("[3/4] pre-segmenting every split into shards at %dx%d: %s", *profile.resolution, cache)
    started = time.perf_counter()
    presegment(root, cache, result.checkpoint, out_size=profile.resolution,
               videos_per_shard=16 if profile.name != "full" else 64, progress=progress)
    log.info("      shards ready (%.0f s)", time.perf_counter() - started)
    return str(cache.resolve())


def prepare_demo_dataset(args: argparse.Namespace, profile: Profile, seed: int) -> Path:
    from vidseg.data import synth

    root = (args.data_dir or DATA_DIR) / profile.name / f"seed{seed}"
    log.info("[0/4] demo dataset %s (%s)", root, ", ".join(f"{k} {v}" for k, v in profile.counts.items()))
    workers = args.workers or os.cpu_count() or 1
    started = time.perf_counter()
    manifest = synth.generate(root, profile.counts, synth.SynthConfig(seed=seed), workers=workers)
    log.info("      copy-last-frame IoU on val: %.3f (%.0f s)", manifest["motion"]["copy_last_frame_iou_val"],
             time.perf_counter() - started)
    return root


# ----------------------------------------------------------------------------------------------
# Ray


def check_address(address: str) -> None:
    """Fail fast, in one line, when nothing listens at HOST:PORT (ray.init would retry for a minute)."""
    if address in ("auto", "local") or address.startswith("ray://"):
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


# ----------------------------------------------------------------------------------------------
# the search


def _filesystem(storage: str):
    """(pyarrow filesystem, path) of a local path or a cloud URI (s3://, gs://, ...)."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(storage if "://" in storage else Path(storage).resolve().as_uri())
    except (pa.ArrowInvalid, OSError) as err:
        raise UsageError(f"--storage {storage}: {err}") from None


def read_state(storage: str, name: str) -> dict | None:
    fs, root = _filesystem(storage)
    try:
        with fs.open_input_stream(f"{root}/{name}/{STATE}") as f:
            text = f.read().decode(errors="replace")
    except (FileNotFoundError, OSError):
        return None
    try:
        state = json.loads(text)
    except ValueError as err:
        raise UsageError(f"{storage}/{name}/{STATE}: not a search's saved state (invalid JSON: {err})") from None
    if not (isinstance(state, dict) and isinstance(state.get("settings"), dict) and "shards" in state
            and state["settings"].get("profile") in PROFILES):
        raise UsageError(f"{storage}/{name}/{STATE}: not a search's saved state (no shards, or no known profile)")
    return state


def write_state(storage: str, name: str, state: dict) -> None:
    text = json.dumps(state, indent=2) + "\n"
    local = _local(storage)
    if local is not None:  # atomically: a killed driver leaves the old file or the new one
        from vidseg.atomic import atomic_path

        (local / name).mkdir(parents=True, exist_ok=True)
        with atomic_path(local / name / STATE) as tmp:
            tmp.write_text(text)
        return
    fs, root = _filesystem(storage)
    fs.create_dir(f"{root}/{name}", recursive=True)
    with fs.open_output_stream(f"{root}/{name}/{STATE}") as f:  # an object store writes whole objects
        f.write(text.encode())


def latest_experiment(storage: str) -> str:
    """The name of the most recently started search in ``storage``."""
    import pyarrow.fs as pafs

    fs, root = _filesystem(storage)
    try:
        entries = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    except OSError:
        entries = []
    found = [info for info in entries if info.type == pafs.FileType.Directory]
    states = [fs.get_file_info(f"{info.path}/{STATE}") for info in found]
    states = [info for info in states if info.type == pafs.FileType.File]
    if not states:
        raise UsageError(f"{storage_root(storage)}: no search to resume here")
    latest = max(states, key=lambda info: (info.mtime is not None, info.mtime))
    return Path(latest.path).parent.name


def build_tuner(settings: dict, profile: Profile, shards: str, storage: str, name: str):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    gpu_memory_gb = settings.get("gpu_memory_gb")
    points = list(points_to_evaluate(profile).values())
    import optuna

    if settings.get("searcher", "tpe") == "random":
        sampler = optuna.samplers.RandomSampler(seed=settings["seed"])
    else:  # Optuna's default of 10 random start-up trials would make a 10-trial search purely random
        sampler = optuna.samplers.TPESampler(seed=settings["seed"],
                                             n_startup_trials=startup_trials(settings["num_samples"]))
    searcher = OptunaSearch(space=SearchSpace(profile, settings["max_epochs"], settings["seed"]),
                            metric="val_iou", mode="max", points_to_evaluate=points or None, sampler=sampler)
    if settings.get("scheduler", "asha") == "asha":
        scheduler = ASHAScheduler(time_attr="epoch", metric="val_iou", mode="max", max_t=settings["max_epochs"],
                                  grace_period=settings["grace_period"],
                                  reduction_factor=settings["reduction_factor"])
    else:
        from ray.tune.schedulers import FIFOScheduler

        scheduler = FIFOScheduler()
    return tune.Tuner(
        make_trainable(profile, shards, gpu_memory_gb),
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=settings["max_concurrent"]),
                                    scheduler=scheduler, num_samples=settings["num_samples"],
                                    trial_dirname_creator=_trial_dirname, trial_name_creator=_trial_dirname),
        run_config=_run_config(settings, storage, name),
    )


def startup_trials(num_samples: int) -> int:
    """TPE's random start-up trials: Optuna's 10 for big searches, half the budget (at least 3) for small ones."""
    return min(10, max(3, num_samples // 2))


def shard_counts(shards: str, manifest: dict | None = None) -> dict[str, int]:
    """Videos per split of a shard set (a folder or a URI), from its manifest (read here unless given)."""
    from vidseg.data.remote import read_manifest

    manifest = manifest or read_manifest(shards)
    return {split: sum(len(shard["video_ids"]) for shard in entry["shards"]) for split, entry in manifest["splits"].items()}


def make_trainable(profile: Profile, shards: str, gpu_memory_gb: float | None):
    """The trainable with its shards and its per-trial resources: CPUs only where there are no GPUs
    (``gpu_memory_gb`` None), else the share of one GPU that the trial's planned peak needs."""
    from ray import tune

    from search.trainable import train_simvp, trial_resources

    counts = shard_counts(shards) if gpu_memory_gb is not None else None
    return tune.with_resources(
        tune.with_parameters(train_simvp, shards=shards, gpu_memory_gb=gpu_memory_gb, counts=counts,
                             resolution=profile.resolution),
        trial_resources(profile.cpus_per_trial, profile.resolution, gpu_memory_gb, counts))


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def _run_config(settings: dict, storage: str, name: str):
    from ray import tune

    return tune.RunConfig(
        name=name, storage_path=storage,
        failure_config=tune.FailureConfig(max_failures=settings["max_failures"]),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="val_iou",
                                                checkpoint_score_order="max"),
        verbose=1,
    )


def check_storage(storage: str) -> None:
    """Fail before any work when results cannot be written to ``storage`` (a probe file, removed)."""
    import pyarrow as pa

    fs, root = _filesystem(storage)
    probe = f"{root}/.vidseg-write-test-{os.getpid()}"
    try:
        fs.create_dir(root, recursive=True)
        with fs.open_output_stream(probe) as f:
            f.write(b"ok")
        fs.delete_file(probe)
    except (OSError, pa.ArrowException) as err:
        reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
        raise UsageError(f"--storage {storage}: not writable ({reason})") from None


def fit_space(settings: dict, profile: Profile, shards: str) -> Profile:
    """The profile narrowed to what the shard set can run (``search.space.fit_to_shards``): one line
    per value left out, and the narrowed space recorded in ``settings`` for --resume."""
    from search.space import fit_to_shards, limits_of
    from vidseg.data.remote import read_manifest

    manifest = read_manifest(shards)
    resolution = manifest["resolution"]
    labeled = tuple(name for name, entry in manifest["splits"].items() if entry.get("labeled"))
    fitted, notes = fit_to_shards(profile, (resolution["height"], resolution["width"]), shard_counts(shards, manifest),
                                  labeled)
    for note in notes:
        log.warning("%s", note)
    settings["limits"] = {**limits_of(fitted), "notes": notes}
    return fitted


def _tuner(args: argparse.Namespace, settings: dict, profile: Profile, shards: str, storage: str, name: str):
    """A new tuner, or the saved search restored (with --max-failures and --retry-errored applied),
    and its driver callback (``search.resume.driver_callback``)."""
    from ray import tune

    from search.resume import driver_callback

    experiment = f"{storage}/{name}"
    gpu_memory_gb = settings.get("gpu_memory_gb")
    if args.resume and tune.Tuner.can_restore(experiment):
        tuner = tune.Tuner.restore(experiment, trainable=make_trainable(profile, shards, gpu_memory_gb),
                                   resume_unfinished=True, resume_errored=args.retry_errored)
    else:  # a new search, or one stopped before Tune saved anything: it starts as saved
        tuner = build_tuner(settings, profile, shards, storage, name)
    # Ray Tune keeps the run config it was started with; the retries given now apply to every trial
    run_config = tuner._local_tuner.get_run_config()
    run_config.failure_config = tune.FailureConfig(max_failures=settings["max_failures"])
    callback = driver_callback(settings["max_failures"])
    run_config.callbacks = [callback]
    return tuner, callback


def run(args: argparse.Namespace) -> int:
    """The search, from flags to results. Raises InputError (exit 2) and Interrupted (exit 130);
    returns 0 when a trial completed, 1 when every trial failed."""
    import ray

    from search.resume import check_resume_flags, resume_command
    from search.space import narrowed

    storage = storage_root(args.storage)
    local = _local(storage)
    address = args.address or os.environ.get("RAY_ADDRESS") or None
    # The experiment's state is saved often, so a killed driver loses little (--resume).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")
    # num_to_keep=1 snapshots the experiment at every checkpoint: wanted here, so no warning about it
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if args.retry_errored and not args.resume:
        raise UsageError("--retry-errored retries the errored trials of a saved search: give it with --resume")
    _positive(args, "max_failures", 0)
    hidden_answers = None
    if args.hidden_answers is not None:
        from search.report import read_answers

        read_answers(args.hidden_answers)  # a bad file is named now, not after the search
        hidden_answers = str(args.hidden_answers.resolve())
    if args.resume:
        name = args.name or latest_experiment(storage)
        state = read_state(storage, name)
        if state is None:
            raise UsageError(f"{storage}/{name}: no search to resume here")
        check_resume_flags(args, state, f"{storage}/{name}", SETTING_DEFAULTS)
        check_storage(storage)
        settings, shards = {**SETTING_DEFAULTS, **state["settings"]}, state["shards"]
        if args.max_failures is not None:
            settings["max_failures"] = args.max_failures
        hidden_answers = hidden_answers or state.get("hidden_answers")
        if hidden_answers and not Path(hidden_answers).is_file():
            log.warning("%s: the hidden answers given when the search started are not on this machine; the report "
                        "will not score the hidden split (give --hidden-answers again)", hidden_answers)
            hidden_answers = None
        state = {**state, "settings": settings, "hidden_answers": hidden_answers}
        write_state(storage, name, state)  # what --resume changed holds for the next resume too
        log.info("resuming %s (%s profile) from %s", name, settings["profile"], storage)
    else:
        settings = resolve_settings(args)
        name = args.name or f"simvp-{settings['profile']}-{datetime.now():%Y-%m-%d_%H-%M-%S}"
        if read_state(storage, name) is not None or (local is not None and (local / name).exists()):
            raise UsageError(f"{storage}/{name} already exists: pass --resume to continue it, or another --name")
        if not args.prepare_only:
            check_storage(storage)
    profile = narrowed(PROFILES[settings["profile"]], settings.get("limits"))
    if address:
        check_address(address)  # before any data work
    saved = args.resume  # whether search.json exists, so that --resume can continue
    try:
        root = None
        if not args.resume:
            root = prepare_dataset(args, profile, settings["seed"])
            if root is None:  # --shards: checked against the space before Ray starts
                shards = prepare_shards(args, profile, settings["seed"], None)
                profile = fit_space(settings, profile, shards)
        init_ray(address)
        try:
            if not args.resume and settings["gpu_memory_gb"] is None and ray.cluster_resources().get("GPU", 0) > 0:
                from search.trainable import detect_gpu_memory_gb

                settings["gpu_memory_gb"] = detect_gpu_memory_gb()  # InputError when it cannot tell
                log.info("GPUs of %.1f GiB: trials are packed for that size (--gpu-memory-gb overrides)",
                         settings["gpu_memory_gb"])
            if settings.get("gpu_memory_gb") is None and address:
                log.warning("the cluster has no GPU up now, so trials run on CPUs; on an autoscaling GPU cluster "
                            "(min_workers 0) pass --gpu-memory-gb (an A10G: 22) so that trials ask for GPU shares "
                            "and the autoscaler starts GPU workers")
            if not args.resume:
                if root is not None:
                    shards = prepare_shards(args, profile, settings["seed"], root)
                    profile = fit_space(settings, profile, shards)
                if args.prepare_only:
                    print(f"shards ready: {shards}")
                    return 0
                source = shards
                if "://" in storage and "://" not in shards:  # trials on other nodes read them from the bucket
                    from vidseg.data.remote import publish_shards

                    shards = publish_shards(shards, f"{storage}/shards/{Path(shards).name}")
                write_state(storage, name, {"settings": settings, "shards": shards, "shards_source": source,
                                            "hidden_answers": hidden_answers,
                                            "started": datetime.now().isoformat(timespec="seconds")})
                saved = True
            log.info("[4/4] search %s: %d trials of up to %d epochs, %d at a time, ASHA grace %d, factor %d",
                     name, settings["num_samples"], settings["max_epochs"], settings["max_concurrent"],
                     settings["grace_period"], settings["reduction_factor"])
            tuner, callback = _tuner(args, settings, profile, shards, storage, name)
            started = time.perf_counter()
            results = tuner.fit()
            if threading.current_thread() is threading.main_thread():  # Tune leaves its handler behind
                signal.signal(signal.SIGINT, signal.default_int_handler)
            if callback.interrupted or len(results) < settings["num_samples"]:
                raise KeyboardInterrupt  # Tune saved its state and stopped the trials
            log.info("search finished in %.0f s", time.perf_counter() - started)

            from search.report import outcome_text, write_results

            out, rows = write_results(results, settings, shards, f"{storage}/{name}", hidden_answers)
        finally:
            ray.shutdown()
    except KeyboardInterrupt:
        raise Interrupted(resume_command(storage, name, args.address) if saved else None) from None
    print(f"\nresults: {out}")
    print(f"  best config: {out}/best_config.json   report: {out}/report.md   leaderboard: {out}/leaderboard.csv")
    print(f"  watch and compare trials: tensorboard --logdir {args.storage}")
    if not any(row["status"] == "TERMINATED" for row in rows):
        print(f"error: no trial completed ({outcome_text(rows)}); see {out}/leaderboard.csv for why", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 the search finished and a trial completed; 1 every trial failed, or a bug (with
    its traceback); 2 bad input, in one line; 130 Ctrl-C, with the command that continues."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return run(args)
    except InputError as err:  # the project's own checks: they name the file, flag or value
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.filename is None:  # not about a file the user gave: a bug, or the machine; keep its traceback
            raise
        print(f"error: {err.filename}: {err.strerror or err}", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt) as err:
        command = getattr(err, "command", None)
        if command:
            print(f"interrupted; the search is saved. Continue it with:\n  {command}", file=sys.stderr)
        else:
            print("interrupted before the search started; run the same command again (prepared data is reused)",
                  file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
