"""Ray Tune's costs around a trial: per-trial start-up overhead, and trials per hour against worker nodes.

    python tests/bench/bench_overhead.py                   # both parts, small: 3 trials each, 6 per cluster run
    python tests/bench/bench_overhead.py --full            # 10 trials each, 24 per cluster run
    python tests/bench/bench_overhead.py --part trial --shards SHARDS_DIR
    python tests/bench/bench_overhead.py --part cluster --nodes 1,2,3 --trials 12

(a) ``trial``: on a local Ray instance, trials one at a time, the time from Ray's trial start (Tune's
``on_trial_start`` callback: the trial's actor is up) to the first training step, for this project's
trainable (``search.run.trainable.train_simvp`` through ``tune.with_parameters``, a tiny SimVP on a tiny shard
set) against a bare function trainable that reports once. train_simvp's first step is its first
``tune.report`` minus that epoch's ``epoch_seconds`` (timestamps taken in the trial's process); the
actor's own start-up (previous trial done, or ``Tuner.fit`` called, to Ray's trial start) is shown
beside it.

(b) ``cluster``: a loopback Ray cluster with token authentication (``ray start --head --num-cpus=0`` and
1..3 worker nodes with ``--num-cpus=1``, as in tests/cluster/test_multinode.py); N fixed-time trials
(sleep, report, sleep, report) per run; throughput in trials per hour and scaling efficiency
throughput_n / (n * throughput_1). Every process started here is stopped by pid.

Ray must be able to bind loopback ports; in a sandbox run it in a network namespace:
``unshare -rn sh -c 'ip link set lo up && python tests/bench/bench_overhead.py'``. Not part of the tests.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: tests.loopback

from search.run.trainable import train_simvp  # noqa: E402
from tests.loopback import RayNode as Node, free_port  # noqa: E402

SIMVP = {"N_S": 2, "N_T": 2, "hid_S": 8, "hid_T": 32, "groups": 1, "translator": "incep", "loss": "ce",
         "epochs": 1, "batch_size": 2, "device": "cpu", "seed": 0}


# ----------------------------------------------------------------------------------------------
# trainables (defined here, so Ray ships them by value; train_simvp is imported by reference)


def bare_trainable(config: dict) -> None:
    entered = time.time()
    from ray import tune

    tune.report({"bench_entered": entered, "bench_step": time.time()})


def timed_simvp(config: dict, shards: str) -> None:
    """train_simvp, with the time it was entered and the time of its first report added to that report."""
    entered = time.time()
    from ray import tune

    real = tune.report

    def first_report(metrics: dict, **kwargs) -> None:
        tune.report = real
        real({**metrics, "bench_entered": entered, "bench_step": time.time() - metrics["epoch_seconds"]}, **kwargs)

    tune.report = first_report  # train_simvp looks tune.report up at call time
    try:
        train_simvp(config, shards)
    finally:
        tune.report = real


def sleeper(config: dict) -> None:
    from ray import tune

    for step in range(config["reports"]):
        time.sleep(config["sleep"])
        tune.report({"step": step + 1})


# ----------------------------------------------------------------------------------------------
# (a) per-trial overhead


def _tiny_shards(tmp: Path) -> Path:
    """A synthetic train 4 / val 2 set at 40x60, true masks as shards (bench_trial's shard_set)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_trial import shard_set
    from vidseg.data.synth import SynthConfig, generate

    root = tmp / "data"
    generate(root, {"train": 4, "val": 2, "unlabeled": 0, "hidden": 0}, SynthConfig(seed=0),
             workers=os.cpu_count() or 1, progress=False)
    out = tmp / "shards"
    out.mkdir()
    return shard_set(root, out, (40, 60))


def run_trials(trainable, config: dict, trials: int, storage: Path, name: str) -> list[dict]:
    """Run ``trials`` trials one at a time; per trial: actor start-up, start to entry, entry to first step."""
    from ray import tune

    class Clock(tune.Callback):
        def __init__(self) -> None:
            self.started: dict[str, float] = {}
            self.done: dict[str, float] = {}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.started[trial.trial_id] = time.time()

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.done[trial.trial_id] = time.time()

    clock = Clock()
    tuner = tune.Tuner(trainable, param_space=config,
                       tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=1),
                       run_config=tune.RunConfig(name=name, storage_path=str(storage), callbacks=[clock], verbose=0))
    fit_called = time.time()
    results = tuner.fit()
    errors = [r.error for r in results if r.error is not None]
    if errors:
        raise RuntimeError(f"{name}: {len(errors)} trial(s) failed: {errors[0]}")
    by_trial = {r.metrics["trial_id"]: r.metrics_dataframe.iloc[0] for r in results}
    rows, previous = [], fit_called
    for trial_id in sorted(clock.started, key=clock.started.get):
        first = by_trial[trial_id]
        rows.append({"actor": clock.started[trial_id] - previous, "started": clock.started[trial_id],
                     "entered": float(first["bench_entered"]), "step": float(first["bench_step"])})
        previous = clock.done[trial_id]
    return rows


