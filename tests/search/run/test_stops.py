"""How a search's stops are told apart and said (search.run.stops), and what keeps its state whole
across a full disk (the journal's trim, the copy of Ray Tune's state)."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import pickle
import signal

from search.results.journal import journal_storage, load_study, trim_partial_record
from search.run.ray_internals import DAMAGED, LAST_GOOD, keep_tune_state, repair_tune_state
from search.run.stops import trial_error
from search.run.stops import RESERVE_MIN, DiskFull, SpaceGuard, Stopped, no_space, quiet_no_space_tracebacks
from tests.conftest import need_small_tmpfs


class _TaskError(Exception):
    """As Ray's RayTaskError carries what the task raised."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"task failed: {cause}")
        self.cause = cause


def test_a_full_disk_is_found_behind_whatever_wraps_it():
    full = OSError(errno.ENOSPC, "No space left on device", "/data/x")
    quota = OSError(errno.EDQUOT, "Disk quota exceeded")
    arrow = OSError("[Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device")
    assert no_space(full) is full and no_space(quota) is quota and no_space(arrow) is arrow
    assert no_space(_TaskError(full)) is full
    try:
        try:
            raise full
        except OSError as err:
            raise RuntimeError("Ray Tune failed") from err
    except RuntimeError as wrapped:
        assert no_space(wrapped) is full
    assert no_space(OSError(errno.EACCES, "Permission denied")) is None
    assert no_space(ValueError("no")) is None and no_space(None) is None


def _ray_error_text(*causes: BaseException) -> str:
    """A trial's error.txt as Ray Tune writes it (``Trial.handle_error``): each failure's header, then
    the ``str`` of the RayTaskError that carries the trainable's exception and traceback."""
    import traceback

    from ray.exceptions import RayTaskError

    text = ""
    for number, cause in enumerate(causes, 1):
        try:
            raise cause
        except BaseException:  # noqa: BLE001 - the traceback Ray captures in the worker
            error = RayTaskError("ImplicitFunc.train", traceback.format_exc(), cause)
        text += f"Failure # {number} (occurred at 2026-12-04_03-00-00)\n{error}\n"
    return text


