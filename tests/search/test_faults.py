"""Two faults a real run meets, through the real CLI on real Ray: SIGTERM, and a full disk (a real
tmpfs, made in a mount namespace of the test's own, filled as another process would fill it)."""

from __future__ import annotations

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


def test_sigterm_saves_the_search_exits_143_and_says_how_to_continue(tiny_shards, tmp_path):
    storage = tmp_path / "results"
    with driver_process(_search("--shards", str(tiny_shards), "--storage", str(storage), "--name", "term")) as driver:
        deadline = time.monotonic() + 240
        while not _checkpointed(storage / "term") and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert driver.poll() is None, "the search ended before it could be stopped"
        driver.send_signal(signal.SIGTERM)
        _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert lines[-2] == "terminated (SIGTERM); the search is saved. Continue it with:"
    assert lines[-1].strip() == shlex.join(_resume(storage, "term"))
    experiment = storage / "term"
    assert not (experiment / "leaderboard.csv").exists()  # stopped, not finished
    # saved as Ctrl-C saves (one stop path; test_reliability resumes a Ctrl-C'd search to the end)
    assert (experiment / "search.json").is_file() and _checkpointed(experiment)
    assert list(experiment.glob("experiment_state-*.json")) and (experiment / "optuna.journal").is_file()


# Run inside a mount namespace of its own, so that its tmpfs is gone with it: the storage starts
# at 4 MiB (below the reserve: refused before any trial), then grows to 128 MiB for a resume,
# which another process's file fills to 14 MiB free once a trial has checkpointed and the driver
# has kept a whole copy of Ray Tune's state; then that file goes and a last resume finishes.
FULL_DISK = """
set -u
ST={storage}
mount -t tmpfs -o size=4m tmpfs $ST
timeout 300 {search} > {out}/1.out 2> {out}/1.err; echo $? > {out}/1.rc
mount -o remount,size=128m $ST
timeout 300 {resume} > {out}/2.out 2> {out}/2.err &
pid=$!
while kill -0 $pid 2>/dev/null; do
  if [ -d $ST/full/.vidseg-last-good ] && [ -n "$(find $ST/full -name 'checkpoint_*')" ]; then break; fi
  sleep 0.2
done
free=$(df --output=avail -B1 $ST | tail -1)
fallocate -l $((free - 14 * 1024 * 1024)) $ST/other-process
wait $pid; echo $? > {out}/2.rc
rm $ST/other-process
timeout 300 {resume} > {out}/3.out 2> {out}/3.err; echo $? > {out}/3.rc
cp $ST/full/leaderboard.csv $ST/full/report.md {out}/
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

    # 4 MiB: refused before any trial, exit 2, one line naming the experiment's folder
    code, last = ended("1")
    assert code == 2
    assert last.startswith(f"error: {storage}/full: no space left on device (")
    assert last.endswith(f"free space, then continue the search with: {shlex.join(resume)}")
    # filled while trials ran: stopped, exit 1, the same line (the path a trial could not write, or the folder)
    code, last = ended("2")
    assert code == 1
    assert last.startswith(f"error: {storage}/full") and ": no space left on device" in last
    assert last.endswith(f"free space, then continue the search with: {shlex.join(resume)}")
    # space freed: the resume finishes every trial
    code, _ = ended("3")
    assert code == 0
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