def part_trial(args: argparse.Namespace, tmp: Path) -> None:
    import ray
    from ray import tune

    if args.shards:
        shards = str(Path(args.shards).resolve())
    else:
        print("making a tiny shard set (synthetic train 4, val 2 at 40x60) ...", flush=True)
        started = time.perf_counter()
        shards = str(_tiny_shards(tmp))
        print(f"  done ({time.perf_counter() - started:.0f} s)", flush=True)
    short = Path(tempfile.mkdtemp(prefix="vb-", dir="/tmp"))  # Ray's socket paths must stay under 107 bytes
    ray.init(num_cpus=1, include_dashboard=False, configure_logging=False, log_to_driver=False, _temp_dir=str(short))
    try:
        kinds = {
            "bare (reports once)": run_trials(tune.with_resources(bare_trainable, {"cpu": 1}), {}, args.trials,
                                              tmp / "results", "bare"),
            "train_simvp (tiny SimVP)": run_trials(
                tune.with_resources(tune.with_parameters(timed_simvp, shards=shards), {"cpu": 1}), SIMVP,
                args.trials, tmp / "results", "simvp"),
        }
    finally:
        ray.shutdown()
        shutil.rmtree(short, ignore_errors=True)
    print(f"\n(a) per-trial overhead, {args.trials} trials each, one at a time, 1 CPU each (s)")
    print(f"{'trainable':<26} {'trial':>5} {'actor start':>12} {'start->entry':>13} {'entry->step':>12} "
          f"{'start->step':>12}")
    medians = {}
    for kind, rows in kinds.items():
        for i, r in enumerate(rows):
            print(f"{kind:<26} {i + 1:>5} {r['actor']:>12.2f} {r['entered'] - r['started']:>13.2f} "
                  f"{r['step'] - r['entered']:>12.2f} {r['step'] - r['started']:>12.2f}")
        medians[kind] = (statistics.median(r["step"] - r["started"] for r in rows),
                         statistics.median(r["actor"] for r in rows))
        print(f"{kind:<26} {'med':>5} {medians[kind][1]:>12.2f} "
              f"{statistics.median(r['entered'] - r['started'] for r in rows):>13.2f} "
              f"{statistics.median(r['step'] - r['entered'] for r in rows):>12.2f} {medians[kind][0]:>12.2f}")
    (bare, bare_actor), (simvp, simvp_actor) = medians.values()
    print(f"summary (a): train_simvp reaches its first step {simvp:.2f} s after Ray's trial start, "
          f"{simvp - bare:+.2f} s against a bare trainable ({bare:.2f} s); actor start-up {simvp_actor:.2f} s "
          f"against {bare_actor:.2f} s")


# ----------------------------------------------------------------------------------------------
# (b) trials per hour against worker nodes


def _wait_for_cpus(cpus: int, timeout: float = 60) -> None:
    import ray

    deadline = time.monotonic() + timeout
    while ray.cluster_resources().get("CPU", 0) < cpus:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the cluster shows {ray.cluster_resources().get('CPU', 0)} CPUs, not {cpus}")
        time.sleep(0.5)


