"""The search's driver at a cluster's scale: the real search (``search/run_search.py --simulate``) against
bare Ray Tune, on a loopback cluster of logical GPUs, at 128, 512 and 1,024 simulated trials, 64 at once.

    unshare -rn sh -c 'ip link set lo up && . .venv/bin/activate && python tests/bench/bench_cluster_sim.py --quick'
    unshare -rn sh -c 'ip link set lo up && . .venv/bin/activate && \\
        python tests/bench/bench_cluster_sim.py --out results/bench-cluster-sim.json'      # the full run
    python tests/bench/bench_cluster_sim.py --trials 128 --parts ours,bare --out FILE.json

**The cluster.** One loopback Ray cluster for every run (``tests.loopback.RayNode``, token auth as in
tests/cluster/test_simulated_cluster.py): ``--nodes`` (4) nodes of ``--gpus-per-node`` (4) logical GPUs,
A10Gs for the packing (``--gpu-memory-gb 22``), ``--cpus-per-node`` (64) logical CPUs so that CPUs never
limit (the full profile's trials ask 2 each), a 100 MB object store. Its raylets are started with
``RAY_prestart_worker_first_driver=0``: otherwise each prestarts a worker per logical CPU (256 processes)
for the first driver only, which this machine cannot hold and which would favour the first run.

**The trials.** Simulated trials of the ``full`` profile (``search.run.simulate``): no training, each
reports per epoch what a real one would (val IoU from the learning-curve table the profile uses, its cost
from the estimate's cost model) and holds its Ray resources for the model seconds / ``--time-scale``
wall seconds. On that cost model the configurations the full space draws have epochs of 2 model-seconds
at the median and 9 on average (0.4 to 19 from the 10th to the 90th percentile; the set-up adds 10 to
the first), so ``--time-scale 1`` (the default) gives epochs of a few wall seconds and trials of about
half a minute: long enough that Ray's start-up of a trial does not decide the concurrency on 2 cores
(at ``--time-scale 30`` epochs last a quarter of a second and 16 at once peaked at 7). On 16 logical
A10Gs the GPUs, not the 64 allowed, bound the trials at once: the space's mean GPU share is about 0.46,
and 128 trials peaked at 35 to 38. ``--max-epochs 9``, ``--grace-period 1``, ``--reduction-factor 3``
(rungs at 1, 3 and 9 epochs; the profile's 30 would make a run hours long) and ``--seed 0`` for both sides.

**The runs**, per size N of ``--trials`` (each one a fresh experiment in the cluster, its storage folder
deleted once its figures are read):

1. ``ours``: ``search/run_search.py --profile full --simulate --time-scale X --address ADDR
   --gpu-memory-gb 22 --num-samples N --max-concurrent AT_ONCE --max-epochs E --grace-period 1
   --reduction-factor 3 --storage TMP --name ours-N`` as a subprocess.
2. ``resume`` (the largest size only, unless ``--resume-sizes all``): the same search again, SIGTERM to its
   driver once half of the N trials have reported (it exits 143, saved), then ``run_search.py --resume
   --storage TMP --name resume-N --address ADDR``, run to the end (or, with ``--resume-for S``, stopped S
   seconds after its first new report). **Restart time**: from launching the
   resume to the first report made after that launch.
3. ``bare``: what a user would write with Ray Tune alone, in a child process of this script (its own
   driver): ``ray.init(address=ADDR)``, the same ``World`` (``search.tools.simulation.build_world``) and
   per-trial resources (``search.run.simulate.SimulatedResources``, which gives
   ``search.run.trainable.trial_resources``'s; ``--bare-resources trainable`` passes that function
   itself, whose unpickling makes each trial's process import torch) and the same define-by-run space
   (``search.space.SearchSpace``), ``tune.Tuner(tune.with_resources(tune.with_parameters(simulated_trial,
   world=world), resources), tune_config=TuneConfig(search_alg=OptunaSearch(space, metric="val_iou",
   mode="max", seed=0), scheduler=ASHAScheduler(time_attr="epoch", max_t=E, grace_period=1,
   reduction_factor=3), num_samples=N, max_concurrent_trials=AT_ONCE), run_config=RunConfig(storage_path=TMP,
   verbose=0)).fit()``; Tune's defaults otherwise (``reuse_actors=False``: a process per trial, where ours
   reuses them; every checkpoint kept; Optuna's default TPE and in-memory study).

Each run's driver counts its trials' memory plans from nothing (a counts folder of its own,
``vidseg.train.counted``), as a first search on a machine does; bare Ray Tune's driver calls the same
resources function, so it pays them too; a resume reads what its stopped driver kept.

**The figures**, per run: the driver's own CPU seconds (user + system of that one process, from
``/proc/PID/stat`` every 0.5 s and exactly at its exit from ``wait4``'s rusage: neither counts the GCS,
the raylets or the trials' workers), its wall time and peak RSS; from the trials' ``result.json`` files
(one JSON a line, a half-written last line skipped): the results reported (lines), the trials started (those
with a report; trial folders and errored trials beside them), the peak and mean trials at once, the
**GPU busy share** = sum over trials of ``device_share`` x (its last ``reported_at`` - its ``started_at``,
clipped to the window) / (GPUs x the window), the window from ``--warmup-s`` (60) after the first trial
started to the last report (a restored trial counts per start); trials started per second over the whole
span (first start to last report); the driver's CPU seconds per result; the Optuna journal's bytes (ours:
``optuna.journal``; bare keeps its study in memory); and the time the results took after the last report
(the driver's exit, and ``report.md``'s mtime, minus the last ``reported_at``). Also the device seconds
the trials spent against the search's own estimate (ours' ``search.json``), and, sampled every 15 s, the
Ray processes on the nodes: how many, how many are trial workers, and their RSS (and USS on a few).

Ratios: each of ours' figures over bare Ray Tune's at the same size, and ours' driver CPU per result at
the largest size over that at the smallest; per side, a least-squares line of driver CPU seconds over
results across the sizes (a fixed cost per search, and a cost per result). Output: ``--out FILE.json``
(every figure, per size and run, the machine: ``lscpu``'s model name, whether the CPU has avx512_bf16,
the load before and after) and a markdown table on stdout.

Cost: on the 2-core, 24 GiB machine this was written on (commit 97f3762), 128 trials took about 7 minutes
for ours, 7 for bare and 8 for the resume (2 to the SIGTERM, 6 resumed), with 4 nodes, 64 at once and
``--time-scale 1``. Ray started trials at about 1.3 a second for ours (0.9 for bare, a new process each)
while the GPUs had room, and the last trials of the costliest configurations (epochs of up to 96 s)
leave a tail of a few minutes. So the defaults (128, 512 and 1,024 trials, ours and bare at each, the
resume at 1,024) take about 2 hours, 1.5 to 3: how the drivers' CPU per result grows at 1,024 decides. A
trial's process holds about 200 MiB (110 MiB of its own); least free memory was 16 GiB of 24.
``--quick`` (32 trials, 16 at once, 2 nodes x 4 GPUs, ``--time-scale 8``, ``--warmup-s 10``) checks the
script in about 5 minutes. Ray must bind loopback ports: in a sandbox, run it inside a network namespace
as above (every process it starts inherits it). Every process started here is stopped by pid. The
drivers' and nodes' logs stay in ``--work``/logs. Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # tests.loopback; search.* in the bare child

import psutil  # noqa: E402

from tests.loopback import RayNode, free_port, kill_processes, process_tree  # noqa: E402

ENTRY = REPO / "search" / "run_search.py"
PROFILE = "full"
CLK = os.sysconf("SC_CLK_TCK")
POLL_S = 0.5  # the driver's CPU time, read this often
CENSUS_S = 15.0  # the Ray processes on the nodes, counted this often
USS_SAMPLE = 4  # trial workers whose USS (smaps: costly) a census reads


# ----------------------------------------------------------------------------------------------
# the machine


def machine() -> dict:
    model, flags = platform.processor() or platform.machine(), ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                model = value.strip()
            elif key.strip() == "Flags":
                flags = value
    except (OSError, subprocess.SubprocessError):
        pass
    if not flags and Path("/proc/cpuinfo").is_file():
        flags = Path("/proc/cpuinfo").read_text()
    import ray

    return {"cpu_model": model, "avx512_bf16": "avx512_bf16" in flags.split(), "cores": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "system": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "ray": ray.__version__}


def load() -> dict:
    return {"loadavg": list(os.getloadavg()), "uptime": _uptime()}


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# ----------------------------------------------------------------------------------------------
# the cluster


class Cluster:
    """``nodes`` loopback nodes of ``gpus`` logical GPUs and ``cpus`` logical CPUs each, token auth."""

    def __init__(self, nodes: int, gpus: int, cpus: int, work: Path) -> None:
        self.work, self.count = work, nodes
        token = work / "auth_token"
        token.write_text(secrets.token_hex(32))
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
               "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0", "RAY_USAGE_STATS_ENABLED": "0",
               "RAY_AIR_NEW_OUTPUT": "0"}
        for name in ("RAY_AUTH_TOKEN", "RAY_ADDRESS"):
            env.pop(name, None)
        self.env = env  # the drivers' environment
        self.node_env = {**env, "RAY_prestart_worker_first_driver": "0"}  # see the docstring
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.short = Path(tempfile.mkdtemp(prefix="vc-", dir="/tmp"))  # Ray's socket paths stay under 107 bytes
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.nodes: list[RayNode] = []
        self.resources = [f"--num-cpus={cpus}", f"--num-gpus={gpus}"]

    def start(self) -> None:
        self.nodes.append(RayNode("head", ["--head", f"--port={self.port}", "--include-dashboard=false",
                                           *self.resources], self.node_env, self.logs, self.short))
        self.nodes[0].wait_ready()
        for i in range(1, self.count):
            self.nodes.append(RayNode(f"w{i}", [f"--address={self.address}", "--dashboard-agent-listen-port=0",
                                                *self.resources], self.node_env, self.logs, self.short))
            self.nodes[-1].wait_ready()

    def stop(self) -> None:
        for node in reversed(self.nodes):
            try:
                node.stop()
            except Exception as err:  # noqa: BLE001 - the others still stopped
                print(f"  stopping node {node.name}: {err}", file=sys.stderr)
        shutil.rmtree(self.short, ignore_errors=True)

    def processes(self) -> list[psutil.Process]:
        return [p for node in self.nodes for p in process_tree(node.process.pid)]


def census(cluster: Cluster, uss: bool) -> dict:
    """The Ray processes on the nodes now: how many, the trial workers among them and their memory."""
    workers, idle, other_rss = [], 0, 0
    processes = cluster.processes()
    for process in processes:
        try:
            title = " ".join(process.cmdline()[:1])
            rss = process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if title.startswith("ray::IDLE"):
            idle += 1
            other_rss += rss
        elif title.startswith("ray::") and not title.startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent")):
            workers.append((process, title, rss))
        else:
            other_rss += rss
    found = {"processes": len(processes), "trial_workers": len(workers), "idle_workers": idle,
             "worker_rss_mib": [round(rss / 2**20, 1) for _, _, rss in workers],
             "titles": sorted({title.split(" ")[0] for _, title, _ in workers}),
             "other_rss_mib": round(other_rss / 2**20, 1)}
    if uss and workers:
        found["worker_uss_mib"] = []
        for process, _, _ in workers[:USS_SAMPLE]:
            try:
                found["worker_uss_mib"].append(round(process.memory_full_info().uss / 2**20, 1))
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
    return found


def summarize_census(samples: list[dict]) -> dict:
    if not samples:
        return {}
    rss = [r for s in samples for r in s["worker_rss_mib"]]
    uss = [u for s in samples for u in s.get("worker_uss_mib", [])]
    return {"samples": len(samples), "peak_ray_processes": max(s["processes"] for s in samples),
            "peak_trial_workers": max(s["trial_workers"] for s in samples),
            "peak_idle_workers": max(s["idle_workers"] for s in samples),
            "trial_worker_rss_mib_median": round(statistics.median(rss), 1) if rss else None,
            "trial_worker_rss_mib_max": max(rss) if rss else None,
            "trial_worker_uss_mib_median": round(statistics.median(uss), 1) if uss else None,
            "peak_trial_workers_rss_gib": round(max(sum(s["worker_rss_mib"]) for s in samples) / 1024, 2),
            "peak_other_ray_rss_gib": round(max(s["other_rss_mib"] for s in samples) / 1024, 2),
            "worker_titles": sorted({t for s in samples for t in s["titles"]})}


# ----------------------------------------------------------------------------------------------
# a driver, watched


def _own_cpu(pid: int) -> float | None:
    """utime + stime of process ``pid`` alone (not its children), from /proc/PID/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def _rss(pid: int) -> int:
    try:
        return psutil.Process(pid).memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return 0


