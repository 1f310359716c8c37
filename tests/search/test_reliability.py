"""Untrusted checkpoints, input checked before any trial, honest exit codes and an honest --resume,
through the real CLIs (``search/run_search.py``, ``python -m vidseg.train``, ``python -m vidseg.segment``)."""

import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from tests.conftest import RAY, SEGMENT_ARGS, SHARD_SIZE, files_under, read_leaderboard, run_cli, run_main, write_shard_set
from tests.loopback import driver_process, kill_processes, process_tree
from vidseg.checkpoint import CheckpointError, load_checkpoint

SCRIPT = "search/run_search.py"


class Planted:
    """An object whose unpickling creates ``marker``: what a hostile checkpoint would do, harmlessly."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def plant(path: Path, marker: Path) -> None:
    """Write a checkpoint that looks like ours but runs code when pickle loads it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": {}, "model": {}, "epoch": 1, "extra": Planted(marker)}, path)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The one line that says what is wrong (progress lines may come before it), with no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == lines[0]
    return lines[0]


def test_a_planted_checkpoint_would_run_code_and_load_checkpoint_refuses_it(tmp_path):
    marker = tmp_path / "ran"
    plant(tmp_path / "evil.pt", marker)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused, not loaded"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    torch.load(tmp_path / "evil.pt", weights_only=False)  # what the project used to do: the code runs
    assert marker.exists()


def test_train_cli_refuses_a_planted_checkpoint_and_a_pickled_config(tiny_shards, tmp_path, capsys):
    from vidseg.train.__main__ import main

    marker = tmp_path / "ran"
    out = tmp_path / "best"  # e.g. a search's best/ folder, resumed with --out
    plant(out / "checkpoint.pt", marker)
    before = (out / "checkpoint.pt").read_bytes()
    result = run_main(main, "--shards", str(tiny_shards), "--out", str(out), "--epochs=1", "--hid-S=4", "--hid-T=16",
                      "--N-T=2", capsys=capsys)
    assert result.returncode == 2
    assert one_error_line(result).startswith(f"error: {out / 'checkpoint.pt'}: refused, not loaded")
    assert not marker.exists() and (out / "checkpoint.pt").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]  # nothing else written

    plant(tmp_path / "config.json", marker)  # --config is JSON, never unpickled: a pickle is just unreadable
    result = run_main(main, "--shards", str(tiny_shards), "--config", str(tmp_path / "config.json"), capsys=capsys)
    assert result.returncode == 2
    assert one_error_line(result).startswith(f"error: {tmp_path / 'config.json'}: unreadable config")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["unet_last.pt", "unet_best.pt"])
def test_segment_cli_refuses_planted_unet_checkpoints(tiny_dataset, shards_copy, tmp_path, name, capsys):
    from vidseg.segment.__main__ import main

    marker = tmp_path / "ran"
    plant(shards_copy / "unet" / name, marker)
    files = files_under(shards_copy)
    result = run_main(main, "--data", str(tiny_dataset), "--out", str(shards_copy), *SEGMENT_ARGS, capsys=capsys)
    assert result.returncode == 2
    assert one_error_line(result).startswith(f"error: {shards_copy / 'unet' / name}: refused, not loaded")
    assert not marker.exists()
    assert files_under(shards_copy) == files  # untouched


def test_the_hidden_score_comes_from_answers_the_driver_reads_or_says_why_not(shards_copy, tmp_path):
    from vidseg.eval.score import hidden_score, read_answers
    from vidseg.data.shards import ShardSet
    from vidseg.errors import InputError

    answers = np.load(shards_copy / "hidden_answers.npy")
    ids = ShardSet.open(shards_copy).split("hidden").video_ids
    prediction = torch.from_numpy(answers)
    assert hidden_score(ShardSet.open(shards_copy), prediction, ids) == (1.0, "the shard set's answers")
    np.save(tmp_path / "given.npy", np.zeros_like(answers))
    score, source = hidden_score(ShardSet.open(shards_copy), prediction, ids, str(tmp_path / "given.npy"))
    assert score < 1.0 and source == str(tmp_path / "given.npy")
    np.save(tmp_path / "small.npy", answers[:, :10])
    score, why = hidden_score(ShardSet.open(shards_copy), prediction, ids, str(tmp_path / "small.npy"))
    assert score is None and why.startswith(f"{tmp_path / 'small.npy'}: hidden answers must be integer masks of "
                                            "shape (N, 160, 240)")
    with pytest.raises(InputError, match=r"small\.npy: hidden answers must be integer masks"):
        read_answers(tmp_path / "small.npy")  # what the CLI checks before the search

    (shards_copy / "hidden_answers.npy").write_bytes(b"damaged")
    assert hidden_score(ShardSet.open(shards_copy), prediction, ids) == \
        (None, f"{shards_copy / 'hidden_answers.npy'}: missing or damaged (its checksum differs from the manifest's)")
    manifest = json.loads((shards_copy / "manifest.json").read_text())
    del manifest["hidden_answers"]  # a real dataset's shards: the competition keeps its answers
    (shards_copy / "manifest.json").write_text(json.dumps(manifest))
    score, why = hidden_score(ShardSet.open(shards_copy), prediction, ids)
    assert score is None and why.startswith("no answers to score against") and "--hidden-answers FILE" in why