def test_a_trials_full_disk_is_read_from_its_error_text_without_unpickling():
    path = "/results/full/trial_1/checkpoint_000002/checkpoint.pt"
    err = trial_error(_ray_error_text(ValueError("first"), OSError(errno.ENOSPC, "No space left on device", path)))
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC and err.filename == path and no_space(err) is err
    quota = trial_error(_ray_error_text(OSError(errno.EDQUOT, "Disk quota exceeded", "/q")))
    assert quota.errno == errno.EDQUOT and quota.filename == "/q"
    arrow = trial_error(_ray_error_text(OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")))
    assert no_space(arrow) is arrow  # a message without Python's errno prefix still counts
    # only the last failure counts: a full disk that was retried and then failed otherwise is not one
    assert trial_error(_ray_error_text(OSError(errno.ENOSPC, "No space left on device", "/a"), KeyError("x"))) is None
    assert trial_error(_ray_error_text(OSError(errno.EACCES, "Permission denied", "/a"))) is None
    assert trial_error("") is None


def test_the_lines_and_exit_codes_of_each_stop():
    command = "python search/run_search.py --resume --storage results --name s"
    assert DiskFull("results/s", command).exit_code == 2
    assert DiskFull("results/s", command, trials_started=True).exit_code == 1
    line = DiskFull("results/s", command, True, "3.0 MiB free").message()
    assert line == f"error: results/s: no space left on device (3.0 MiB free); free space, then continue the search with: {command}"
    assert "\n" not in line
    assert DiskFull("data").message().endswith("run the same command again (prepared data is reused)")
    assert DiskFull("a").where(command, True).message() == DiskFull("a", command, True).message()
    assert Stopped(signal.SIGTERM, command).exit_code == 143 and Stopped(signal.SIGINT, command).exit_code == 130
    assert Stopped(signal.SIGTERM, command).message().splitlines() == [
        "terminated (SIGTERM); the search is saved. Continue it with:", f"  {command}"]
    assert Stopped(signal.SIGINT, None).message().startswith("interrupted before the search started")
    # Tune's last save did not complete: never "the search is saved"; what was lost, and how to go on
    unsaved = Stopped(signal.SIGINT, command, saved=False, lost="OSError: [Errno 28] No space left on device")
    assert unsaved.message().splitlines() == [
        "interrupted before Ray Tune's last save of the search completed (OSError: [Errno 28] No space left on "
        "device): it goes on from the save before, at most a few seconds older, and trials rerun their epochs since "
        "their last checkpoints. Continue it with:", f"  {command}"]
    line = DiskFull("a").where(command, True, lost="experiment_state-1.json cut short").message()
    assert line == ("error: a: no space left on device; Ray Tune's last save of the search did not complete "
                    "(experiment_state-1.json cut short), so --resume goes on from the last whole state kept before "
                    f"it; free space, then continue the search with: {command}")


def test_a_stop_takes_tunes_own_graceful_stop_and_never_its_sigint_handler():
    """``STOP`` records the first reason and raises SIGUSR1 (Tune's graceful stop) while armed; a
    second signal, or any outside Tune's loop, unwinds at once; the driver's SIGINT handler stays
    its own, and Tune is told to leave SIGINT alone."""
    import pytest

    from search.run.stops import STOP, Terminated, watch_signals

    seen = []
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
    try:
        watch_signals()
        assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"
        assert signal.getsignal(signal.SIGINT) == STOP.on_signal == signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))  # as tune.run installs it
        STOP.reset()
        with pytest.raises(Terminated):  # outside Tune's loop: unwinds, and says why
            os.kill(os.getpid(), signal.SIGTERM)
        assert STOP.why == signal.SIGTERM and seen == []
        STOP.reset()
        STOP.armed = True
        os.kill(os.getpid(), signal.SIGTERM)  # in Tune's loop: recorded, then Tune's own stop
        assert STOP.why == signal.SIGTERM and seen == [signal.SIGUSR1] and not STOP.cut_short
        STOP.request(DiskFull("a"))  # a later reason is not kept; Tune is told again (it stops once)
        assert STOP.why == signal.SIGTERM and seen == [signal.SIGUSR1] * 2
        with pytest.raises(KeyboardInterrupt):  # a second signal: at once, without Tune's last save
            os.kill(os.getpid(), signal.SIGINT)
        assert STOP.cut_short and STOP.why == signal.SIGTERM
        assert signal.getsignal(signal.SIGINT) == STOP.on_signal  # nothing replaced it
    finally:
        STOP.reset()
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_the_space_guard_keeps_its_reserve_and_room_for_the_largest_checkpoints(tmp_path):
    guard = SpaceGuard(tmp_path / "not-yet" / "made", max_concurrent=2)
    assert guard.reserve == RESERVE_MIN and guard.free() > 0  # measured where the folder will be
    assert guard.check(now=True) is None  # this disk has more than 16 MiB free
    (tmp_path / "checkpoint_000001").mkdir()
    (tmp_path / "checkpoint_000001" / "checkpoint.pt").write_bytes(b"x" * 1000)
    guard.saw_checkpoint(tmp_path / "checkpoint_000001")
    assert guard.reserve == RESERVE_MIN + 2 * 2 * 1000
    guard.largest_checkpoint = guard.free()  # a checkpoint as large as the free space: no room for two
    low = guard.check(now=True)
    assert low is not None and low.path == str(tmp_path / "not-yet" / "made") and "MiB free, under the" in low.detail
    guard.largest_checkpoint = 0
    assert guard.check() is None or guard.check(now=True) is None  # checked at most once a second unless now


def test_rays_tracebacks_of_a_full_disk_are_cut_to_one_line():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    ray_logger = logging.getLogger("ray")
    ray_logger.addHandler(handler)
    try:
        quiet_no_space_tracebacks()
        log = logging.getLogger("ray.tune.execution.tune_controller")
        try:
            raise _TaskError(OSError(errno.ENOSPC, "No space left on device"))
        except _TaskError as err:
            log.error("Trial task failed for trial t1", exc_info=err)
        try:
            raise ValueError("a bug")
        except ValueError as err:
            log.error("Trial task failed for trial t2", exc_info=err)
    finally:
        ray_logger.removeHandler(handler)
    text = stream.getvalue()
    first, rest = text.split("Trial task failed for trial t2", 1)
    assert first.strip() == "Trial task failed for trial t1 _TaskError: no space left on device"
    assert "Traceback" in rest and "ValueError: a bug" in rest  # other failures keep theirs


