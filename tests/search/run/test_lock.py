"""The driver's hold on a search (``search.run.lock``): one driver at a time runs or resumes it; a
holder that died is taken over; a running search refuses a second ``--resume`` in one line."""

import dataclasses
import json
import logging
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta

import pytest

from search.run.lock import HOLDER, Holder, hold, holds_nothing_else, read_holder
from search.run.settings import UsageError
from tests.conftest import RAY, read_leaderboard, run_cli
from tests.loopback import kill_processes, process_tree

SCRIPT = "search/run_search.py"


def _iso(seconds_ago: float) -> str:
    return (datetime.now().astimezone() - timedelta(seconds=seconds_ago)).isoformat(timespec="milliseconds")


def _plant(storage, name: str, **fields) -> Holder:
    """A holder file in ``storage/name`` as another driver would have written it."""
    holder = dataclasses.replace(Holder.mine("python search/run_search.py --resume"), **fields)
    folder = storage / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / HOLDER).write_text(holder.to_json())
    return holder


@pytest.fixture(params=["local", "uri"])
def storage(request, tmp_path, monkeypatch):
    """(the storage as the driver is given it, its folder here): a local path, or a cloud URI
    (``file://``, which takes the path an object store takes; its pause before the read-back cut to
    0.2 s, ample for threads)."""
    monkeypatch.setattr("search.run.lock.SETTLE_S", 0.2)
    folder = tmp_path / "results"
    return (str(folder) if request.param == "local" else f"file://{folder}"), folder


def test_a_second_driver_is_refused_naming_the_first(storage):
    given, folder = storage
    with hold(given, "s", command="python search/run_search.py --name s") as first:
        with pytest.raises(UsageError) as refused:
            hold(given, "s")
        assert read_holder(given, "s").token == first.holder.token  # the refused one changed nothing
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{given}/s is in use by another driver: pid {first.holder.pid} on "
                              f"{socket.gethostname()}, since {first.holder.started}")
    assert "running `python search/run_search.py --name s`" in message
    assert message.endswith(f"if you know it is dead, delete {given}/s/{HOLDER} and run this command again")
    assert not (folder / "s" / HOLDER).exists()  # released on leaving the block


def test_a_dead_pid_on_this_host_is_stale_and_taken_over_in_one_line(storage, caplog):
    given, folder = storage
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    stale = _plant(folder, "s", pid=ended.pid, pid_start=None)
    assert stale.stale() == f"pid {ended.pid} no longer runs on this host"
    with caplog.at_level(logging.INFO, logger="vidseg.search"):
        with hold(given, "s") as mine:
            assert read_holder(given, "s").token == mine.holder.token
    [line] = [r.getMessage() for r in caplog.records if "taking over" in r.getMessage()]
    assert f"pid {ended.pid} on {socket.gethostname()}" in line and line.endswith("no longer runs on this host")


def test_a_pid_that_is_another_process_now_is_stale(tmp_path):
    me = Holder.mine("x")
    assert me.stale() is None  # this very process
    if me.pid_start is None:
        pytest.skip("no /proc/PID/stat here: a reused pid cannot be told apart")
    assert dataclasses.replace(me, pid_start=me.pid_start - 1).stale() == \
        f"pid {me.pid} is another process on this host now"


def test_a_foreign_holder_is_stale_only_once_its_heartbeat_is_old(storage, caplog):
    given, folder = storage
    fresh = _plant(folder, "s", host="elsewhere", pid=1, heartbeat=_iso(20), heartbeat_every_s=30.0)
    assert fresh.stale() is None
    with pytest.raises(UsageError, match=r"in use by another driver: pid 1 on elsewhere, since .*, last heartbeat "
                                         r"20 s ago"):
        hold(given, "s")
    assert read_holder(given, "s") == fresh

    old = _plant(folder, "s", host="elsewhere", pid=1, heartbeat=_iso(100), heartbeat_every_s=30.0)
    assert old.stale() == "its last heartbeat was 100 s ago (it beats every 30 s)"
    with caplog.at_level(logging.INFO, logger="vidseg.search"):
        with hold(given, "s") as mine:
            assert read_holder(given, "s").token == mine.holder.token
    assert sum("taking over" in r.getMessage() and "on elsewhere" in r.getMessage() for r in caplog.records) == 1
    # the same host name in another PID namespace (a container) is judged as another host: by its heartbeat
    assert dataclasses.replace(old, host=socket.gethostname(), pid_namespace="pid:[1]").stale() == old.stale()