def test_unwritable_storage_is_refused_before_any_data_is_made(tmp_path, capsys):
    from search.run_search import main

    (tmp_path / "file").write_text("not a folder")
    storage = tmp_path / "file" / "results"
    result = run_main(main, "--smoke-test", "--data-dir", str(tmp_path / "data"), "--storage", str(storage), capsys=capsys)
    assert result.returncode == 2
    assert one_error_line(result).startswith(f"error: --storage {storage}: not writable")
    assert not (tmp_path / "data").exists()


def test_a_damaged_dataset_is_refused_before_any_unet_or_shard(dataset_copy, tmp_path, capsys):
    """--data with a damaged dataset: the checker's line for the file, then the search's, exit 2,
    and nothing made (no UNet, no shards, no experiment)."""
    from search.run_search import main

    path = dataset_copy / "val" / "video_00005" / "mask.npy"
    np.save(path, np.load(path).astype(np.float64))
    result = run_main(main, "--smoke-test", "--data", str(dataset_copy), "--data-dir", str(tmp_path / "data"),
                      "--storage", str(tmp_path / "results"), "--name", "damaged", capsys=capsys)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == f"error: {dataset_copy}: not a valid dataset (see the errors above)"
    assert any(line.startswith(f"error: {path}: ") for line in lines) and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "results" / "damaged").exists()


def test_values_the_shards_cannot_run_are_left_out_in_one_line_each(tiny_shards, caplog):
    from search.run.prepare import fit_space
    from search.space import PROFILES

    h, w = SHARD_SIZE
    profile, limits = fit_space(PROFILES["full"], str(tiny_shards))
    left_out = [r.getMessage() for r in caplog.records if "left out of the space" in r.getMessage()]
    assert f"N_S=8 left out of the space: {h}x{w} shards are not divisible by 16" in left_out
    assert len(left_out) == len(set(left_out)) == len(limits["notes"])  # one line each
    assert 8 not in profile.choices("N_S") and 8 in PROFILES["full"].choices("N_S")
    assert limits["N_S"] == list(profile.choices("N_S"))  # what --resume keeps


def assert_search_refused(shards: Path, tmp_path: Path, capsys, message: str) -> None:
    """A smoke search on ``shards`` exits 2 with ``message``, before its experiment folder exists."""
    from search.run_search import main

    result = run_main(main, "--smoke-test", "--shards", str(shards), "--storage", str(tmp_path / "results"),
                      "--name", "refused", capsys=capsys)
    assert result.returncode == 2
    assert one_error_line(result) == message
    assert not (tmp_path / "results" / "refused").exists()


def test_shards_no_model_can_run_are_refused_with_exit_2(tiny_shards, tmp_path, capsys):
    from vidseg.data.shards import ShardSet

    shards = ShardSet.open(tiny_shards)
    splits = {}
    for split in ("train", "val"):
        part = shards.split(split)
        masks = np.pad(part.true.take(range(len(part))), ((0, 0), (0, 0), (0, 1), (0, 1)))  # 41x61
        splits[split] = (part.video_ids, masks, masks)
    odd = write_shard_set(tmp_path / "odd", splits)
    assert ShardSet.open(odd).split("val").unet.shape[-2:] == (41, 61)
    assert_search_refused(odd, tmp_path, capsys, "error: the shards are 41x61, which no N_S of profile smoke can run "
                                                 "(N_S=2 needs H and W divisible by 2)")