def test_rays_sync_race_is_one_warning_and_an_unsynced_last_save_is_told(tmp_path):
    """Ray's sync meeting a file Ray renamed meanwhile (its FileNotFoundError, logged with a
    traceback) becomes one warning line; ``unsynced_tune_state`` names a last save that storage
    does not hold byte for byte."""
    from search.run.ray_internals import unsynced_tune_state
    from search.run.stops import SYNC_RACE

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger("ray").addHandler(handler)
    try:
        quiet_no_space_tracebacks()
        log = logging.getLogger("ray.tune.execution.experiment_state")
        gone = "/tmp/ray/session_1/artifacts/2/full/driver_artifacts/.7f3c-tmp-searcher-state-2.pkl"
        try:
            raise FileNotFoundError(f"[Errno 2] Failed to open local file '{gone}'. Detail: [errno 2]")
        except FileNotFoundError:
            log.error("Saving experiment state to storage at 'results/full' failed with exception: ", exc_info=True)
        try:
            raise FileNotFoundError("[Errno 2] No such file: 'results/full/params.json'")
        except FileNotFoundError:
            log.error("Saving experiment state to storage at 'results/full' failed with exception: ", exc_info=True)
    finally:
        logging.getLogger("ray").removeHandler(handler)
    race, other = stream.getvalue().split("Saving experiment state", 1)
    assert race.strip() == SYNC_RACE
    assert "Traceback" in other  # any other failure keeps its traceback

    staging, folder = tmp_path / "staging", tmp_path / "experiment"
    staging.mkdir()
    folder.mkdir()
    for name, data in (("experiment_state-1.json", b"{}"), ("searcher-state-1.pkl", pickle.dumps(1))):
        (staging / name).write_bytes(data)
        (folder / name).write_bytes(data)
    (staging / "tuner.pkl").write_bytes(b"not compared: Ray writes it to storage itself")
    assert unsynced_tune_state(folder, staging) == []
    (staging / "searcher-state-1.pkl").write_bytes(pickle.dumps(2))
    (staging / "callback-states-1.pkl").write_bytes(pickle.dumps({}))
    assert unsynced_tune_state(folder, staging) == ["callback-states-1.pkl", "searcher-state-1.pkl"]


def test_a_journal_record_cut_short_is_trimmed_and_the_study_reads_on(tmp_path):
    import optuna

    path = tmp_path / "optuna.journal"
    study = optuna.create_study(study_name="s", storage=journal_storage(path))
    study.enqueue_trial({"x": 1.0})
    whole = path.read_bytes()
    partial = b'{"op_code": 4, "worker_id": "w", "trial_id": 0, "par'  # what a full disk left
    with open(path, "ab") as f:
        f.write(partial)
    assert trim_partial_record(path) == len(partial)
    assert path.read_bytes() == whole and trim_partial_record(path) == 0
    optuna.load_study(study_name="s", storage=journal_storage(path)).enqueue_trial({"x": 2.0})
    assert [t.state for t in load_study(path, "s").trials] == [optuna.trial.TrialState.WAITING] * 2


def _experiment_state(checkpoints: list[str], extra: int = 0) -> str:
    """Ray Tune's experiment state as it names trial checkpoints: inside pickles, as hex in JSON."""
    trials = [[json.dumps({"trial_id": f"t{i}", "storage": {"_type": "CLOUDPICKLE_FALLBACK",
                                                             "value": pickle.dumps({"path": f"/old/place/{c}"}).hex()}}),
               {"last_result": {"epoch": extra}}] for i, c in enumerate(checkpoints)]
    return json.dumps({"trial_data": trials, "runner_data": {}})


