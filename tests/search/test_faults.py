"""Two faults a real run meets, through the real CLI on real Ray: SIGTERM, and a full disk (a real
tmpfs, made in a mount namespace of the test's own, filled as another process would fill it)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import RAY, need_small_tmpfs, read_leaderboard
from tests.loopback import driver_process

pytestmark = RAY

SCRIPT = str(Path(__file__).resolve().parents[2] / "search" / "run_search.py")
EPOCHS = 6  # the smoke profile's 4 trials, long enough to be stopped in the middle (an epoch: 0.25-0.7 s)
LIVE_EPOCHS = 4  # the stop and resume test's trials, one at a time: rungs at epochs 1 and 2


def _search(*args: str) -> list[str]:
    return [sys.executable, SCRIPT, "--smoke-test", "--max-epochs", str(EPOCHS), *args]


def _resume(storage: Path, name: str) -> list[str]:
    return ["python", SCRIPT, "--resume", "--storage", str(storage), "--name", name]


def _checkpointed(experiment: Path) -> bool:
    return any(experiment.glob("*/checkpoint_*"))


def _every_trial_finished(experiment: Path) -> None:
    rows = read_leaderboard(experiment)
    assert len(rows) == 4 and all(r["status"] == "TERMINATED" for r in rows), rows
    assert all(1 <= int(r["epochs"]) <= EPOCHS for r in rows)
    assert (experiment / "report.md").is_file()


def _results(experiment: Path) -> list[tuple[str, dict]]:
    """Every trial's results, trial by trial in the order the trials started (one at a time: the
    order the study asked them in), from Ray Tune's result.json (a half-written last line skipped)."""
    from search.results.journal import load_study

    if not any(experiment.glob("*/result.json")):
        return []
    asked = {t.user_attrs.get("ray_trial_id"): t.number for t in load_study(experiment / "optuna.journal",
                                                                            experiment.name).trials}
    trials = []
    for result in experiment.glob("*/result.json"):
        lines = [json.loads(line) for line in result.read_text().splitlines() if line.endswith("}")]
        if lines:
            trials.append((asked[lines[0]["trial_id"]], lines[0]["trial_id"], lines))
    return [(trial_id, r) for _, trial_id, lines in sorted(trials) for r in lines]


def _replayed(results: list[tuple[str, dict]], settings: dict, floor: float) -> dict:
    """The epochs each trial runs when its results reach a new scheduler of the search's settings
    in the order they came, straight through."""
    from ray.tune.schedulers import TrialScheduler

    from search.run.tuner import make_scheduler
    from search.tools.replay import _Trial

    scheduler, seen, stopped, epochs = make_scheduler(settings["scheduler"], settings["max_epochs"],
                                                      settings["grace_period"], settings["reduction_factor"],
                                                      floor=floor, seed=settings["seed"]), [], set(), {}
    for trial_id, result in results:
        if trial_id not in seen:
            seen.append(trial_id)
            scheduler.on_trial_add(None, _Trial(trial_id))
        if trial_id in stopped:
            continue
        epochs[trial_id] = result["epoch"]
        if scheduler.on_trial_result(None, _Trial(trial_id), result) == TrialScheduler.STOP:
            stopped.add(trial_id)
            scheduler.on_trial_complete(None, _Trial(trial_id), result)
    return epochs