def part_cluster(args: argparse.Namespace, tmp: Path, env: dict[str, str]) -> None:
    import ray
    from ray import tune

    counts = sorted({int(n) for n in args.nodes.split(",")})
    short = Path(tempfile.mkdtemp(prefix="vb-", dir="/tmp"))  # Ray's socket paths must stay under 107 bytes
    port = free_port()
    nodes: list[Node] = []
    runs = []
    try:
        print(f"\nstarting a loopback cluster: head (0 CPUs) on 127.0.0.1:{port}, token auth ...", flush=True)
        nodes.append(Node("head", ["--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=false"],
                          env, tmp, short))
        nodes[0].wait_ready()
        ray.init(address=f"127.0.0.1:{port}", configure_logging=False, log_to_driver=False)
        for n in counts:
            while len(nodes) - 1 < n:
                name = f"w{len(nodes)}"
                nodes.append(Node(name, [f"--address=127.0.0.1:{port}", "--num-cpus=1",
                                         "--dashboard-agent-listen-port=0"], env, tmp, short))
                nodes[-1].wait_ready()
            _wait_for_cpus(n)
            print(f"  {n} worker node(s): {args.cluster_trials} trials ...", flush=True)
            tuner = tune.Tuner(tune.with_resources(sleeper, {"cpu": 1}),
                               param_space={"sleep": args.sleep, "reports": args.reports},
                               tune_config=tune.TuneConfig(num_samples=args.cluster_trials),
                               run_config=tune.RunConfig(name=f"nodes{n}", storage_path=str(tmp / "results"),
                                                         verbose=0))
            started = time.perf_counter()
            results = tuner.fit()
            wall = time.perf_counter() - started
            failed = sum(r.error is not None for r in results)
            if failed:
                raise RuntimeError(f"{failed} sleeper trial(s) failed on {n} node(s): "
                                   f"{next(r.error for r in results if r.error is not None)}")
            runs.append((n, wall))
    finally:
        ray.shutdown()
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(short, ignore_errors=True)

    work = args.sleep * args.reports
    print(f"\n(b) throughput, {args.cluster_trials} trials of {args.reports} x {args.sleep:g} s sleep "
          f"({work:g} s of work each), 1 CPU per worker node")
    print(f"{'workers':>7} {'wall s':>8} {'trials/h':>9} {'ideal/h':>8} {'s/trial/node':>13} {'efficiency':>11}")
    base = None
    for n, wall in runs:
        throughput = args.cluster_trials / wall * 3600
        base = base if base is not None else throughput / n
        print(f"{n:>7} {wall:>8.1f} {throughput:>9.0f} {n * 3600 / work:>8.0f} "
              f"{wall * n / args.cluster_trials:>13.2f} {throughput / (n * base):>10.0%}")
    n_last, wall_last = runs[-1]
    n_first, wall_first = runs[0]
    print(f"summary (b): {n_last} worker node(s) ran {args.cluster_trials / wall_last * 3600:.0f} trials/h, "
          f"{wall_first / wall_last:.2f}x {n_first} node(s) (efficiency "
          f"{(wall_first / wall_last) * n_first / n_last:.0%}); a trial costs {wall_last * n_last / args.cluster_trials:.2f} s "
          f"of a node for {work:g} s of work")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("trial", "cluster", "both"), default="both")
    parser.add_argument("--full", action="store_true", help="10 trials per trainable, 24 per cluster run")
    parser.add_argument("--trials", type=int, default=None, help="(a) trials per trainable (default 3; --full 10)")
    parser.add_argument("--shards", default=None, help="(a) a shard set for train_simvp (default: make a tiny one)")
    parser.add_argument("--nodes", default="1,2,3", help="(b) worker node counts (default 1,2,3)")
    parser.add_argument("--cluster-trials", type=int, default=None, help="(b) trials per run (default 6; --full 24)")
    parser.add_argument("--sleep", type=float, default=2.0, help="(b) seconds per report (default 2)")
    parser.add_argument("--reports", type=int, default=2, help="(b) reports per trial (default 2)")
    args = parser.parse_args()
    args.trials = args.trials or (10 if args.full else 3)
    args.cluster_trials = args.cluster_trials or (24 if args.full else 6)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}", flush=True)
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_overhead_") as folder:
        tmp = Path(folder)
        # token authentication for every Ray process here, the driver's included (set before Ray starts)
        token = tmp / "auth_token"
        token.write_text(secrets.token_hex(32))
        os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
                           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0", "RAY_USAGE_STATS_ENABLED": "0",
                           "RAY_AIR_NEW_OUTPUT": "0"})  # with verbose=0: no experiment banners
        os.environ.pop("RAY_AUTH_TOKEN", None)
        os.environ.pop("RAY_ADDRESS", None)
        if args.part in ("trial", "both"):
            part_trial(args, tmp)
        if args.part in ("cluster", "both"):
            part_cluster(args, tmp, dict(os.environ))
    print(f"wall time {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    main()