def test_an_unreadable_holder_file_is_stale(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / HOLDER).write_text("{not json")
    with hold(str(tmp_path), "s") as mine:
        assert read_holder(str(tmp_path), "s") == mine.holder


def test_release_removes_the_holder_file_only_while_it_holds_our_token(storage):
    given, folder = storage
    mine = hold(given, "s")
    assert mine.held
    other = _plant(folder, "s", token="someone-else")  # another driver took it over, judging us gone
    mine.release()
    assert not mine.held and read_holder(given, "s") == other
    (folder / "s" / HOLDER).unlink()
    again = hold(given, "s")
    again.release()
    again.release()  # idempotent
    assert not (folder / "s" / HOLDER).exists()


def test_the_heartbeat_renews_the_holder_file_and_stops_on_release(storage):
    given, folder = storage
    mine = hold(given, "s", heartbeat_every_s=0.1)
    first = read_holder(given, "s").heartbeat
    time.sleep(0.5)
    renewed = read_holder(given, "s")
    assert renewed.token == mine.holder.token and renewed.heartbeat > first
    assert renewed.heartbeat_age() < 1.0
    mine.release()
    assert not mine._thread.is_alive()


def test_the_heartbeat_never_overwrites_a_driver_that_took_over(tmp_path, caplog):
    mine = hold(str(tmp_path), "s", heartbeat_every_s=0.1)
    other = _plant(tmp_path, "s", token="someone-else")
    with caplog.at_level(logging.ERROR, logger="vidseg.search"):
        time.sleep(0.4)
    assert read_holder(str(tmp_path), "s") == other and not mine._thread.is_alive()
    assert any("this driver's hold on the search was taken by" in r.getMessage() for r in caplog.records)
    mine.release()
    assert read_holder(str(tmp_path), "s") == other