def test_sigterm_once_a_rung_has_results_then_resume_decides_as_never_stopped_and_grows(tiny_shards, tmp_path,
                                                                                         capsys):
    """SIGTERM, with ``TUNE_DISABLE_SIGINT_HANDLER=1`` as a user may set it, once the first rung holds
    a trial's result and the next trial runs: Tune saves the search, exit 143 with the command that
    continues it. The resume brings back every rung record made before the stop, counts on the
    trials done before it, and stops the same trials at the same epochs as a scheduler that saw the
    same results straight through. Then it grows (``_grows_where_it_moved``)."""
    from vidseg.baselines import copy_last_frame
    from vidseg.data.shards import ShardSet

    storage, name = tmp_path / "results", "term"
    experiment = storage / name
    env = {**os.environ, "TUNE_DISABLE_SIGINT_HANDLER": "1"}
    search = [sys.executable, SCRIPT, "--smoke-test", "--max-epochs", str(LIVE_EPOCHS), "--shards", str(tiny_shards),
              "--storage", str(storage), "--name", name, "--max-concurrent=1"]
    with driver_process(search, env=env) as driver:
        deadline = time.monotonic() + 240
        while len({t for t, _ in _results(experiment)}) < 2 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert driver.poll() is None, "the search ended before it could be stopped"
        driver.send_signal(signal.SIGTERM)
        stdout, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert lines[-2] == "terminated (SIGTERM); the search is saved. Continue it with:"
    assert lines[-1].strip() == shlex.join(_resume(storage, name))
    assert not (experiment / "leaderboard.csv").exists()  # stopped, not finished
    before = _results(experiment)
    done = stdout.count(" trials done]")
    settings = json.loads((experiment / "search.json").read_text())["settings"]
    rungs = [r for r in (1, 2, 4) if r < LIVE_EPOCHS]  # grace 1, factor 2
    records = sum(1 for _, r in before if r["epoch"] in rungs)

    resumed = subprocess.run([sys.executable, *_resume(storage, name)[1:]], capture_output=True, text=True,
                             timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"the scheduler's state is back: {records} rung record(s)" in resumed.stderr
    assert f"[{done + 1}/4 trials done]" in resumed.stdout and "[4/4 trials done]" in resumed.stdout
    rows = {r["trial_id"]: int(r["epochs"]) for r in read_leaderboard(experiment)}
    floor = copy_last_frame(ShardSet.open(tiny_shards, verify=False))["unet"]
    everything = _results(experiment)
    assert rows == _replayed(everything, settings, floor)  # as never stopped
    assert any(e < LIVE_EPOCHS for t, e in rows.items() if t not in {t for t, _ in before})  # stopped after the resume
    _grows_where_it_moved(storage, name, rows, lambda results: sum(r["epoch"] in rungs for _, r in results), capsys)


def _grows_where_it_moved(storage: Path, name: str, rows: dict[str, int], records_of, capsys) -> None:
    """The finished search, moved to another folder, grows from 4 to 5 trials with ``--resume
    --num-samples 5``: the scheduler gets back a rung record for every rung each earlier trial
    reached, the new trial runs where the search is now, the same Optuna study goes on (the 4
    earlier trials untouched, then one asked after all 4 ended: past TPE's start-up, so TPE's, not
    random), and the leaderboard and report rank all 5. A smaller --num-samples is refused in one line."""
    from search.results.journal import load_study
    from search.run_search import main
    from tests.conftest import run_main

    moved = storage.parent / "moved"
    storage.rename(moved)
    experiment = moved / name
    old = load_study(experiment / "optuna.journal", name).trials
    records = records_of(_results(experiment))
    refused = run_main(main, *_resume(moved, name)[2:], "--num-samples=3", capsys=capsys)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == (
        f"error: --num-samples 3 is fewer than the saved search {experiment} has (--num-samples 4): --resume grows "
        "a search, never shrinks it; drop the flag, or give a larger number")

    grown = subprocess.run([sys.executable, *_resume(moved, name)[1:], "--num-samples=5"], capture_output=True,
                           text=True, timeout=300)
    assert grown.returncode == 0, grown.stderr[-3000:]
    assert f"growing {name} from 4 to 5 trials" in grown.stderr
    assert f"the scheduler's state is back: {records} rung record(s)" in grown.stderr
    assert "[5/5 trials done]" in grown.stdout
    assert not storage.exists()  # nothing written where the search was
    board = read_leaderboard(experiment)
    assert len(board) == 5 and set(rows) < {r["trial_id"] for r in board}
    assert all(r["status"] == "TERMINATED" and (experiment / r["name"] / "result.json").is_file() for r in board)
    assert [float(r["best_val_iou"]) for r in board] == sorted((float(r["best_val_iou"]) for r in board), reverse=True)
    assert "5 trials" in (experiment / "report.md").read_text()
    saved = json.loads((experiment / "search.json").read_text())
    assert saved["settings"]["num_samples"] == 5
    # its estimate is for its new size, from the probe's saved figures (not probed again)
    assert "the estimate again, for the search grown from 4 to 5 trials" in grown.stderr
    assert saved["estimate"]["trials"] == 5 and " configurations: " not in grown.stderr  # no "probed N configurations"
    from search.results.durations import duration_text

    assert f"Estimated before the first trial: {duration_text(saved['estimate']['expected_s'])}" in \
        (experiment / "report.md").read_text()
    study = load_study(experiment / "optuna.journal", name).trials
    assert len(study) == 5
    assert [(t.number, t.params, t.state, t.intermediate_values) for t in study[:4]] == \
        [(t.number, t.params, t.state, t.intermediate_values) for t in old]
    for new in study[4:]:
        assert new.datetime_start > max(t.datetime_complete for t in old)
        assert new.user_attrs["proposed_by"] == "tpe"  # TPE past its start-up: not random, not an enqueued reference
        assert new.user_attrs["ray_trial_id"] in {r["trial_id"] for r in board} - set(rows)


# Run inside a mount namespace of its own, so that its tmpfs is gone with it: the storage starts
# at 4 MiB (below the reserve: refused before Ray starts, nothing saved), then grows to 128 MiB
# for the same command, which another process's files fill to the last 16 KiB once a trial has
# checkpointed and the driver has kept a whole copy of Ray Tune's state (the free space measured
# again after each try, since the search writes on meanwhile): under the reserve, so the search
# stops, and too little for Ray Tune's last save of its state, which ENOSPC cuts short. Then those
# files go and a last resume, from the kept copy, finishes.
FULL_DISK = """
set -u
ST={storage}
mount -t tmpfs -o size=4m tmpfs $ST
timeout 300 {search} > {out}/1.out 2> {out}/1.err; echo $? > {out}/1.rc
ls -A $ST > {out}/1.files
mount -o remount,size=128m $ST
timeout 300 {search} > {out}/2.out 2> {out}/2.err &
pid=$!
while kill -0 $pid 2>/dev/null; do
  if [ -d $ST/full/.vidseg-last-good ] && [ -n "$(find $ST/full -name 'checkpoint_*')" ]; then break; fi
  sleep 0.2
done
# the search writes on while this fills, so what was free a moment ago may be gone: measure again, in a new file
i=0
while free=$(df --output=avail -B1 $ST | tail -1) && [ $free -gt $((16 * 1024)) ]; do
  i=$((i + 1))
  fallocate -l $((free - 16 * 1024)) $ST/other-process-$i 2>/dev/null && break
done
wait $pid; echo $? > {out}/2.rc
rm -f $ST/other-process-*
ls $ST/full > {out}/2.files
timeout 300 {resume} > {out}/3.out 2> {out}/3.err; echo $? > {out}/3.rc
cp $ST/full/leaderboard.csv $ST/full/report.md {out}/
ls $ST/full/.vidseg-damaged > {out}/damaged.files
"""


def test_a_full_disk_ends_the_search_in_one_line_and_resume_finishes_it(tiny_shards, tmp_path):
    need_small_tmpfs(tmp_path)
    storage, out = tmp_path / "storage", tmp_path / "out"
    storage.mkdir()
    out.mkdir()
    resume = _resume(storage, "full")
    script = FULL_DISK.format(storage=storage, out=out,
                              search=shlex.join(_search("--shards", str(tiny_shards), "--storage", str(storage),
                                                        "--name", "full")),
                              resume=shlex.join([sys.executable, *resume[1:]]))
    with driver_process(["unshare", "-m", "sh", "-c", script]) as shell:
        _, err = shell.communicate(timeout=900)
    assert shell.returncode == 0, err

    def ended(step: str) -> tuple[int, str]:
        stderr = (out / f"{step}.err").read_text()
        assert "Traceback" not in stderr, stderr[-3000:]
        return int((out / f"{step}.rc").read_text()), stderr.strip().splitlines()[-1]

    # 4 MiB: refused before any trial, exit 2, one line naming the experiment's folder; nothing saved
    code, last = ended("1")
    assert code == 2
    assert last.startswith(f"error: {storage}/full: no space left on device (")
    assert last.endswith("free space, then run the same command again (prepared data is reused)")
    assert (out / "1.files").read_text().split() == []
    # filled while trials ran: stopped, exit 1, the same line (the path a trial could not write, or the folder)
    code, last = ended("2")
    assert code == 1
    assert last.startswith(f"error: {storage}/full") and ": no space left on device" in last
    assert last.endswith(f"free space, then continue the search with: {shlex.join(resume)}")
    # space freed: the resume puts back the kept copy of what ENOSPC cut short, and finishes every trial
    code, _ = ended("3")
    assert code == 0, (out / "3.err").read_text()[-3000:]
    resumed = (out / "3.err").read_text()
    assert "was cut short (" in resumed and "the search goes on from the whole copy of it taken at " in resumed
    assert (out / "damaged.files").read_text().split()  # what was cut short, moved aside
    _every_trial_finished(out)


PREPARE_ON_A_FULL_DISK = """
set -u
mount -t tmpfs -o size=2m tmpfs {data}
timeout 300 {prepare} > {out}/1.out 2> {out}/1.err; echo $? > {out}/1.rc
mount -o remount,size=64m {data}
timeout 300 {prepare} > {out}/2.out 2> {out}/2.err; echo $? > {out}/2.rc
"""


def test_data_preparation_on_a_full_disk_says_so_and_the_same_command_then_makes_the_data(tmp_path):
    need_small_tmpfs(tmp_path)
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    prepare = shlex.join([sys.executable, SCRIPT, "--smoke-test", "--prepare-only", "--data-dir", str(data)])
    done = subprocess.run(["unshare", "-m", "sh", "-c", PREPARE_ON_A_FULL_DISK.format(data=data, out=out, prepare=prepare)],
                          capture_output=True, text=True, timeout=700)
    assert done.returncode == 0, done.stderr
    stderr = (out / "1.err").read_text()
    assert (out / "1.rc").read_text().strip() == "2" and "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (f"error: {data}: no space left on device; free space, then run the "
                                               "same command again (prepared data is reused)")
    assert (out / "2.rc").read_text().strip() == "0", (out / "2.err").read_text()[-3000:]
    assert (out / "2.out").read_text().strip().startswith("shards ready: ")
