"""The Ray Tune trainable on real Ray: a failed trial is recorded as failed, and the others go on."""

import csv
import json

import pytest
from ray import tune

from search.results.report import no_trial_completed, write_results
from search.results.rows import trial_rows
from search.run.trainable import train_simvp
from tests.conftest import RAY, ray_instance
from vidseg.errors import InputError

COMMON = dict(N_S=2, N_T=2, hid_S=8, hid_T=16, loss="ce", batch_size=4, epochs=2, device="cpu", seed=0,
              translator="incep", lr=5e-3, train_inputs="true", pseudo_labels=False, last_frame_skip=False)


pytestmark = RAY


@pytest.fixture(scope="module")
def ray_with_a_logical_gpu():
    """One local Ray for the module, with a logical GPU (no memory to read); the trials here ask
    for CPUs only and train on the CPU."""
    with ray_instance(num_gpus=1):
        yield


def test_failed_trial_is_recorded_and_the_search_goes_on(ray_with_a_logical_gpu, tiny_shards, tmp_path):
    # groups 3 does not divide hid_T // 2 = 8: that trial raises ValueError when it builds its model
    tuner = tune.Tuner(
        tune.with_parameters(train_simvp, shards=str(tiny_shards)),
        param_space={**COMMON, "groups": tune.grid_search([1, 3])},
        tune_config=tune.TuneConfig(metric="val_iou", mode="max"),
        run_config=tune.RunConfig(name="failing", storage_path=str(tmp_path),
                                  failure_config=tune.FailureConfig(max_failures=0), verbose=0),
    )
    results = tuner.fit()
    assert len(results.errors) == 1
    settings = {"profile": "smoke", "max_epochs": 2, "grace_period": 1, "reduction_factor": 2, "seed": 0}
    write_results(results, settings, str(tiny_shards), str(tmp_path / "failing"))
    with open(tmp_path / "failing" / "leaderboard.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["TERMINATED", "ERROR"]
    assert rows[0]["epochs"] == "2" and rows[0]["groups"] == "1"
    assert "groups 3 does not divide" in rows[1]["error"] and rows[1]["best_val_iou"] == ""
    best = json.loads((tmp_path / "failing" / "best_config.json").read_text())
    assert best["trial_id"] == rows[0]["trial_id"] and best["config"]["groups"] == 1
    assert "1 failed" in (tmp_path / "failing" / "report.md").read_text()
    typed = trial_rows(results, 2, settings)
    assert [r.trial_id for r in typed] == [r["trial_id"] for r in rows] and [r.leaderboard() for r in typed] == rows
    assert no_trial_completed(typed, str(tmp_path / "failing")) is None  # one completed: the driver exits 0


def test_logical_gpus_have_no_memory_to_read_and_the_error_names_the_flag(ray_with_a_logical_gpu):
    from search.run.trainable import detect_gpu_memory_gb

    with pytest.raises(InputError, match="--gpu-memory-gb"):
        detect_gpu_memory_gb(timeout_s=60)


def _leaderboard(results, tiny_shards, experiment):
    settings = {"profile": "smoke", "max_epochs": 2, "grace_period": 1, "reduction_factor": 2, "seed": 0}
    write_results(results, settings, str(tiny_shards), str(experiment))
    with open(experiment / "leaderboard.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_trial_that_cannot_fit_one_gpu_ends_at_once_as_infeasible_naming_why(ray_with_a_logical_gpu, tiny_shards, tmp_path):
    tuner = tune.Tuner(
        tune.with_parameters(train_simvp, shards=str(tiny_shards), gpu_memory_gb=0.25, resolution=(40, 60)),
        param_space={**COMMON, "groups": 1},
        tune_config=tune.TuneConfig(metric="val_iou", mode="max"),
        run_config=tune.RunConfig(name="infeasible", storage_path=str(tmp_path),
                                  failure_config=tune.FailureConfig(max_failures=2), verbose=0),
    )
    results = tuner.fit()
    assert not results.errors  # not an error, so Ray Tune never retries it
    assert results[0].metrics["outcome"] == "INFEASIBLE"
    assert not list(tmp_path.glob("infeasible/*/checkpoint_*"))  # it never trained
    [row] = _leaderboard(results, tiny_shards, tmp_path / "infeasible")
    assert row["status"] == "INFEASIBLE" and row["best_val_iou"] == ""
    assert "infeasible on a 0.25 GiB GPU" in row["error"] and "one clip needs" in row["error"]
    # none completed: the driver's last line, and it exits 1
    assert no_trial_completed(trial_rows(results, 2), str(tmp_path / "infeasible")) == (
        f"error: no trial completed (0 completed, 1 infeasible); see {tmp_path / 'infeasible'}/leaderboard.csv for why")


def test_a_diverged_trial_ends_as_diverged_and_is_not_retried(ray_with_a_logical_gpu, tiny_shards, tmp_path):
    # an absurd learning rate drives the weights to overflow within the first epoch
    tuner = tune.Tuner(
        tune.with_parameters(train_simvp, shards=str(tiny_shards)),
        param_space={**COMMON, "groups": 1, "lr": tune.grid_search([5e-3, 1e12]), "epochs": 3},
        tune_config=tune.TuneConfig(metric="val_iou", mode="max"),
        run_config=tune.RunConfig(name="diverged", storage_path=str(tmp_path),
                                  failure_config=tune.FailureConfig(max_failures=3), verbose=0),
    )
    results = tuner.fit()
    assert not results.errors
    good, bad = sorted(_leaderboard(results, tiny_shards, tmp_path / "diverged"), key=lambda row: float(row["lr"]))
    assert good["status"] == "TERMINATED" and good["epochs"] == "3"
    assert bad["status"] == "DIVERGED" and "NaN or infinite at epoch" in bad["error"]
    diverged_at = int(bad["epochs"])
    log = tmp_path / "diverged" / bad["name"] / "result.json"
    reported = [json.loads(line)["epoch"] for line in log.read_text().splitlines()]
    assert reported == list(range(1, diverged_at + 1))  # one run: a retry would report its epochs again
    assert diverged_at < 3 and "1 diverged" in (tmp_path / "diverged" / "report.md").read_text()


def test_on_gpus_the_estimate_s_probes_pack_as_the_trials_under_their_plans(ray_with_a_logical_gpu, tiny_shards):
    """Each probe task asks for its configurations' GPU share, not a whole GPU, so that tasks share
    a GPU as the packed trials will; a configuration that cannot fit is not probed."""
    from search.tools.estimate import INFEASIBLE_POINT, probe_on_workers
    from vidseg.train.memory import TrialPlan

    configs = [{**COMMON, "groups": 1, "hid_S": h} for h in (4, 8, 16)]
    plans = {4: TrialPlan(0.25, 2, True, 1 << 30, 3.0), 8: TrialPlan(0.5, 4, True, 1 << 30, 6.0),
             16: TrialPlan(1.0, 4, False, 1 << 30, 9.0, infeasible="one clip needs 30 GiB")}
    probed = probe_on_workers(str(tiny_shards), cpus=1, at_once=2, plan=lambda c: plans[c["hid_S"]])(configs)
    small, middle, large = probed.points
    assert large == INFEASIBLE_POINT  # ends at once as INFEASIBLE, as its trial will: nothing to probe
    assert (small["gpus"], middle["gpus"]) == (0.25, 0.5)  # a share each, on the one GPU at once
    assert small["pid"] != middle["pid"] and small["train_s_per_sample"] > 0 and middle["train_s_per_sample"] > 0