def test_of_drivers_that_race_for_a_search_one_holds_it(storage):
    """Drivers that start at once: on a local disk only one link succeeds; on an object store the
    last write, read back after the pause, wins."""
    given, _ = storage
    start, held, refused = threading.Barrier(4), [], []

    def driver():
        start.wait()
        try:
            held.append(hold(given, "s"))
        except UsageError as err:
            refused.append(err)

    threads = [threading.Thread(target=driver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(held) == 1 and len(refused) == 3
    assert read_holder(given, "s").token == held[0].holder.token
    held[0].release()


def test_a_killed_holder_leaves_a_hold_that_the_next_driver_takes(tmp_path, caplog):
    """A driver killed with SIGKILL runs no ``finally`` and no ``atexit``: its holder file stays,
    and names a pid that no longer runs."""
    code = ("import sys, time; from search.run.lock import hold; hold(sys.argv[1], 's'); print('held', flush=True); "
            "time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(UsageError, match=f"pid {holder.pid} on"):
            hold(str(tmp_path), "s")
    finally:
        holder.kill()
        holder.wait()
    assert read_holder(str(tmp_path), "s").pid == holder.pid
    with caplog.at_level(logging.INFO, logger="vidseg.search"):
        hold(str(tmp_path), "s").release()
    assert any(f"pid {holder.pid} no longer runs on this host" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "s").exists()  # a folder that held only the hold goes with it


def test_a_new_search_folder_the_hold_made_goes_if_nothing_was_written(tmp_path):
    from search.run.state import new_search

    with hold(str(tmp_path), "new"):
        assert [p.name for p in (tmp_path / "new").iterdir()] == [HOLDER]
    assert not (tmp_path / "new").exists()
    with hold(str(tmp_path), "kept"):
        (tmp_path / "kept" / "search.json").write_text("{}")
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["search.json"]
    # a folder a killed new search left with only its holder file is no search: the hold decides
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    _plant(tmp_path, "left", pid=ended.pid)
    assert holds_nothing_else(tmp_path / "left") and new_search(str(tmp_path), "left", probe=False) == "left"
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="already exists"):
        new_search(str(tmp_path), "empty", probe=False)


def _saved_smoke_search(storage, name: str, shards) -> None:
    """A smoke search of one trial of one epoch, saved as a new search saves it before its first trial."""
    import search.run_search
    from search.run.prepare import fit_space
    from search.run.settings import Settings, build_parser
    from search.run.state import save_new
    from search.space import PROFILES

    args = build_parser(SCRIPT, search.run_search.__doc__).parse_args(
        ["--smoke-test", "--num-samples=1", "--max-epochs=1", "--grace-period=1"])
    _, limits = fit_space(PROFILES["smoke"], str(shards))
    save_new(str(storage), name, Settings.from_args(args).replace(limits=limits), str(shards), None)


@RAY
def test_a_running_search_refuses_a_second_resume_and_a_killed_one_is_taken_over(tiny_shards, tmp_path):
    """A saved smoke search, run by ``--resume`` (its driver holds it within seconds, before Ray
    starts) and held still there (SIGSTOP: it still runs): a second ``--resume`` of it exits 2 with
    one line naming the first, and writes nothing. Killed (SIGKILL, with its Ray), the first leaves
    its holder file; the next ``--resume`` takes it over, runs the search to its report and releases it."""
    storage, name = tmp_path / "results", "held"
    experiment = storage / name
    _saved_smoke_search(storage, name, tiny_shards)
    resume = [sys.executable, SCRIPT, "--resume", "--storage", str(storage), "--name", name]
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(resume, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while (holder := read_holder(str(storage), name)) is None or holder.pid != first.pid:
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the first driver never held the search"
            time.sleep(0.05)
        first.send_signal(signal.SIGSTOP)  # running still, but it cannot end before the second is refused
        before = {f: (experiment / f).read_bytes() for f in ("search.json", HOLDER)}
        states = sorted(experiment.glob("experiment_state-*.json"))

        second = run_cli(*resume[1:], "--num-samples=4", timeout=120)
        assert second.returncode == 2
        [line] = second.stderr.strip().splitlines()
        assert re.fullmatch(re.escape(f"error: {experiment} is in use by another driver: pid {first.pid} on "
                                      f"{socket.gethostname()}, since {holder.started}, last heartbeat ") + r"\d+" +
                            re.escape(f" s ago, running `{holder.command}`. Wait for it to end, or stop it (Ctrl-C "
                                      f"or SIGTERM saves its state); if you know it is dead, delete "
                                      f"{experiment / HOLDER} and run this command again"), line), line
        assert "--resume --storage" in holder.command
        assert {f: (experiment / f).read_bytes() for f in before} == before  # search.json as it was: not grown
        assert sorted(experiment.glob("experiment_state-*.json")) == states  # no second Tune experiment
    finally:
        kill_processes(process_tree(first.pid))  # a lost driver: its finally and atexit never run
        first.wait(timeout=30)
    assert read_holder(str(storage), name).pid == first.pid

    third = run_cli(*resume[1:], timeout=300)
    assert third.returncode == 0, third.stderr[-3000:]
    [taken] = [line for line in third.stderr.splitlines() if "taking over the hold" in line]
    assert taken.endswith(f"pid {first.pid} no longer runs on this host")
    assert not (experiment / HOLDER).exists() and (experiment / "report.md").is_file()
    assert len(read_leaderboard(experiment)) == 1
    hold(str(storage), name).release()  # ended, it holds the search no more
