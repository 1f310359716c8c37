"""A GPU cluster rehearsed on loopback: two nodes of four logical GPUs each, and the real search of
the ``full`` profile over simulated trials (``--simulate``, ``search.run.simulate``), packed for
A10Gs (``--gpu-memory-gb 22``), 32 trials of up to 9 epochs, 16 at once, a simulated epoch a few wall
seconds (``--time-scale 3``: long beside a trial process's start on two cores, as a GPU epoch is
beside it on a cluster). Two searches: one stopped by SIGTERM and resumed, one kept to a budget.

Every process started here is stopped by pid.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import RAY, read_leaderboard
from tests.loopback import RayNode, driver_process, free_port, token_env

pytestmark = RAY

SCRIPT = str(Path(__file__).resolve().parents[2] / "search" / "run_search.py")
TRIALS, AT_ONCE, EPOCHS, GPUS = 32, 16, 9, 8
FOUR_GPUS = ["--num-cpus=16", "--num-gpus=4"]  # logical: the full profile's trials ask for 2 CPUs and a GPU share


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a worker node on 127.0.0.1, four logical GPUs each; yields the address and env."""
    tmp_path = tmp_path_factory.mktemp("simulated")
    env = token_env(tmp_path)
    port, nodes = free_port(), []
    short = Path(tempfile.mkdtemp(prefix="vs-", dir="/tmp"))  # Ray's socket paths must stay under 107 bytes
    try:
        nodes.append(RayNode("head", ["--head", f"--port={port}", "--include-dashboard=false", *FOUR_GPUS], env,
                             tmp_path, short))
        nodes[0].wait_ready()
        nodes.append(RayNode("w1", [f"--address=127.0.0.1:{port}", "--dashboard-agent-listen-port=0", *FOUR_GPUS],
                             env, tmp_path, short))
        nodes[1].wait_ready()
        yield f"127.0.0.1:{port}", env
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(short, ignore_errors=True)


def _search(address: str, storage: Path, name: str, *more: str) -> list[str]:
    return [sys.executable, SCRIPT, "--profile", "full", "--simulate", "--time-scale", "3", "--address", address,
            "--gpu-memory-gb", "22", "--num-samples", str(TRIALS), "--max-concurrent", str(AT_ONCE),
            "--max-epochs", str(EPOCHS), "--grace-period", "1", "--reduction-factor", "3", "--storage", str(storage),
            "--name", name, *more]


def _reports(experiment: Path) -> dict[str, list[dict]]:
    """Each trial's reports, from Ray Tune's result.json (a half-written last line skipped)."""
    found = {}
    for result in experiment.glob("*/result.json"):
        lines = [json.loads(line) for line in result.read_text().splitlines() if line.endswith("}")]
        if lines:
            found[lines[0]["trial_id"]] = lines
    return found


def _spent(reports: dict[str, list[dict]]) -> float:
    return sum(lines[-1]["device_seconds"] for lines in reports.values())


def _in_flight_when_spent(reports: dict[str, list[dict]], budget: float) -> float:
    """The device seconds of the epochs running (begun, and reported then or later) when the reports'
    spend first passed ``budget``; 0 where it never did."""
    epochs = []  # (began, reported, cost)
    for lines in reports.values():
        for i, line in enumerate(lines):
            began = lines[i - 1]["reported_at"] if i else line["started_at"]
            epochs.append((began, line["reported_at"], line["device_seconds"] - (lines[i - 1]["device_seconds"] if i else 0)))
    spent = 0.0
    for began, reported, cost in sorted(epochs, key=lambda epoch: epoch[1]):
        spent += cost
        if spent > budget:
            return sum(c for b, r, c in epochs if b < reported <= r)  # the one that passed it, and those running
    return 0.0


def _peak_at_once(reports: dict[str, list[dict]]) -> int:
    spans = sorted((t, d) for lines in reports.values() for t, d in ((lines[0]["started_at"], 1),
                                                                      (lines[-1]["reported_at"], -1)))
    running = peak = 0
    for _, step in spans:
        running += step
        peak = max(peak, running)
    return peak