def test_shards_without_a_val_split_are_refused_with_exit_2(shards_without, tmp_path, capsys):
    assert_search_refused(shards_without("val"), tmp_path, capsys, "error: the shard set has no val videos: every "
                                                                   "trial trains on train and reports val IoU")


def test_a_damaged_saved_state_is_named_on_resume(tmp_path, capsys):
    from search.run_search import main

    (tmp_path / "results" / "broken").mkdir(parents=True)
    (tmp_path / "results" / "broken" / "search.json").write_text('{"settings": ')
    result = run_main(main, "--resume", "--storage", str(tmp_path / "results"), "--name", "broken", capsys=capsys)
    assert result.returncode == 2
    assert one_error_line(result).startswith(
        f"error: {tmp_path / 'results' / 'broken' / 'search.json'}: not a search's saved state (invalid JSON")


def test_a_bug_is_not_taken_for_bad_input(tmp_path, monkeypatch, capsys):
    """An internal error leaves main() as itself, so Python prints its traceback and exits 1; it is
    never turned into an 'error:' line."""
    import search.run.steps as steps
    import search.run_search as r

    def broken(args):
        raise ValueError("an internal bug, not bad input")

    monkeypatch.setattr(steps.Settings, "from_args", broken)
    with pytest.raises(ValueError, match="an internal bug, not bad input"):
        r.main(["--smoke-test", "--storage", str(tmp_path / "results")])
    assert "error:" not in capsys.readouterr().err


EPOCHS = 12  # tiny epochs take 0.25-0.7 s: a trial lasts long enough for a kill or a Ctrl-C to land mid-trial


def _epochs(trial: Path) -> list[int]:
    """A trial folder's reported epochs, from Ray Tune's result.json (a half-written last line skipped)."""
    result = trial / "result.json"
    lines = result.read_text().splitlines() if result.is_file() else []
    return [json.loads(line)["epoch"] for line in lines if line.endswith("}")]


def _trials(experiment: Path) -> dict[Path, list[int]]:
    return {t.parent: _epochs(t.parent) for t in experiment.glob("*/result.json")}


def _wait_for(driver: subprocess.Popen, ready, what: str):
    """Poll ``ready()`` until it returns something, while the driver still runs."""
    deadline = time.monotonic() + 240
    while not (found := ready()):
        assert driver.poll() is None, f"the search ended before {what}"
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.2)
    return found


