"""A search bounded by device time (``--budget``), its estimate before the first trial
(``--estimate-only``), and the one-line refusals of a budget that buys nothing."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import RAY, read_leaderboard, run_main
from search.results.durations import duration_text, parse_duration

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


def test_a_budget_below_one_trial_s_expected_cost_is_refused_even_above_one_epoch():
    from search.run.settings import UsageError
    from search.tools.estimate import Estimate, check_budget

    def estimate(budget_s: float) -> Estimate:
        return Estimate(trials=12, concurrency=2, full_s=120.0, expected_s=42.0, wall_s=25.0, trial_s=3.5,
                        cheapest_epoch_s=1.25, basis="probed here", budget_s=budget_s)

    check_budget(estimate(3.5))  # one whole trial: accepted
    for budget, need in ((2.0, "3.5s"), (1.0, "3.5s")):  # above one epoch, below one trial; below both
        with pytest.raises(UsageError) as refused:
            check_budget(estimate(budget))
        said = str(refused.value)
        assert said.startswith(f"--budget {budget:.1f}s covers no whole trial: one is expected to cost about 3.5s ")
        assert "set-up and first epoch alone about 1.2s" in said and said.endswith(f"give at least {need}")
    cheap_trial = dataclasses.replace(estimate(3.0), trial_s=2.0, cheapest_epoch_s=3.04)
    with pytest.raises(UsageError, match=r"give at least 3\.1s$"):  # the larger floor, rounded up
        check_budget(cheap_trial)
    check_budget(estimate(None))  # no budget: nothing to check


def _spent(experiment: Path) -> tuple[float, float]:
    """What the trials spent, and the costliest epoch any of them ran."""
    table = pq.read_table(experiment / "curves.parquet").to_pandas().sort_values(["trial_id", "epoch"])
    epochs = table.groupby("trial_id")["device_seconds"].diff().fillna(table["device_seconds"])
    return float(table.groupby("trial_id")["device_seconds"].max().sum()), float(epochs.max())


@RAY
def test_a_budget_ends_the_search_with_its_report_and_a_resume_with_a_larger_one_goes_on(tiny_shards, tmp_path):
    # sized from the estimate this machine makes, not a constant: a budget below one trial is refused
    # in one line, before anything is saved, and says what one trial is expected to cost here
    refused = _search(tiny_shards, tmp_path, "--budget=0.01s")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --budget 0.0s covers no whole trial: one is expected to cost about ")
    assert not (tmp_path / "budget" / "search.json").exists()
    trial = parse_duration(last.rsplit("give at least ", 1)[1])
    budget = round(3 * trial, 1)  # about three of the twelve trials
    shown = duration_text(budget)

    done = _search(tiny_shards, tmp_path, f"--budget={budget}s", "--num-samples=12")
    assert done.returncode == 0, done.stderr[-3000:]
    experiment = tmp_path / "budget"
    rows = read_leaderboard(experiment)
    spent, epoch = _spent(experiment)
    assert 0 < len(rows) < 12 and all(r["status"] == "TERMINATED" for r in rows)
    assert spent <= budget + 2 * epoch  # at most the epochs the two running trials had in flight
    assert spent == pytest.approx(sum(float(r["device_s"]) for r in rows), abs=1e-3)
    assert f"the budget of {shown} ended it" in done.stderr and "search is saved" not in done.stderr
    report = (experiment / "report.md").read_text()
    assert f"Budget: {shown}; spent " in report and f"the budget of {shown} ended it" in report
    assert json.loads((experiment / "search.json").read_text())["settings"]["budget_s"] == budget

    lower = subprocess.run([sys.executable, SCRIPT, "--resume", "--storage", str(tmp_path), "--name", "budget",
                            f"--budget={budget / 2:.2f}s"], capture_output=True, text=True, timeout=60)
    assert lower.returncode == 2 and lower.stderr.strip().splitlines()[-1].startswith(
        f"error: --budget {budget / 2:.2f}s is less than the saved search")
    larger = round(4 * budget, 1)
    more = subprocess.run([sys.executable, SCRIPT, "--resume", "--storage", str(tmp_path), "--name", "budget",
                           f"--budget={larger}s"], capture_output=True, text=True, timeout=400)
    assert more.returncode == 0, more.stderr[-3000:]
    assert f"the budget of budget: {duration_text(larger)} (it was {shown})" in more.stderr
    grown = read_leaderboard(experiment)
    assert len(rows) < len(grown) <= 12 and {r["trial_id"] for r in rows} < {r["trial_id"] for r in grown}
    spent, epoch = _spent(experiment)
    assert spent <= larger + 2 * epoch
    assert f"Budget: {duration_text(larger)}; spent " in (experiment / "report.md").read_text()


def test_the_demo_fits_the_machine_with_a_budget_where_its_estimate_says_it_would_not(caplog):
    """The demo's run target (``Profile.run_target_s``): a machine whose estimate says the search
    would end too late gets the budget that ends it in time; one that fits, or a user who chose the
    trials or the budget, keeps the search as it is."""
    import argparse
    import logging
    import time
    from types import SimpleNamespace

    from search.run.settings import Settings
    from search.tools.costing import FINISH_S, fit_the_machine
    from search.space import PROFILES
    from search.tools.estimate import Estimate

    demo = PROFILES["demo"]
    assert demo.run_target_s is not None and PROFILES["smoke"].run_target_s is None

    def search(wall_s: float, spent_s: float, **given):
        args = argparse.Namespace(num_samples=None, budget=None, **given)
        found = Estimate(trials=16, concurrency=2, full_s=3 * wall_s, expected_s=1.8 * wall_s, wall_s=wall_s,
                         trial_s=1.8 * wall_s / 16, cheapest_epoch_s=5.0, basis="probed here")
        return SimpleNamespace(profile=demo, args=args, estimate=found, settings=Settings(profile="demo", num_samples=16, max_epochs=10, grace_period=1,
                                                                          reduction_factor=3, max_concurrent=2),
                               started=time.perf_counter() - spent_s)

    slow = search(wall_s=1200.0, spent_s=300.0)
    with caplog.at_level(logging.INFO, logger="vidseg.search"):
        fit_the_machine(slow)
    left = demo.run_target_s - 300.0 - FINISH_S
    assert slow.settings.budget_s == pytest.approx(1.8 * left, rel=0.01)  # the estimate's device per wall second
    assert slow.estimate.budget_s == slow.settings.budget_s and slow.settings.num_samples == 16
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("fitting the machine: ")]
    assert len(said) == 1 and "the 16 trials would take about 20m 00s of wall time here" in said[0]
    assert f"--budget {duration_text(slow.settings.budget_s)} of device time" in said[0]

    hopeless = search(wall_s=1200.0, spent_s=demo.run_target_s)  # no time left: still one whole trial
    fit_the_machine(hopeless)
    assert hopeless.settings.budget_s == pytest.approx(hopeless.estimate.trial_s)

    for fits in (search(wall_s=200.0, spent_s=100.0), search(wall_s=1200.0, spent_s=300.0, chosen=True)):
        if hasattr(fits.args, "chosen"):
            fits.args.num_samples = 16  # the user chose the trials: the search is theirs
        fit_the_machine(fits)
        assert fits.settings.budget_s is None and fits.estimate.budget_s is None