def _replayed(reports: dict[str, list[dict]], settings: dict) -> dict[str, int]:
    """The epochs each trial runs when every result, in the order the search decided on it (its
    ``decided_at``: two trials' reports can reach the driver in either order), reaches a new
    scheduler of the search's settings: the search as if never stopped."""
    from search.run.settings import Settings
    from search.space import PROFILES
    from search.tools.simulation import build_world
    from tests.search.test_faults import _replayed as replayed

    floor = build_world(PROFILES["full"], Settings.from_dict(settings), dict(PROFILES["full"].counts)).floor
    ordered = sorted((line["decided_at"], line["trial_id"], line) for lines in reports.values() for line in lines)
    return replayed([(trial_id, line) for _, trial_id, line in ordered], settings, floor)


def test_a_stopped_and_resumed_simulated_search_packs_ends_every_trial_as_if_never_stopped(cluster, tmp_path):
    """SIGTERM once the first trials have reported, then ``--resume``: every trial ends, more run at
    once than there are GPUs (packed, a GPU to several), the scheduler stops each where one that saw
    every result straight through stops it, and the device time spent falls in the estimate's range."""
    address, env = cluster
    experiment = tmp_path / "term"
    with driver_process(_search(address, tmp_path, "term"), env=env) as driver:
        deadline = time.monotonic() + 240
        while len(_reports(experiment)) < AT_ONCE and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert driver.poll() is None, "the search ended before it could be stopped"
        driver.send_signal(signal.SIGTERM)
        _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 143, stderr[-3000:]
    assert "simulated trials: learning curves from" in stderr
    before = _reports(experiment)
    resumed = subprocess.run([sys.executable, SCRIPT, "--resume", "--storage", str(tmp_path), "--name", "term",
                              "--address", address], capture_output=True, text=True, timeout=300, env=env)
    open("/tmp/resumed.txt", "w").write(resumed.stderr + "\n=====\n" + stderr)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = read_leaderboard(experiment)
    assert len(rows) == TRIALS and all(r["status"] == "TERMINATED" for r in rows) and len(before) < TRIALS
    reports = _reports(experiment)
    assert min(lines[-1]["device_share"] for lines in reports.values()) < 1
    assert len({lines[-1]["device"] for lines in reports.values()}) <= GPUS
    assert _peak_at_once(reports) > GPUS  # more trials at once than GPUs: packed, a GPU to several
    saved = json.loads((experiment / "search.json").read_text())
    assert {r["trial_id"]: int(r["epochs"]) for r in rows} == _replayed(reports, saved["settings"])
    # the estimate replays 16 trials at once; two cores start fewer (about a second of CPU a trial
    # process), and ASHA stops more where fewer run at once: here a search spends 0.66-0.9x the
    # estimate (docs/performance.md), under the replays' range when the machine is loaded
    low, high = saved["estimate"]["expected_range_s"]
    assert 0.5 * saved["estimate"]["expected_s"] <= _spent(reports) <= high, (_spent(reports), saved["estimate"])


def test_the_budget_ends_a_simulated_search_at_its_budget(cluster, tmp_path):
    address, env = cluster
    budget = 250.0  # device seconds: about 60% of what the 32 trials spent in a search kept to 400 s (25-28 ran)
    with driver_process(_search(address, tmp_path, "budget", "--budget", f"{budget:.0f}s"), env=env) as driver:
        stdout, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 0, stderr[-3000:]
    reports = _reports(tmp_path / "budget")
    spent = _spent(reports)
    # no trial starts whose expected cost would overrun it, so it ends less than a trial's expected
    # cost under it; and it overruns it by at most the epochs in flight when it was spent (a costly
    # configuration's first epoch among them can be several times a trial's expected cost)
    trial_s = json.loads((tmp_path / "budget" / "search.json").read_text())["estimate"]["trial_s"]
    in_flight = _in_flight_when_spent(reports, budget)
    assert budget - 1.5 * trial_s <= spent <= budget + in_flight + 0.01 * budget, (spent, trial_s, in_flight)
    said = stderr + stdout  # the limiter ended it (none fits), or the stopper (spent, or one more epoch would be)
    assert "the budget of 4m 10s ended it" in said or "the budget of 4m 10s is spent" in said
