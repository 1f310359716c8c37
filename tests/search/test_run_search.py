"""``python search/run_search.py --smoke-test`` end to end on real Ray, Optuna and TensorBoard files."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import psutil
import pyarrow.parquet as pq
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from torchmetrics import JaccardIndex

from tests.conftest import run_cli
from vidseg.train.config import TrainConfig

SCRIPT = "search/run_search.py"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke search: demo data made from scratch, then 4 trials of up to 3 epochs."""
    tmp = tmp_path_factory.mktemp("smoke")
    result = run_cli(SCRIPT, "--smoke-test", "--data-dir", str(tmp / "data"), "--storage", str(tmp / "results"),
                     "--name", "smoke", "--workers=2", timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp, result


def read_leaderboard(experiment: Path) -> list[dict[str, str]]:
    with open(experiment / "leaderboard.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_smoke_search_runs_trials_and_asha_stops_some(smoke):
    tmp, result = smoke
    experiment = tmp / "results" / "smoke"
    rows = read_leaderboard(experiment)
    assert len(rows) == 4 and all(r["status"] == "TERMINATED" for r in rows)
    epochs = [int(r["epochs"]) for r in rows]
    assert max(epochs) == 3 and min(epochs) < 3  # ASHA stopped at least one trial early
    assert sum(r["stopped_early"] == "True" for r in rows) == sum(e < 3 for e in epochs)
    assert [float(r["best_val_iou"]) for r in rows] == sorted((float(r["best_val_iou"]) for r in rows), reverse=True)
    # the paper's smallest configuration was enqueued first, so it ran
    assert any(r["reference"] == "paper-mse-2_4_4_32_1" for r in rows)
    assert f"results: {experiment}" in result.stdout and "tensorboard --logdir" in result.stdout


def test_val_iou_reads_back_from_tensorboard_event_files(smoke):
    tmp, _ = smoke
    experiment = tmp / "results" / "smoke"
    rows = read_leaderboard(experiment)
    for row in rows:
        events = EventAccumulator(str(experiment / f"trial_{row['trial_id']}"))
        events.Reload()
        values = [e.value for e in events.Scalars("ray/tune/val_iou")]
        assert len(values) == int(row["epochs"])
        assert max(values) == pytest.approx(float(row["best_val_iou"]), abs=1e-4)
        start = plugin_data_pb2.HParamsPluginData.FromString(
            events.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
        assert start.hparams["loss"].string_value == row["loss"]
        assert start.hparams["hid_T"].number_value == int(row["hid_T"])
    best = EventAccumulator(str(experiment / f"trial_{rows[0]['trial_id']}"))
    best.Reload()
    image = best.Images(best.Tags()["images"][0])[0]
    assert image.width == 3 * 60 + 4 and image.height == 2 * 40 + 2  # 3 columns, 2 val videos


def test_the_stored_study_tells_optuna_what_happened(smoke):
    """The journal beside the results loads with optuna.load_study, under the experiment's name:
    a trial ASHA stopped is PRUNED with its per-epoch values, a completed one is valued at its
    leaderboard best (not its last epoch), and each carries its Ray trial id."""
    tmp, result = smoke
    experiment = tmp / "results" / "smoke"
    storage = JournalStorage(JournalFileBackend(str(experiment / "optuna.journal")))
    study = optuna.load_study(study_name="smoke", storage=storage)
    rows = {r["trial_id"]: r for r in read_leaderboard(experiment)}
    trials = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert sorted(trials) == sorted(rows)
    for trial_id, row in rows.items():
        trial = trials[trial_id]
        epochs = [json.loads(line) for line in (experiment / f"trial_{trial_id}" / "result.json").read_text().splitlines()]
        assert trial.intermediate_values == pytest.approx({e["epoch"]: e["val_iou"] for e in epochs})
        if row["stopped_early"] == "True":
            assert trial.state == TrialState.PRUNED
        else:
            assert trial.state == TrialState.COMPLETE and int(row["epochs"]) == 3
            assert trial.value == pytest.approx(float(row["best_val_iou"]), abs=1e-4)
            assert trial.value == max(trial.intermediate_values.values())
    assert any(t.state == TrialState.PRUNED for t in study.trials)
    assert f"optuna-dashboard {experiment / 'optuna.journal'}" in result.stdout
    report = (experiment / "report.md").read_text()  # 4 finished trials: importances from the stored study
    assert "From the stored study" in report and "| Parameter | Importance |" in report


def test_every_search_writes_its_learning_curves(smoke):
    tmp, _ = smoke
    experiment = tmp / "results" / "smoke"
    table = pq.read_table(experiment / "curves.parquet").to_pylist()
    rows = read_leaderboard(experiment)
    assert len(table) == sum(int(r["epochs"]) for r in rows)
    for row in rows:
        curve = sorted((r["epoch"], r["val_iou"]) for r in table if r["trial_id"] == row["trial_id"])
        assert [e for e, _ in curve] == list(range(1, int(row["epochs"]) + 1))
        assert max(v for _, v in curve) == pytest.approx(float(row["best_val_iou"]), abs=1e-4)
        assert json.loads(next(r["config"] for r in table if r["trial_id"] == row["trial_id"]))["loss"] == row["loss"]


def test_the_curves_of_a_finished_search_can_be_rewritten_from_its_trial_folders(smoke, tmp_path):
    tmp, _ = smoke
    copy = tmp_path / "moved"
    shutil.copytree(tmp / "results" / "smoke", copy)
    (copy / "curves.parquet").unlink()
    result = run_cli("-m", "search.curves", str(copy))
    assert result.returncode == 0, result.stderr[-2000:]
    written, original = (pq.read_table(d / "curves.parquet").sort_by([("trial_id", "ascending"), ("epoch", "ascending")])
                         for d in (copy, tmp / "results" / "smoke"))
    assert written.num_rows > 0 and written.equals(original)
    assert run_cli("-m", "search.curves", str(tmp_path)).returncode == 2


def test_best_config_report_and_submission(smoke):
    tmp, _ = smoke
    experiment = tmp / "results" / "smoke"
    best = json.loads((experiment / "best_config.json").read_text())
    config = TrainConfig.from_dict(best["config"])  # a valid config, refused otherwise
    top = read_leaderboard(experiment)[0]
    assert best["trial_id"] == top["trial_id"] and config.loss == top["loss"] and config.hid_S == int(top["hid_S"])
    assert best["val_iou"] == pytest.approx(float(top["best_val_iou"]), abs=1e-4)
    state = torch.load(experiment / best["checkpoint"])
    assert state["epoch"] == best["epoch"] == int(top["best_epoch"])
    report = (experiment / "report.md").read_text()
    for part in ("Copy last frame", "paper-mse-2_4_4_32_1", "Early stopping's savings (ASHA)", "importances", "submission.pt"):
        assert part in report
    submission = torch.load(experiment / "submission.pt")
    assert submission.dtype == torch.uint8 and tuple(submission.shape) == (2, 160, 240)
    answers = np.load(tmp / "data" / "smoke" / "seed0" / "hidden_answers.npy")
    assert submission.shape == answers.shape
    # the answers travelled with the shards, and the driver scored the submission against them
    expected = JaccardIndex(task="multiclass", num_classes=49)(submission.long(), torch.from_numpy(answers).long())
    assert f"Score against the known answers (the shard set's answers): **{float(expected):.4f}** IoU" in report


def test_rerun_reuses_data_and_refuses_an_existing_name(smoke):
    tmp, _ = smoke
    args = ["--smoke-test", "--data-dir", str(tmp / "data"), "--storage", str(tmp / "results")]
    again = run_cli(SCRIPT, *args, "--name", "smoke")
    assert again.returncode == 2
    assert again.stderr.strip() == (f"error: {tmp / 'results' / 'smoke'} already exists: pass --resume to "
                                    "continue it, or another --name")


def test_prepare_only_reuses_the_cached_data_and_runs_no_search(smoke):
    tmp, _ = smoke
    storage = tmp / "prepare-only"
    result = run_cli(SCRIPT, "--smoke-test", "--prepare-only", "--data-dir", str(tmp / "data"), "--storage", str(storage))
    assert result.returncode == 0, result.stderr[-2000:]
    shards = tmp / "data" / "smoke" / "seed0-shards-40x60"
    assert f"shards ready: {shards.resolve()}" in result.stdout
    assert "UNet already trained" in result.stderr and "reusing" in result.stderr
    assert not storage.exists()


def _epochs_by_trial(experiment: Path) -> dict[Path, list[int]]:
    """Each trial folder's reported epochs, from Ray Tune's result.json (one JSON object a line)."""
    out = {}
    for result in experiment.glob("trial_*/result.json"):
        lines = [line for line in result.read_text().splitlines() if line.endswith("}")]  # skip a half-written line
        out[result.parent] = [json.loads(line)["epoch"] for line in lines]
    return out


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_killed_driver_resumes_without_rerunning_finished_trials(smoke):
    tmp, _ = smoke
    storage = tmp / "killed"
    experiment = storage / "kill"
    # No early stopping (grace = max epochs) and one trial at a time: the kill lands mid-trial.
    args = [sys.executable, SCRIPT, "--smoke-test", "--data-dir", str(tmp / "data"), "--storage", str(storage),
            "--name", "kill", "--max-epochs=6", "--grace-period=6", "--max-concurrent=1", "--num-samples=3"]
    driver = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    finished = interrupted = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            epochs = _epochs_by_trial(experiment)
            done = [t for t, e in epochs.items() if e and e[-1] == 6]
            running = [t for t, e in epochs.items() if e and 2 <= e[-1] < 6]
            if done and running:
                finished, interrupted = done[0], running[0]
                break
            assert driver.poll() is None, "the search ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("no trial finished while another was past its second epoch")
        processes = [psutil.Process(driver.pid), *_descendants(driver.pid)]
        os.killpg(driver.pid, signal.SIGKILL)
    finally:
        for process in [psutil.Process(driver.pid), *_descendants(driver.pid)] if driver.poll() is None else []:
            process.kill()
        driver.wait(timeout=30)
    for process in processes:  # Ray's processes die with their driver; stop any that did not, by pid
        try:
            process.wait(timeout=20)
        except psutil.TimeoutExpired:
            process.kill()
        except psutil.NoSuchProcess:
            pass

    finished_log = (finished / "result.json").read_text()
    assert len(finished_log.splitlines()) == 6
    epochs_before = [json.loads(line)["epoch"] for line in (interrupted / "result.json").read_text().splitlines()]
    assert 2 <= epochs_before[-1] < 6

    resumed = run_cli(SCRIPT, "--resume", "--storage", str(storage), timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (finished / "result.json").read_text() == finished_log  # not rerun
    epochs_after = [json.loads(line)["epoch"] for line in (interrupted / "result.json").read_text().splitlines()]
    assert epochs_after[-1] == 6
    assert epochs_after.count(1) == 1  # went on from its checkpoint, not from epoch 0
    rows = read_leaderboard(experiment)
    assert len(rows) == 3 and all(r["status"] == "TERMINATED" and r["epochs"] == "6" for r in rows)
    # the same Optuna study went on: one trial per Ray trial, all complete, none left running
    study = optuna.load_study(study_name="kill", storage=JournalStorage(JournalFileBackend(str(experiment / "optuna.journal"))))
    assert sorted(t.user_attrs["ray_trial_id"] for t in study.trials) == sorted(r["trial_id"] for r in rows)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert {t.user_attrs["ray_trial_id"]: t.value for t in study.trials} == pytest.approx(
        {r["trial_id"]: float(r["best_val_iou"]) for r in rows}, abs=1e-4)


@pytest.mark.parametrize("args, message", [
    (["--data", "{tmp}/missing"], "error: {tmp}/missing: no such dataset folder"),
    (["--shards", "{tmp}"], "error: {tmp}/manifest.json: "),
    (["--num-samples", "0"], "error: --num-samples is 0, but must be >= 1"),
    (["--reduction-factor", "1"], "error: --reduction-factor is 1, but must be >= 2"),
    (["--max-epochs", "2", "--grace-period", "3"], "error: --grace-period 3 is more than --max-epochs 2"),
    (["--address", "127.0.0.1:9"], "error: --address 127.0.0.1:9: no Ray cluster answers there"),
    (["--resume"], "error: {tmp}/results: no search to resume here"),
    (["--gpu-memory-gb", "0"], "error: --gpu-memory-gb is 0.0, but must be > 0"),
    (["--retry-errored"], "error: --retry-errored retries the errored trials of a saved search: give it with --resume"),
    (["--hidden-answers", "{tmp}/answers.npy"], "error: {tmp}/answers.npy: not readable as hidden answers"),
    (["--storage", "{tmp}/results", "--seed", "-1"], "error: --seed is -1, but must be >= 0"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    result = run_cli(SCRIPT, "--data-dir", str(tmp_path / "data"), "--storage", str(tmp_path / "results"), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.format(tmp=tmp_path)), result.stderr
    assert "Traceback" not in result.stderr


def test_help_explains():
    result = run_cli(SCRIPT, "--help")
    assert result.returncode == 0
    for flag in ("--address", "--storage", "--profile", "--num-samples", "--max-epochs", "--grace-period",
                 "--reduction-factor", "--max-concurrent", "--seed", "--name", "--resume", "--smoke-test",
                 "--gpu-memory-gb", "--max-failures", "--retry-errored", "--hidden-answers"):
        assert flag in result.stdout