def watch_driver(command: list[str], env: dict, log: Path, cluster: Cluster, timeout: float,
                 on_poll=None, markers: dict[str, str] | None = None) -> dict:
    """Run ``command`` (its output in ``log``) to its end, or ``timeout``; its CPU, wall, RSS and exit,
    and the seconds after launch at which each of ``markers`` (name: text) first showed in its log.
    ``on_poll(process, elapsed)`` is called every poll (to signal it)."""
    with open(log, "w") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        launched = time.time()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    cpu, peak_rss, samples, next_census, status, rusage = 0.0, 0, [], time.monotonic(), None, None
    seen, read_to, tail, available = {}, 0, "", psutil.virtual_memory().available
    try:
        while True:
            pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if markers and len(seen) < len(markers):
                with open(log, "rb") as text:
                    text.seek(read_to)
                    new = text.read()
                read_to += len(new)
                tail = tail[-200:] + new.decode(errors="replace")  # a marker split between two reads
                for name, marker in markers.items():
                    if name not in seen and marker in tail:
                        seen[name] = time.time() - launched
            available = min(available, psutil.virtual_memory().available)
            cpu = _own_cpu(process.pid) or cpu
            peak_rss = max(peak_rss, _rss(process.pid))
            if time.monotonic() >= next_census:
                samples.append(census(cluster, uss=len(samples) % 4 == 1))
                next_census = time.monotonic() + CENSUS_S
            if on_poll is not None:
                on_poll(process, time.time() - launched)
            if time.time() - launched > timeout:
                raise TimeoutError(f"{' '.join(command[:4])} ... still running after {timeout:.0f} s")
            time.sleep(POLL_S)
    finally:
        if status is None:  # not reaped: a timeout, or this script stopped; its tree, by pid
            kill_processes(process_tree(process.pid))
            process.wait()
    exited = time.time()
    process.returncode = os.waitstatus_to_exitcode(status)
    return {"command": command[1:], "rc": process.returncode, "launched": launched, "exited": exited,
            "wall_s": exited - launched, "driver_cpu_s_polled": cpu,
            "driver_cpu_s": rusage.ru_utime + rusage.ru_stime,  # itself and any child it waited for
            "driver_peak_rss_mib": round(max(peak_rss, rusage.ru_maxrss * 1024) / 2**20, 1),
            "min_available_gib": round(available / 2**30, 2), "log_markers_s": seen,
            "ray": summarize_census(samples), "log": str(log)}


