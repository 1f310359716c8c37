"""The main job's wall time by stage: demo data generation, UNet, shards, search, from a cold cache.

    python tests/bench/bench_e2e.py                        # run_search.py --smoke-test: a few minutes
    python tests/bench/bench_e2e.py --full                 # the real default demo (about 15+ minutes on 2 cores)
    python tests/bench/bench_e2e.py --full -- --num-samples 4   # flags after -- go to run_search.py

It runs ``python search/run_search.py`` as a subprocess with a fresh ``--data-dir`` and ``--storage`` in a
temporary folder (so nothing is cached), reads its log lines as they come, and prints seconds per stage:
both what the job logs itself ("copy-last-frame IoU ... (N s)", "UNet val IoU ... (N s)", "shards ready
(N s)", "search finished in N s") and the time observed here between its stage markers, with the
stages the job does not time (start-up, dataset check and Ray start, writing results) in between.

The job starts Ray: in a sandbox run this in a network namespace,
``unshare -rn sh -c 'ip link set lo up && python tests/bench/bench_e2e.py'``. Not part of the tests.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: tests.loopback

from tests.loopback import kill_processes, process_tree  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

# marker -> pattern of run_search.py's log line (search/run_search.py); group 1, where present, is the
# seconds the job logged for the stage that line ends
MARKERS = {
    "generate": re.compile(r"^\[0/4\] demo dataset "),
    "generated": re.compile(r"^\s*copy-last-frame IoU on val: \S+ \((\d+) s\)"),
    "check": re.compile(r"^\[1/4\] checking the dataset "),
    "ray": re.compile(r"^Ray: \d+ CPU"),
    "unet": re.compile(r"^\[2/4\] UNet "),
    "unet_done": re.compile(r"^\s*UNet (?:val IoU \S+|ready) .*\((\d+) s\)"),
    "shards": re.compile(r"^\[3/4\] pre-segmenting "),
    "shards_done": re.compile(r"^\s*shards ready \((\d+) s\)"),
    "search": re.compile(r"^\[4/4\] search "),
    "search_done": re.compile(r"^search finished in (\d+) s"),
    "results": re.compile(r"^results: "),
}

# (stage, from marker, to marker, marker whose group 1 is the logged seconds)
STAGES = (
    ("start-up (imports)", "<start>", "generate", None),
    ("generation", "generate", "generated", "generated"),
    ("dataset check + Ray start", "check", "unet", None),
    ("UNet", "unet", "unet_done", "unet_done"),
    ("shards", "shards", "shards_done", "shards_done"),
    ("search set-up", "shards_done", "search", None),
    ("search", "search", "search_done", "search_done"),
    ("results + shutdown", "search_done", "<end>", None),
)


def run(command: list[str], env: dict[str, str], log_path: Path, echo: bool) -> tuple[int, dict, dict, float]:
    """Run the job; returns (exit code, marker -> seconds since start, marker -> logged seconds, wall)."""
    seen: dict[str, float] = {}
    logged: dict[str, float] = {}
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, bufsize=1, start_new_session=True)
    try:
        with open(log_path, "w") as log:
            for line in process.stdout:
                now = time.perf_counter() - started
                log.write(line)
                text = line.rstrip("\n")
                for key, pattern in MARKERS.items():
                    match = pattern.search(text)
                    if match and key not in seen:
                        seen[key] = now
                        if match.groups():
                            logged[key] = float(match.group(1))
                        if not echo:
                            print(f"  {now:7.1f} s  {text.strip()}", flush=True)
                        break
                if echo:
                    print(f"  {now:7.1f} s  {text}", flush=True)
        code = process.wait()
    finally:
        if process.poll() is None:  # interrupted: stop the job and its children, by pid
            kill_processes(process_tree(process.pid))
            process.wait()
    return code, seen, logged, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     usage="%(prog)s [--full] [--keep DIR] [--echo] [-- RUN_SEARCH_FLAGS ...]")
    parser.add_argument("--full", action="store_true", help="the real default demo (no --smoke-test)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="work in this (new or empty) folder and keep it (default: a temporary folder, removed)")
    parser.add_argument("--echo", action="store_true", help="echo every line of the job, not only its stage lines")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)

    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        if any(args.keep.iterdir()):
            parser.error(f"--keep {args.keep}: not empty (the run must start from a cold cache)")
        work = args.keep.resolve()
    else:
        work = Path(tempfile.mkdtemp(prefix="bench_e2e_"))
    ray_tmp = Path(tempfile.mkdtemp(prefix="ve-", dir="/tmp"))  # Ray's socket paths must stay under 107 bytes
    command = [sys.executable, "search/run_search.py", *([] if args.full else ["--smoke-test"]),
               "--data-dir", str(work / "data"), "--storage", str(work / "results"), "--name", "e2e", *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(ray_tmp), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)  # a local Ray, as the default run has
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
    try:
        import torch

        if torch.cuda.is_available():
            machine += f", {torch.cuda.device_count()} x {torch.cuda.get_device_name()}"
    except ImportError:
        pass
    print(f"machine: {machine}")
    print(f"running: {' '.join(command)}", flush=True)
    try:
        code, seen, logged, wall = run(command, env, work / "run_search.log", args.echo)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    seen["<start>"], seen["<end>"] = 0.0, wall

    print(f"\n{'stage':<28} {'logged s':>9} {'observed s':>11} {'share':>7}")
    for stage, begin, end, own in STAGES:
        observed = seen[end] - seen[begin] if begin in seen and end in seen else None
        own_s = f"{logged[own]:.0f}" if own in logged else "-"
        observed_s = f"{observed:.1f}" if observed is not None else "-"
        share = f"{observed / wall:.1%}" if observed is not None else "-"
        print(f"{stage:<28} {own_s:>9} {observed_s:>11} {share:>7}")
    print(f"{'total wall time':<28} {'':>9} {wall:>11.1f} {1:>7.0%}")
    missing = [key for key in MARKERS if key not in seen]
    if missing:
        print(f"note: no log line for {', '.join(missing)} (search/run_search.py's format may have changed)")
    if code != 0:
        print(f"error: run_search.py exited {code}; its output: {work / 'run_search.log'}")
        tail = (work / "run_search.log").read_text().splitlines()[-30:]
        print("\n".join(tail))
    profile = "demo" if args.full else "smoke"
    stages = {stage: seen[end] - seen[begin] for stage, begin, end, _ in STAGES if begin in seen and end in seen}
    biggest = max(stages, key=stages.get) if stages else "-"
    print(f"summary: the {profile} run took {wall:.0f} s from a cold cache; the largest stage is {biggest} "
          f"({stages.get(biggest, float('nan')):.0f} s)" + ("" if code == 0 else f"; it FAILED (exit {code})"))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept: {work} (data, results, run_search.log)")
    sys.exit(0 if code == 0 else 1)


if __name__ == "__main__":
    main()