def test_a_copy_of_tune_state_is_one_whole_synced_save_and_repair_takes_the_newest_usable(tmp_path, caplog):
    """``keep_tune_state`` copies only a whole set (JSON parsed; pickles read to their STOP with
    pickletools, so a cut pickle that happens to end in "." is refused) that Ray's syncer has
    finished (byte for byte what its staging folder holds) and whose named checkpoints exist; two
    copies are kept. ``repair_tune_state`` takes the newest copy whose checkpoints all still exist,
    or ends in one line where none does."""
    from search.run.ray_internals import EARLIER, named_checkpoints
    from search.run.settings import UsageError

    folder, staging = tmp_path / "experiment", tmp_path / "staging"
    folder.mkdir()
    staging.mkdir()
    state, searcher = "experiment_state-2026-12-03_10-00-00.json", "searcher-state-2026-12-03_10-00-00.pkl"

    def save(checkpoints: list[str], epoch: int, synced: bool = True) -> None:
        for name, data in ((state, _experiment_state(checkpoints, epoch).encode()), (searcher, pickle.dumps({"e": epoch}))):
            (staging / name).write_bytes(data)
            if synced:
                (folder / name).write_bytes(data)

    for trial in ("a/checkpoint_000001", "a/checkpoint_000002", "b/checkpoint_000001"):
        (folder / trial).mkdir(parents=True)
    assert not keep_tune_state(folder, staging)  # nothing yet
    save(["a/checkpoint_000001", "b/checkpoint_000001"], 1)
    assert named_checkpoints(folder) == {"a/checkpoint_000001", "b/checkpoint_000001"}
    assert keep_tune_state(folder, staging) and not keep_tune_state(folder, staging)  # copied once, then unchanged
    save(["a/checkpoint_000002", "b/checkpoint_000001"], 2, synced=False)  # Ray's syncer not done yet
    (folder / searcher).write_bytes((staging / searcher).read_bytes())  # one file of the new save, one of the old
    assert not keep_tune_state(folder, staging)
    save(["a/checkpoint_000002", "b/checkpoint_000001"], 2)
    assert keep_tune_state(folder, staging)
    assert json.loads((folder / EARLIER / state).read_text()) == json.loads(_experiment_state(
        ["a/checkpoint_000001", "b/checkpoint_000001"], 1))  # two copies kept
    save(["a/checkpoint_000003", "b/checkpoint_000001"], 3)  # names a checkpoint not there: Ray moved on
    assert not keep_tune_state(folder, staging)

    assert repair_tune_state(folder) == []  # all whole: nothing to do
    whole = pickle.dumps({"note": "ends. here"})
    cut = whole[:whole.index(b".") + 1]
    assert cut.endswith(b".")
    (folder / searcher).write_bytes(cut)  # Ray's copy over it, cut short just after a "."
    (folder / "a" / "checkpoint_000002").rmdir()  # deleted by Ray since the newest copy named it
    with caplog.at_level(logging.WARNING, logger="vidseg.search"):
        assert repair_tune_state(folder) == [searcher]
    assert json.loads((folder / state).read_text())["trial_data"][0][1]["last_result"]["epoch"] == 1  # the earlier copy
    assert (folder / DAMAGED / searcher).read_bytes() == cut
    assert f"was cut short ({searcher}): the search goes on from the whole copy of it taken at " in caplog.text
    (folder / searcher).write_bytes(cut)
    (folder / "a" / "checkpoint_000001").rmdir()  # and the earlier copy's checkpoint is gone too
    try:
        repair_tune_state(folder)
    except UsageError as err:
        assert str(err) == (f"{folder}: Ray Tune's state was cut short ({searcher}) and no whole copy of it naming "
                            "checkpoints that still exist was kept, so the search cannot go on: start it again "
                            "with another --name")
    else:
        raise AssertionError("a repair with no usable copy went on")
    assert LAST_GOOD in {p.name for p in folder.iterdir()}


KEEP_ON_A_FULL_DISK = """
import errno, sys
from pathlib import Path
from search.run.ray_internals import LAST_GOOD, keep_tune_state
folder = Path(sys.argv[1])
state = folder / "experiment_state-1.json"
state.write_text('{"a": "' + "x" * 20000 + '"}')
assert keep_tune_state(folder)
state.write_text('{"b": "' + "y" * 30000 + '"}')  # and its copy would not fit
try:
    keep_tune_state(folder)
except OSError as err:
    assert err.errno == errno.ENOSPC, err
else:
    raise AssertionError("the copy fitted")
assert (folder / LAST_GOOD / state.name).read_text().startswith('{"a": ')
assert not (folder / (LAST_GOOD + ".new")).exists()
print("kept")
"""


def test_a_copy_that_meets_a_full_disk_leaves_the_last_good_copy_whole(tmp_path):
    """On a real 64 KiB tmpfs, in a mount namespace of the test's own."""
    import subprocess
    import sys

    folder = tmp_path / "small"
    folder.mkdir()
    need_small_tmpfs(tmp_path)
    done = subprocess.run(["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size=64k tmpfs {folder} && '
                           f'{sys.executable} -c "$0" {folder}', KEEP_ON_A_FULL_DISK],
                          capture_output=True, text=True, timeout=120, cwd=os.getcwd())
    assert done.returncode == 0 and done.stdout.strip() == "kept", done.stderr