def log_tail(path: str, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ----------------------------------------------------------------------------------------------
# reading an experiment


def reports(experiment: Path) -> dict[str, list[dict]]:
    """Each trial's reports, from Ray Tune's result.json (a half-written line skipped)."""
    found: dict[str, list[dict]] = {}
    for result in experiment.glob("*/result.json"):
        lines = []
        for line in result.read_text(errors="replace").splitlines():
            if line.endswith("}"):
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        lines = [line for line in lines if "reported_at" in line]
        if lines:
            found[lines[0].get("trial_id", result.parent.name)] = lines
    return found


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def reported_trials(experiment: Path) -> int:
    """Trials with a result.json that is not empty: cheap (a stat each), for polling."""
    count = 0
    for result in experiment.glob("*/result.json"):
        try:
            count += result.stat().st_size > 0
        except OSError:
            pass
    return count


def starts(lines: list[dict]) -> list[tuple[float, float, float]]:
    """A trial's runs (a restored trial starts again): (started_at, last reported_at, device_share)."""
    runs: dict[float, list[float]] = {}
    for line in lines:
        span = runs.setdefault(float(line["started_at"]), [float(line["reported_at"]), float(line["device_share"])])
        span[0] = max(span[0], float(line["reported_at"]))
    return [(start, end, share) for start, (end, share) in runs.items()]


def figures(experiment: Path, run: dict, gpus: int, warmup_s: float) -> dict:
    """A run's figures from its trials' results and its driver's measures (``run``)."""
    found = reports(experiment)
    lines = [line for trial in found.values() for line in trial]
    out = {"results": len(lines), "trials_started": len(found),
           "trial_folders": sum(1 for p in experiment.glob("*/params.json")),
           "trials_errored": sum(1 for p in experiment.iterdir() if p.is_dir() and (p / "error.txt").is_file())
           if experiment.is_dir() else 0}
    if not lines:
        return out
    spans = [span for trial in found.values() for span in starts(trial)]
    first = min(s for s, _, _ in spans)
    last = max(e for _, e, _ in spans)
    last_start = max(s for s, _, _ in spans)
    lo, hi = first + warmup_s, last
    window = hi - lo
    busy = sum(share * max(0.0, min(end, hi) - max(start, lo)) for start, end, share in spans)
    busy_all = sum(share * (end - start) for start, end, share in spans)
    # while trials are still being started (to the last start): the search's tail, the last trials of
    # the costliest configurations run to --max-epochs, leaves the GPUs idle on both sides alike
    starting = last_start - lo
    busy_starting = sum(share * max(0.0, min(end, last_start) - max(start, lo)) for start, end, share in spans)
    events = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    at_once = sum(max(0.0, min(end, hi) - max(start, lo)) for start, end, _ in spans) / window if window > 0 else None
    epochs = [max(int(line["epoch"]) for line in trial) for trial in found.values()]
    out.update({
        "first_start_after_launch_s": first - run["launched"], "span_s": last - first,
        "window_s": window if window > 0 else None,
        "gpu_busy_share": busy / (gpus * window) if window > 0 else None,
        "gpu_busy_share_whole_span": busy_all / (gpus * (last - first)) if last > first else None,
        "gpu_busy_share_while_starting": busy_starting / (gpus * starting) if starting > 0 else None,
        "tail_s": last - last_start,
        "peak_at_once": peak, "mean_at_once_in_window": at_once,
        "trials_started_per_s": len(found) / (last - first) if last > first else None,
        "starts_per_s_while_starting": (len(found) - 1) / (last_start - first) if last_start > first else None,
        "results_per_s": len(lines) / (last - first) if last > first else None,
        "driver_cpu_s_per_result": run["driver_cpu_s"] / len(lines),
        "mean_epochs_per_trial": statistics.mean(epochs), "trials_at_max_epochs": sum(e == max(epochs) for e in epochs),
        "device_seconds": sum(trial[-1]["device_seconds"] for trial in found.values()),
        "last_report_after_launch_s": last - run["launched"],
        "exit_after_last_report_s": run["exited"] - last,
        "devices_used": len({line.get("device") for line in lines}),
    })
    report = experiment / "report.md"
    out["report_md_after_last_report_s"] = report.stat().st_mtime - last if report.is_file() else None
    journal = experiment / "optuna.journal"
    out["journal_bytes"] = journal.stat().st_size if journal.is_file() else None
    state = experiment / "search.json"
    if state.is_file():
        estimate = json.loads(state.read_text()).get("estimate") or {}
        expected = estimate.get("expected_s")
        out["estimate"] = {k: v for k, v in estimate.items() if isinstance(v, (int, float, str)) or v is None}
        out["estimate_device_seconds"] = expected
        out["device_seconds_over_estimate"] = out["device_seconds"] / expected if expected else None
    return out


# ----------------------------------------------------------------------------------------------
# the three runs


def search_command(args, size: int, storage: Path, name: str) -> list[str]:
    return [sys.executable, str(ENTRY), "--profile", PROFILE, "--simulate", "--time-scale", f"{args.time_scale:g}",
            "--address", args.address, "--gpu-memory-gb", f"{args.gpu_memory_gb:g}", "--num-samples", str(size),
            "--max-concurrent", str(args.at_once), "--max-epochs", str(args.max_epochs),
            "--grace-period", str(args.grace_period), "--reduction-factor", str(args.reduction_factor),
            "--seed", str(args.seed), "--storage", str(storage), "--name", name]


OURS_MARKERS = {"ray_connected": "Ray: ", "search_starts": "[4/4] search",
                "scheduler_restored": "the scheduler's state is back"}
BARE_MARKERS = {"ray_connected": "Connected to Ray cluster", "study_created": "A new study created"}


def _finish(experiment: Path, run: dict, args, label: str) -> dict:
    if run["rc"] != 0:
        print(f"  {label}: the driver exited {run['rc']}; the end of {run['log']}:\n{log_tail(run['log'])}",
              file=sys.stderr, flush=True)
        run["log_tail"] = log_tail(run["log"])
    run.update(figures(experiment, run, args.gpus, args.warmup_s))
    if not args.keep_storage:
        shutil.rmtree(experiment, ignore_errors=True)
    return run


def run_env(args, cluster: Cluster, name: str) -> dict:
    """The drivers' environment, with a counts folder of this run's own (``vidseg.train.counted``): each
    run plans its trials' memory from nothing, as a first search on a machine does; a resume reads what
    its stopped driver kept."""
    return {**cluster.env, "VIDSEG_CACHE": str(args.storage.parent / "counted" / name)}


def run_ours(args, cluster: Cluster, size: int) -> dict:
    name = f"ours-{size}"
    run = watch_driver(search_command(args, size, args.storage, name), run_env(args, cluster, name),
                       cluster.logs / f"{name}.log",
                       cluster, args.run_timeout, markers=OURS_MARKERS)
    return _finish(args.storage / name, run, args, name)


def run_resume(args, cluster: Cluster, size: int) -> dict:
    """The search stopped by SIGTERM once half its trials have reported, and resumed to its end."""
    name = f"resume-{size}"
    experiment = args.storage / name
    signalled: dict = {}

    def stop_at_half(process, elapsed):
        if not signalled and reported_trials(experiment) >= max(1, size // 2):
            signalled.update(at=time.time(), trials=reported_trials(experiment))
            process.send_signal(signal.SIGTERM)

    first = watch_driver(search_command(args, size, args.storage, name), run_env(args, cluster, name),
                         cluster.logs / f"{name}-stopped.log", cluster, args.run_timeout, on_poll=stop_at_half,
                         markers=OURS_MARKERS)
    stopped = {"rc": first["rc"], "wall_s": first["wall_s"], "driver_cpu_s": first["driver_cpu_s"],
               "sigterm_after_launch_s": signalled["at"] - first["launched"] if signalled else None,
               "trials_reported_at_sigterm": signalled.get("trials"),
               "exit_after_sigterm_s": first["exited"] - signalled["at"] if signalled else None,
               "min_available_gib": first["min_available_gib"], "log_markers_s": first["log_markers_s"],
               "ray": first["ray"]}
    before = reports(experiment)
    stopped.update(trials_started=len(before), results=sum(len(lines) for lines in before.values()))
    if first["rc"] != 143:  # it failed, or ended before half its trials reported: nothing to resume
        print(f"  {name}: the stopped driver exited {first['rc']}, not 143: no resume", file=sys.stderr, flush=True)
        return _finish(experiment, {**first, "stopped": stopped, "restart_s": None}, args, name)
    command = [sys.executable, str(ENTRY), "--resume", "--storage", str(args.storage), "--name", name,
               "--address", args.address]
    resumed: dict = {}

    def stop_once_restarted(process, elapsed):  # --resume-for: SIGTERM that long after the first new report
        if args.resume_for is None or "at" in resumed or elapsed < resumed.get("next", 0.0):
            return
        resumed["next"] = elapsed + 2.0
        launched = time.time() - elapsed
        if "first" not in resumed and any(_mtime(path) > launched for path in experiment.glob("*/result.json")):
            resumed["first"] = time.time()
        if "first" in resumed and time.time() - resumed["first"] >= args.resume_for:
            resumed["at"] = time.time()
            process.send_signal(signal.SIGTERM)

    run = watch_driver(command, run_env(args, cluster, name), cluster.logs / f"{name}-resumed.log", cluster,
                       args.run_timeout, on_poll=stop_once_restarted, markers=OURS_MARKERS)
    if "at" in resumed and run["rc"] == 143:  # stopped as asked, not failed
        run["rc"], run["stopped_after_restart_s"] = 0, args.resume_for
    after = reports(experiment)
    new = [line for lines in after.values() for line in lines if line["reported_at"] > run["launched"]]
    new_starts = [s for lines in after.values() for s, _, _ in starts(lines) if s > run["launched"]]
    run["restart_s"] = min(line["reported_at"] for line in new) - run["launched"] if new else None
    run["first_new_start_s"] = min(new_starts) - run["launched"] if new_starts else None
    run["results_after_resume"] = len(new)
    run["stopped"] = stopped
    run = _finish(experiment, run, args, name)
    # the whole-search figures above span both drivers; the driver CPU per result is the resumed driver's alone
    run["driver_cpu_s_per_result"] = run["driver_cpu_s"] / len(new) if new else None
    return run


def run_bare(args, cluster: Cluster, size: int) -> dict:
    name = f"bare-{size}"
    spec = {"address": args.address, "storage": str(args.storage), "name": name, "num_samples": size,
            "at_once": args.at_once, "max_epochs": args.max_epochs, "grace_period": args.grace_period,
            "reduction_factor": args.reduction_factor, "seed": args.seed, "time_scale": args.time_scale,
            "gpu_memory_gb": args.gpu_memory_gb, "resources": args.bare_resources}
    command = [sys.executable, str(Path(__file__).resolve()), "--bare-child", json.dumps(spec)]
    run = watch_driver(command, run_env(args, cluster, name), cluster.logs / f"{name}.log", cluster, args.run_timeout,
                       markers=BARE_MARKERS)
    return _finish(args.storage / name, run, args, name)


def bare_child(spec: dict) -> int:
    """Bare Ray Tune over the same simulated trials: what a user would write without this project."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from search.run.settings import Settings
    from search.run.simulate import SimulatedResources, simulated_trial, table_path
    from search.run.trainable import trial_resources

    try:  # built on the driver by search.tools.simulation since commit a0bd52a
        from search.tools.simulation import build_world
    except ImportError:
        from search.run.simulate import build_world
    from search.space import PROFILES, SearchSpace

    profile = PROFILES[PROFILE]
    settings = Settings(profile=PROFILE, num_samples=spec["num_samples"], max_epochs=spec["max_epochs"],
                        grace_period=spec["grace_period"], reduction_factor=spec["reduction_factor"],
                        max_concurrent=spec["at_once"], seed=spec["seed"], gpu_memory_gb=spec["gpu_memory_gb"],
                        simulate=str(table_path(profile, None)), time_scale=spec["time_scale"])
    ray.init(address=spec["address"])
    world = build_world(profile, settings, dict(profile.counts))
    if spec["resources"] == "search":  # what the search ships with simulated trials (search.run.tuner.make_trainable)
        resources = SimulatedResources(profile.cpus_per_trial, profile.resolution, spec["gpu_memory_gb"],
                                       dict(profile.counts))
    else:  # the same resources from the real trainable's function: unpickled in each trial's process, it imports torch
        resources = trial_resources(profile.cpus_per_trial, profile.resolution, spec["gpu_memory_gb"],
                                    dict(profile.counts))
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(simulated_trial, world=world), resources),
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(space=SearchSpace(profile, spec["max_epochs"], spec["seed"]), metric="val_iou",
                                    mode="max", seed=spec["seed"]),
            scheduler=ASHAScheduler(time_attr="epoch", metric="val_iou", mode="max", max_t=spec["max_epochs"],
                                    grace_period=spec["grace_period"], reduction_factor=spec["reduction_factor"]),
            num_samples=spec["num_samples"], max_concurrent_trials=spec["at_once"]),
        run_config=tune.RunConfig(storage_path=spec["storage"], name=spec["name"], verbose=0))
    results = tuner.fit()
    errors = [r.error for r in results if r.error is not None]
    best = results.get_best_result(metric="val_iou", mode="max")
    print(f"bare Ray Tune: {len(results)} trials, {len(errors)} errored, best val IoU "
          f"{best.metrics.get('val_iou') if best else None}", flush=True)
    return 0 if len(errors) < len(results) else 1


# ----------------------------------------------------------------------------------------------
# output


KEYS = [  # (key, label, format)
    ("wall_s", "wall s", "{:.0f}"),
    ("driver_cpu_s", "driver CPU s", "{:.1f}"),
    ("results", "results", "{:d}"),
    ("trials_started", "trials started", "{:d}"),
    ("trials_errored", "errored", "{:d}"),
    ("driver_cpu_s_per_result", "CPU s/result", "{:.3f}"),
    ("gpu_busy_share", "GPU busy", "{:.1%}"),
    ("gpu_busy_share_while_starting", "GPU busy while starting", "{:.1%}"),
    ("tail_s", "tail s", "{:.0f}"),
    ("peak_at_once", "peak at once", "{:d}"),
    ("mean_at_once_in_window", "mean at once", "{:.1f}"),
    ("trials_started_per_s", "trials/s", "{:.3f}"),
    ("journal_bytes", "journal KiB", "kib"),
    ("exit_after_last_report_s", "results after last report s", "{:.1f}"),
    ("driver_peak_rss_mib", "driver RSS MiB", "{:.0f}"),
    ("min_available_gib", "least memory free GiB", "{:.1f}"),
]
RATIO_KEYS = ["wall_s", "driver_cpu_s", "results", "trials_started", "driver_cpu_s_per_result", "gpu_busy_share",
              "gpu_busy_share_while_starting",
              "mean_at_once_in_window", "trials_started_per_s", "exit_after_last_report_s", "driver_peak_rss_mib"]


def _cell(value, fmt: str) -> str:
    if value is None:
        return "-"
    if fmt == "kib":
        return f"{value / 1024:.0f}"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def ratios(runs: dict) -> dict:
    """Ours over bare at each size; ours' CPU per result at the largest size over the smallest."""
    out: dict = {}
    for size, by_kind in runs.items():
        ours, bare = by_kind.get("ours"), by_kind.get("bare")
        if ours and bare:
            out[f"ours/bare@{size}"] = {k: (ours[k] / bare[k] if isinstance(ours.get(k), (int, float))
                                            and isinstance(bare.get(k), (int, float)) and bare[k] else None)
                                        for k in RATIO_KEYS}
    sizes = sorted(s for s in runs if runs[s].get("ours", {}).get("driver_cpu_s_per_result"))
    if len(sizes) > 1:
        big, small = runs[sizes[-1]]["ours"], runs[sizes[0]]["ours"]
        out[f"ours@{sizes[-1]}/ours@{sizes[0]}"] = {
            "driver_cpu_s_per_result": big["driver_cpu_s_per_result"] / small["driver_cpu_s_per_result"]}
    return out


def cpu_fits(runs: dict) -> dict:
    """Per kind over the sizes: driver CPU s = fixed + per_result x results (least squares)."""
    fits = {}
    for kind in ("ours", "bare"):
        points = [(r[kind]["results"], r[kind]["driver_cpu_s"]) for r in runs.values()
                  if r.get(kind, {}).get("results")]
        if len({x for x, _ in points}) > 1:
            mx, my = statistics.mean(x for x, _ in points), statistics.mean(y for _, y in points)
            slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
            fits[kind] = {"fixed_s": my - slope * mx, "per_result_s": slope, "points": points}
    return fits


def table(runs: dict, found_ratios: dict) -> str:
    header = ["size", "run", *[label for _, label, _ in KEYS]]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for size, by_kind in runs.items():
        for kind, run in by_kind.items():
            rows.append("| " + " | ".join([str(size), kind, *[_cell(run.get(k), f) for k, _, f in KEYS]]) + " |")
    lines = rows
    if found_ratios:
        lines += ["", "| ratio | " + " | ".join(RATIO_KEYS) + " |", "|" + "---|" * (len(RATIO_KEYS) + 1)]
        for name, values in found_ratios.items():
            lines.append(f"| {name} | " + " | ".join("-" if values.get(k) is None else f"{values[k]:.2f}"
                                                   for k in RATIO_KEYS) + " |")
    resumed = [(size, r["resume"]) for size, r in runs.items() if "resume" in r]
    if resumed:
        lines += ["", "| size | stopped after s | trials at SIGTERM | SIGTERM to exit s | exit code | restart s "
                      "(resume launched to first new report) | first new trial start s | resumed driver CPU s | "
                      "resumed wall s | trials in all |", "|" + "---|" * 10]
        for size, r in resumed:
            stopped = r["stopped"]
            lines.append(f"| {size} | {_cell(stopped.get('sigterm_after_launch_s'), '{:.0f}')} | "
                         f"{_cell(stopped.get('trials_reported_at_sigterm'), '{:d}')} | "
                         f"{_cell(stopped.get('exit_after_sigterm_s'), '{:.1f}')} | {stopped['rc']} | "
                         f"{_cell(r.get('restart_s'), '{:.1f}')} | {_cell(r.get('first_new_start_s'), '{:.1f}')} | "
                         f"{r['driver_cpu_s']:.1f} | {r['wall_s']:.0f} | {r.get('trials_started')} |")
    return "\n".join(lines)


def memory_line(runs: dict) -> str:
    rows = []
    for size, by_kind in runs.items():
        for kind, run in by_kind.items():
            if run.get("log_markers_s"):
                first = run.get("first_new_start_s") if kind == "resume" else run.get("first_start_after_launch_s")
                marks = ", ".join(f"{k} {v:.0f} s" for k, v in run["log_markers_s"].items())
                rows.append(f"{size} {kind}: after launch, {marks}"
                            + f", first {'new ' if kind == 'resume' else ''}trial start {_cell(first, '{:.0f}')} s; "
                              f"least memory available {run.get('min_available_gib')} GiB")
    for size, by_kind in runs.items():
        for kind, run in by_kind.items():
            ray_seen = run.get("ray") or {}
            if ray_seen.get("trial_worker_rss_mib_median") is not None:
                rows.append(f"{size} {kind}: peak {ray_seen['peak_ray_processes']} Ray processes, "
                            f"{ray_seen['peak_trial_workers']} trial workers (RSS median "
                            f"{ray_seen['trial_worker_rss_mib_median']:.0f} MiB, "
                            f"max {ray_seen['trial_worker_rss_mib_max']:.0f}; "
                            f"USS median {_cell(ray_seen.get('trial_worker_uss_mib_median'), '{:.0f}')} MiB)")
    return "\n".join(rows)


# ----------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, nargs="+", default=None,
                        help="search sizes, in trials (default 128 512 1024; --quick 32)")
    parser.add_argument("--at-once", type=int, default=None, help="trials at once, both sides (default 64; --quick 16)")
    parser.add_argument("--nodes", type=int, default=None, help="loopback Ray nodes (default 4; --quick 2)")
    parser.add_argument("--gpus-per-node", type=int, default=4, help="logical GPUs per node (default 4)")
    parser.add_argument("--cpus-per-node", type=int, default=64,
                        help="logical CPUs per node, enough that CPUs never limit (default 64; a trial asks 2)")
    parser.add_argument("--gpu-memory-gb", type=float, default=22.0,
                        help="one GPU's memory, for packing (default 22: an A10G)")
    parser.add_argument("--time-scale", type=float, default=None,
                        help="simulated seconds per wall second (default 1: epochs of a few wall seconds; --quick 8)")
    parser.add_argument("--max-epochs", type=int, default=9, help="a trial's epochs if never stopped (default 9)")
    parser.add_argument("--grace-period", type=int, default=1, help="ASHA's first rung (default 1)")
    parser.add_argument("--reduction-factor", type=int, default=3, help="ASHA's reduction factor (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="the searches' seed (default 0)")
    parser.add_argument("--warmup-s", type=float, default=None,
                        help="the GPU busy share's window starts this long after the first trial started "
                             "(default 60; --quick 10)")
    parser.add_argument("--bare-resources", choices=("search", "trainable"), default="search",
                        help="bare Ray Tune's per-trial resources: search: search.run.simulate.SimulatedResources, "
                             "what the search ships with simulated trials (default: the same trial processes on both "
                             "sides); trainable: search.run.trainable.trial_resources, the same values, but each "
                             "trial's process then imports torch (about 370 MiB of its own), as ours did before "
                             "commit 3d1925e")
    parser.add_argument("--parts", default="ours,resume,bare",
                        help="which runs, comma-separated from ours, resume, bare (default all three)")
    parser.add_argument("--resume-sizes", choices=("largest", "all"), default="largest",
                        help="the sizes the resume run is made at (default: the largest only)")
    parser.add_argument("--resume-for", type=float, default=None, metavar="S",
                        help="stop the resumed driver (SIGTERM) S seconds after its first new report, once its "
                             "restart is measured (default: run it to the end)")
    parser.add_argument("--run-timeout", type=float, default=3 * 3600, help="seconds one run may take (default 3 h)")
    parser.add_argument("--quick", action="store_true",
                        help="a check of the script: 32 trials, 16 at once, 2 nodes x 4 GPUs, --time-scale 8, "
                             "--warmup-s 10 (about 5 minutes on 2 cores)")
    parser.add_argument("--out", type=Path, default=None, help="write every figure to this JSON file")
    parser.add_argument("--work", type=Path, default=None,
                        help="the runs' storage and logs (default: a new temporary folder; each run's storage is "
                             "deleted once read, the drivers' logs are kept there)")
    parser.add_argument("--keep-storage", action="store_true", help="keep each run's storage folder")
    parser.add_argument("--bare-child", default=None, help=argparse.SUPPRESS)  # internal: the bare Ray Tune driver
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {"trials": [32] if quick else [128, 512, 1024], "at_once": 16 if quick else 64,
                "nodes": 2 if quick else 4, "time_scale": 8.0 if quick else 1.0, "warmup_s": 10.0 if quick else 60.0}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    parts = args.parts.split(",")
    unknown = [p for p in parts if p not in ("ours", "resume", "bare")]
    if unknown:
        parser.error(f"--parts {','.join(unknown)}: no such run; valid: ours, resume, bare")
    args.parts = parts
    args.gpus = args.nodes * args.gpus_per_node
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.bare_child is not None:
        return bare_child(json.loads(args.bare_child))
    work = Path(tempfile.mkdtemp(prefix="bench_cluster_sim_")) if args.work is None else args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    args.storage = work / "storage"
    args.storage.mkdir(exist_ok=True)
    out = {"bench": "bench_cluster_sim", "date": datetime.now().isoformat(timespec="seconds"), "machine": machine(),
           "load_before": load(),
           "settings": {k: v for k, v in vars(args).items() if k not in ("bare_child", "storage", "out", "work")},
           "runs": {}}
    out["settings"]["profile"] = PROFILE
    print(f"machine: {out['machine']['cpu_model']}, {out['machine']['cores']} cores, avx512_bf16 "
          f"{out['machine']['avx512_bf16']}; {out['load_before']['uptime']}", flush=True)
    cluster = Cluster(args.nodes, args.gpus_per_node, args.cpus_per_node, work)
    started = time.perf_counter()
    try:
        print(f"starting {args.nodes} loopback nodes x {args.gpus_per_node} logical GPUs, {args.cpus_per_node} CPUs "
              f"each (token auth) ...", flush=True)
        cluster.start()
        args.address = cluster.address
        idle = census(cluster, uss=False)
        out["cluster"] = {"nodes": args.nodes, "gpus": args.gpus, "address": cluster.address,
                          "idle_ray_processes": idle["processes"],
                          "idle_ray_rss_gib": round(idle["other_rss_mib"] / 1024, 2)}
        print(f"  up in {time.perf_counter() - started:.0f} s: {idle['processes']} Ray processes", flush=True)
        for size in args.trials:
            by_kind = out["runs"].setdefault(size, {})
            plan = [kind for kind in ("ours", "bare", "resume") if kind in args.parts
                    and (kind != "resume" or args.resume_sizes == "all" or size == max(args.trials))]
            for kind in plan:
                print(f"{kind} at {size} trials, {args.at_once} at once ...", flush=True)
                ran = {"ours": run_ours, "bare": run_bare, "resume": run_resume}[kind](args, cluster, size)
                by_kind[kind] = ran
                print(f"  rc {ran['rc']}, {ran['wall_s']:.0f} s, driver CPU {ran['driver_cpu_s']:.1f} s, "
                      f"{ran.get('results', 0)} results from {ran.get('trials_started', 0)} trials, "
                      f"GPU busy {_cell(ran.get('gpu_busy_share'), '{:.1%}')}, peak at once "
                      f"{ran.get('peak_at_once', '-')}" + (f", restart {_cell(ran.get('restart_s'), '{:.1f}')} s"
                                                           if kind == "resume" else ""), flush=True)
                if args.out:  # what is measured so far, kept if a later run fails
                    _write(args.out, out)
    finally:
        cluster.stop()
        if not args.keep_storage:
            shutil.rmtree(args.storage, ignore_errors=True)
        print(f"the drivers' and nodes' logs: {cluster.logs}", flush=True)
    out["load_after"] = load()
    out["wall_s"] = time.perf_counter() - started
    out["ratios"] = ratios(out["runs"])
    out["driver_cpu_fit"] = cpu_fits(out["runs"])
    text = table(out["runs"], out["ratios"])
    for kind, fit in out["driver_cpu_fit"].items():
        text += (f"\n{kind}: driver CPU = {fit['fixed_s']:.1f} s + {fit['per_result_s'] * 1000:.1f} ms x results "
                 f"(least squares over {len(fit['points'])} sizes)")
    print("\n" + text + "\n\n" + memory_line(out["runs"]))
    print(f"\nwall time {out['wall_s']:.0f} s; {out['load_after']['uptime']}")
    if args.out:
        _write(args.out, out)
        print(f"figures: {args.out}")
    return 0


def _write(path: Path, out: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=str) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
