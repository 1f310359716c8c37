"""A search bounded by device time (``--budget``), its estimate before the first trial
(``--estimate-only``), and the one-line refusals of a budget that buys nothing."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import RAY, read_leaderboard, run_main

SCRIPT = "search/run_search.py"


@pytest.mark.parametrize("budget, says", [("0", "--budget 0 is no time at all"), ("-5m", "--budget -5m is negative"),
                                          ("3x", "--budget 3x: no unit 'x'"), ("20", "--budget 20 has no unit")])
def test_a_budget_of_nothing_or_no_unit_is_refused_in_one_line(budget, says, tmp_path, capsys):
    from search.run_search import main

    done = run_main(main, "--smoke-test", f"--budget={budget}", "--storage", str(tmp_path / "results"), capsys=capsys)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip().splitlines()[-1]]
    assert done.stderr.strip().startswith(f"error: {says}")
    assert not (tmp_path / "results").exists()


def test_the_full_profile_is_estimated_here_without_a_gpu_and_says_what_it_assumed(tmp_path):
    done = subprocess.run([sys.executable, SCRIPT, "--estimate-only", "--profile", "full", "--budget", "45m",
                           "--num-samples", "64", "--storage", str(tmp_path / "results")], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assumed = [line for line in lines if "no GPU here to probe" in line]
    assert len(assumed) == 1 and "assumes an H100" in assumed[0] and "1000 train and 100 val videos" in assumed[0]
    without = next(line for line in lines if "64 trials without stopping:" in line)
    expected = next(line for line in lines if "64 trials with the scheduler:" in line)
    hours = [float(line.split(": ")[1].split()[0]) for line in (without, expected)]
    assert 0 < hours[1] < hours[0]  # ASHA stops most trials early
    assert any(line.strip().startswith("budget 45m 00s: about ") and line.endswith("of the 64 trials (whichever ends first)")
               for line in lines)
    assert not (tmp_path / "results").exists()  # nothing trained, nothing saved


def _search(shards: Path, storage: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, "--smoke-test", "--shards", str(shards), "--storage", str(storage),
                           "--name", "budget", *args], capture_output=True, text=True, timeout=400)


@RAY
def test_a_budget_below_one_epoch_of_the_cheapest_trial_is_refused_before_anything_is_saved(tiny_shards, tmp_path):
    done = _search(tiny_shards, tmp_path, "--budget=0.01s")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --budget 0.0s is less than one epoch of the cheapest trial (about ")
    assert not (tmp_path / "budget" / "search.json").exists()


def _spent(experiment: Path) -> tuple[float, float]:
    """What the trials spent, and the costliest epoch any of them ran."""
    table = pq.read_table(experiment / "curves.parquet").to_pandas().sort_values(["trial_id", "epoch"])
    epochs = table.groupby("trial_id")["device_seconds"].diff().fillna(table["device_seconds"])
    return float(table.groupby("trial_id")["device_seconds"].max().sum()), float(epochs.max())


@RAY
def test_a_budget_ends_the_search_with_its_report_and_a_resume_with_a_larger_one_goes_on(tiny_shards, tmp_path):
    done = _search(tiny_shards, tmp_path, "--budget=3s", "--num-samples=12")
    assert done.returncode == 0, done.stderr[-3000:]
    experiment = tmp_path / "budget"
    rows = read_leaderboard(experiment)
    spent, epoch = _spent(experiment)
    assert 0 < len(rows) < 12 and all(r["status"] == "TERMINATED" for r in rows)
    assert spent <= 3.0 + 2 * epoch  # at most the epochs the two running trials had in flight
    assert spent == pytest.approx(sum(float(r["device_s"]) for r in rows), abs=1e-3)
    assert "the budget of 3.0s ended it" in done.stderr and "search is saved" not in done.stderr
    report = (experiment / "report.md").read_text()
    assert "Budget: 3.0s; spent " in report and "the budget of 3.0s ended it" in report
    assert json.loads((experiment / "search.json").read_text())["settings"]["budget_s"] == 3.0

    lower = subprocess.run([sys.executable, SCRIPT, "--resume", "--storage", str(tmp_path), "--name", "budget",
                            "--budget=2s"], capture_output=True, text=True, timeout=60)
    assert lower.returncode == 2 and lower.stderr.strip().splitlines()[-1].startswith(
        "error: --budget 2s is less than the saved search")
    more = subprocess.run([sys.executable, SCRIPT, "--resume", "--storage", str(tmp_path), "--name", "budget",
                           "--budget=12s"], capture_output=True, text=True, timeout=400)
    assert more.returncode == 0, more.stderr[-3000:]
    assert "the budget of budget: 12.0s (it was 3.0s)" in more.stderr
    grown = read_leaderboard(experiment)
    assert len(rows) < len(grown) <= 12 and {r["trial_id"] for r in rows} < {r["trial_id"] for r in grown}
    spent, epoch = _spent(experiment)
    assert spent <= 12.0 + 2 * epoch
    assert "Budget: 12.0s; spent " in (experiment / "report.md").read_text()