@RAY
def test_killed_then_a_planted_checkpoint_and_ctrl_c_then_retry_errored(tiny_shards, shards_without, tmp_path, capsys):
    """One search of three trials, one at a time, through every way a search is cut short:
    - the driver is killed (SIGKILL, with its Ray) once the first trial finished and the second is
      past its second epoch;
    - ``--resume --max-failures 0``, with the second trial's checkpoints replaced by planted
      pickles, runs no code from them: that trial errors once (no retry) and the third starts;
      Ctrl-C then exits 130 with the exact command that continues, which refuses conflicting flags
      and changes nothing;
    - ``--retry-errored``, the good checkpoints back, finishes the second trial from its checkpoint
      and the third from its own; the first never ran again; the Optuna study holds one complete
      trial per Ray trial and the failed attempt as FAIL."""
    from search.run_search import main

    shards = shards_without("unlabeled")  # pseudo-labels leave the space
    storage, name = tmp_path / "results", "cut-short"
    experiment = storage / name
    first_log = tmp_path / "first-run.log"
    with open(first_log, "w") as log:
        driver = subprocess.Popen([sys.executable, SCRIPT, "--smoke-test", "--shards", str(shards), "--storage",
                                   str(storage), "--name", name, "--num-samples=3", "--max-concurrent=1",
                                   f"--max-epochs={EPOCHS}", f"--grace-period={EPOCHS}"],
                                  stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        def one_done_one_running():
            epochs = _trials(experiment)
            done = [t for t, e in epochs.items() if e and e[-1] == EPOCHS]
            running = [t for t, e in epochs.items() if e and 2 <= e[-1] < EPOCHS]
            return (done[0], running[0]) if done and running else None

        finished, cut = _wait_for(driver, one_done_one_running, "trial finished while another was past its second epoch")
    finally:
        kill_processes(process_tree(driver.pid))  # the driver and its Ray, at once, by pid: a lost driver
        driver.wait(timeout=30)
    assert "pseudo_labels=True left out of the space: the shard set has no unlabeled videos" in first_log.read_text()
    assert json.loads((experiment / "search.json").read_text())["settings"]["limits"]["pseudo_labels"] == [False]
    finished_log = (finished / "result.json").read_text()
    assert len(finished_log.splitlines()) == EPOCHS
    cut_epochs = _epochs(cut)

    good = {path: path.read_bytes() for path in cut.glob("checkpoint_*/checkpoint.pt")}
    assert good
    marker = tmp_path / "ran"
    for path in good:  # the latest, and the best kept beside it
        plant(path, marker)
    resume = ["python", SCRIPT, "--resume", "--storage", str(storage), "--name", name]
    # Ctrl-C with TUNE_DISABLE_SIGINT_HANDLER=1, as a user may set it: the same stop (search.run.stops.STOP)
    with driver_process([sys.executable, SCRIPT, "--resume", "--storage", str(storage), "--max-failures=0"],
                        env={**os.environ, "TUNE_DISABLE_SIGINT_HANDLER": "1"}) as driver:
        third = _wait_for(driver, lambda: [t for t, e in _trials(experiment).items() if e and t not in (finished, cut)],
                          "third trial reported an epoch")[0]
        driver.send_signal(signal.SIGINT)
        _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].strip() == shlex.join(resume)
    assert not marker.exists() and "refused, not loaded" in stderr
    assert stderr.count("Trial task failed") == 1  # --max-failures 0 applied: no retry
    assert _epochs(cut) == cut_epochs  # it trained no further
    assert _epochs(third)[-1] < EPOCHS  # Ctrl-C landed mid-trial
    assert not (experiment / "report.md").exists() and not (experiment / "leaderboard.csv").exists()

    saved = files_under(experiment)
    conflict = run_main(main, *resume[2:], "--max-epochs=5", capsys=capsys)
    assert conflict.returncode == 2
    assert one_error_line(conflict).startswith(f"error: --max-epochs 5 conflicts with the saved search {experiment} "
                                               f"(--max-epochs {EPOCHS})")
    assert one_error_line(run_main(main, *resume[2:], "--workers=2", capsys=capsys)).startswith(
        "error: --workers has no effect with --resume")
    assert one_error_line(run_main(main, *resume[2:], "--shards", str(tiny_shards), capsys=capsys)).startswith(
        f"error: --shards {tiny_shards} conflicts with the saved search {experiment} (its shards: {shards})")
    assert files_under(experiment) == saved  # the refused commands changed nothing

    for path, data in good.items():
        path.write_bytes(data)
    answers = tmp_path / "answers.npy"  # given on resume: the report scores against them
    shutil.copyfile(shards / "hidden_answers.npy", answers)
    third_epochs = _epochs(third)
    retried = run_cli(*resume[1:], "--retry-errored", "--hidden-answers", str(answers), timeout=400)
    assert retried.returncode == 0, retried.stderr[-3000:]
    report = (experiment / "report.md").read_text()
    assert f"Score against the known answers ({answers}):" in report
    assert "pseudo_labels=True left out of the space" in report
    assert (finished / "result.json").read_text() == finished_log  # never rerun, over two resumes
    for trial, before in ((cut, cut_epochs), (third, third_epochs)):  # each went on from its checkpoint
        epochs = _epochs(trial)
        assert epochs[:len(before)] == before and epochs[-1] == EPOCHS and epochs.count(1) == 1, (before, epochs)
    rows = read_leaderboard(experiment)
    assert len(rows) == 3 and all(r["status"] == "TERMINATED" and r["epochs"] == str(EPOCHS) for r in rows)
    # the same Optuna study went on: one complete trial per Ray trial, and the failed attempt
    study = optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(experiment / "optuna.journal"))))
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["ray_trial_id"] for t in complete) == sorted(r["trial_id"] for r in rows)
    assert {t.user_attrs["ray_trial_id"]: t.value for t in complete} == pytest.approx(
        {r["trial_id"]: float(r["best_val_iou"]) for r in rows}, abs=1e-4)
    [attempt] = [t for t in study.trials if t.state != TrialState.COMPLETE]
    assert attempt.state == TrialState.FAIL and attempt.user_attrs["outcome"] == "ERROR"
    assert cut.name.endswith("-" + attempt.user_attrs["ray_trial_id"])
    assert [t.user_attrs.get("retry_of") for t in complete if t.user_attrs["ray_trial_id"] == attempt.user_attrs[
        "ray_trial_id"]] == [attempt.number]
