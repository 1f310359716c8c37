"""Why a search stops before its end, and what the driver then says.

- **Ctrl-C (SIGINT)** and **SIGTERM** (what a job manager, ``timeout``, a preempted node or
  Kubernetes sends) stop a search the same way: Tune saves its state and stops the trials, and the
  driver prints the exact command that continues it, exiting 130 for SIGINT and 143 for SIGTERM
  (128 + the signal's number, as a shell reports a process the signal ended).
- **A full disk** ends a search with one line that names the path and says there is no space left,
  with the command that continues it once space is freed: exit 2 before any trial started, else 1.
  A search on local storage keeps a reserve free (``SpaceGuard``): ``RESERVE_MIN`` for its own state
  (Ray Tune's experiment state, the Optuna journal, results), plus room for two checkpoints of the
  largest trial seen per concurrent trial. It checks before the first trial and between Tune's
  steps, and stops the search as a signal does when the free space falls below the reserve, so
  that Ray Tune's last save of its state still fits (Ray overwrites its state files in place, and a
  write cut short by ENOSPC would leave nothing to resume from). A write that fails with ENOSPC (or
  a quota's EDQUOT) anyway, anywhere the driver or a trial writes (``search.json``, the journal,
  checkpoints, results, TensorBoard events, the shards), ends the search the same way; the journal's
  last record, which such a write may cut short, is trimmed on resume
  (``search.results.journal.trim_partial_record``).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path

__all__ = ["SAVE_WATCH", "EXIT_CODES", "Stopped", "Terminated", "DiskFull", "SpaceGuard", "RESERVE_MIN", "no_space", "watch_signals", "STOP", "StopSwitch",
           "disk_full_seen", "note_disk_full", "clear_disk_full", "quiet_no_space_tracebacks", "trial_error",
           "trial_disk_full", "begin_search"]

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
MIB = 1 << 20
RESERVE_MIN = 16 * MIB  # a search's own state: Ray Tune's experiment state, the journal, results; a few MB at most
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class Stopped(Exception):
    """A signal stopped the search (``signum``); ``command`` continues it (None: nothing to continue);
    ``saved``: whether Ray Tune's last save of its state completed (``lost`` says why not)."""

    def __init__(self, signum: int, command: str | None, saved: bool = True, lost: str = "") -> None:
        super().__init__(signum, command)
        self.signum, self.command, self.saved, self.lost = signum, command, saved, lost

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.signum]

    def message(self) -> str:
        what = "interrupted" if self.signum == signal.SIGINT else "terminated (SIGTERM)"
        if not self.command:
            return f"{what} before the search started; run the same command again (prepared data is reused)"
        if self.saved:
            return f"{what}; the search is saved. Continue it with:\n  {self.command}"
        return (f"{what} before Ray Tune's last save of the search completed ({self.lost}): it goes on from the "
                "save before, at most a few seconds older, and trials rerun their epochs since their last "
                f"checkpoints. Continue it with:\n  {self.command}")


class Terminated(KeyboardInterrupt):
    """SIGTERM outside Tune's loop: it unwinds the driver as Ctrl-C does."""


class DiskFull(Exception):
    """No space left where the search writes: ``path``, and whether trials had started; ``lost``:
    why Ray Tune's last save of the search did not complete, where it did not."""

    def __init__(self, path: str | Path, command: str | None = None, trials_started: bool = False,
                 detail: str = "", lost: str = "") -> None:
        super().__init__(str(path))
        self.path, self.command, self.trials_started, self.detail, self.lost = str(path), command, trials_started, \
            detail, lost

    def where(self, command: str | None, trials_started: bool, lost: str = "") -> DiskFull:
        """The same, with the command that continues the search, whether trials had started, and
        what was lost."""
        return DiskFull(self.path, command, trials_started, self.detail, lost)

    @property
    def exit_code(self) -> int:
        return 1 if self.trials_started else 2

    def message(self) -> str:
        then = (f"free space, then continue the search with: {self.command}" if self.command else
                "free space, then run the same command again (prepared data is reused)")
        lost = (f"; Ray Tune's last save of the search did not complete ({self.lost}), so --resume goes on from "
                "the last whole state kept before it" if self.lost else "")
        return f"error: {self.path}: no space left on device{f' ({self.detail})' if self.detail else ''}{lost}; {then}"


def no_space(err: BaseException | None) -> OSError | None:
    """The ENOSPC (or EDQUOT) error behind ``err``: itself, its causes and contexts, or what a Ray
    task raised (``RayTaskError.cause``); None if there is none."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and (err.errno in _NO_SPACE or "No space left on device" in str(err)):
            return err
        err = getattr(err, "cause", None) or err.__cause__ or err.__context__
    return None


# A full disk seen where no exception reaches the driver's loop (the searcher, in Tune's hands, logs
# and goes on): the driver's Tune callback reads it between steps and stops the search.
_seen: list[tuple[str, OSError]] = []
_lock = threading.Lock()


def note_disk_full(path: str | Path, err: OSError) -> None:
    with _lock:
        if not _seen:
            _seen.append((str(path), err))


def disk_full_seen() -> tuple[str, OSError] | None:
    with _lock:
        return _seen[0] if _seen else None


def clear_disk_full() -> None:
    with _lock:
        _seen.clear()


# Ray Tune saves its state into its driver staging folder (each file written under a temporary
# name, then renamed) *before* it waits for the sync of the save before to finish, and that sync
# copies the same folder: it can list a temporary file that is renamed before it is read, and then
# logs the sync's FileNotFoundError with a traceback. The next sync copies the files whole (the
# driver checks the last one: search.run.steps.last_save), so it is one line, as a warning.
SYNC_RACE = ("Ray Tune's sync of its state to storage met a file that Ray was still writing (Ray saves while "
             "the sync before runs); the next sync copies it whole")


def _sync_race(exc: BaseException | None) -> bool:
    text = str(exc or "")
    return isinstance(exc, FileNotFoundError) and "driver_artifacts" in text and "-tmp-" in text


class _QuietNoSpace(logging.Filter):
    """A log record of a failure a full disk caused keeps its first line, without the traceback (Ray
    Tune logs a trial's failure, and its failed saves, with theirs): the driver ends with its own line.
    Ray's sync race (``SYNC_RACE``) becomes its one line too."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        text = record.getMessage()
        if _sync_race(exc):
            record.msg, record.args, record.exc_info, record.exc_text = SYNC_RACE, (), None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            return True
        if no_space(exc) is None and "No space left on device" not in text:
            return True
        first = text.strip().splitlines()[0] if text.strip() else ""
        if exc is not None and "No space left on device" not in first:
            first = f"{first} {type(exc).__name__}: no space left on device".strip()
        record.msg, record.args, record.exc_info, record.exc_text = first, (), None, None
        return True


class _SaveWatch(logging.Handler):
    """Sees Ray Tune's log line for a last save of its state that failed (``tune.run`` logs it and
    returns as if nothing had happened)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.failed: str | None = None
        self.staging = None  # Ray Tune's driver staging folder, once the driver's callback has seen it

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Experiment state snapshotting failed"):
            exc = record.exc_info[1] if record.exc_info else None
            self.failed = f"{type(exc).__name__}: {exc}".splitlines()[0][:200] if exc else "Ray Tune logged its failure"


SAVE_WATCH = _SaveWatch()
logging.getLogger("ray.tune.tune").addHandler(SAVE_WATCH)


# the loggers that report a trial's failure, a failed save of Tune's state, and a task error nobody read
_RAY_LOGGERS = ("ray.tune.execution.tune_controller", "ray.tune.execution.experiment_state", "ray._private.worker")


def quiet_no_space_tracebacks() -> None:
    """Install the filter on the loggers where Ray reports such failures, and on the handlers of the
    root logger and Ray's (which does not propagate)."""
    targets = [logging.getLogger(name) for name in _RAY_LOGGERS]
    targets += [h for name in ("", "ray") for h in logging.getLogger(name).handlers]
    for target in targets:
        if not any(isinstance(f, _QuietNoSpace) for f in target.filters):
            target.addFilter(_QuietNoSpace())


class StopSwitch:
    """Why the search is stopping, and Tune's own graceful stop taken for it: the one stop path.

    SIGINT, SIGTERM and a full disk (the driver's Tune callback) all ``request`` a stop: the first
    reason is kept, and while Tune's loop runs (``armed``) the driver raises SIGUSR1 in itself,
    which Ray Tune's ``tune.run`` always handles as Ctrl-C (it saves its state one last time, stops
    the trials and returns), with or without ``TUNE_DISABLE_SIGINT_HANDLER``. Tune's handler is
    never read, called or replaced: the driver's own handler for SIGINT stays in place because the
    driver sets ``TUNE_DISABLE_SIGINT_HANDLER=1`` (``watch_signals``). A second signal stops at once,
    without that save, as a second Ctrl-C does in Tune; a signal outside Tune's loop unwinds the
    driver (``KeyboardInterrupt``, ``Terminated`` for SIGTERM)."""

    def __init__(self) -> None:
        self.why: int | DiskFull | None = None
        self.armed = False
        self.cut_short = False  # a second signal ended Tune's loop without its last save

    def reset(self) -> None:
        self.__init__()

    def request(self, why: int | DiskFull) -> None:
        if self.why is None:
            self.why = why
        if self.armed and callable(signal.getsignal(signal.SIGUSR1)):  # Tune's graceful stop
            signal.raise_signal(signal.SIGUSR1)

    def on_signal(self, signum: int, frame) -> None:
        if os.getpid() != _owner:  # a forked worker, told to stop by its pool: it ends as the signal ends a process
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if self.armed and self.why is None:
            self.request(signum)
            return
        if self.armed:
            self.cut_short = True
        if self.why is None:
            self.why = signum
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


STOP = StopSwitch()
_owner: int | None = None  # the driver's pid: a process forked from it (a pool's worker) inherits the handlers


def watch_signals() -> None:
    """SIGINT and SIGTERM go to ``STOP`` (replacing Ray's SIGTERM handler, which would exit 1 at
    once), and Ray Tune is told to leave SIGINT to it (``TUNE_DISABLE_SIGINT_HANDLER``, a documented
    Ray variable; Tune's SIGUSR1 handler, installed regardless, is the stop ``STOP`` takes)."""
    global _owner
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    if threading.current_thread() is threading.main_thread():
        _owner = os.getpid()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, STOP.on_signal)


class SpaceGuard:
    """The free space of a local storage, against the reserve a search keeps (the module's docstring)."""

    def __init__(self, folder: str | Path, max_concurrent: int, every_s: float = 1.0) -> None:
        self.folder, self.max_concurrent, self.every_s = Path(folder), max(1, max_concurrent), every_s
        self.largest_checkpoint = 0
        self._checked = -float("inf")

    @property
    def reserve(self) -> int:
        return RESERVE_MIN + 2 * self.max_concurrent * self.largest_checkpoint

    def free(self) -> int:
        folder = self.folder
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        return shutil.disk_usage(folder).free

    def saw_checkpoint(self, folder: str | Path) -> None:
        """A trial's checkpoint folder: its size sets the room kept for checkpoints."""
        try:
            size = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
        except OSError:
            return
        self.largest_checkpoint = max(self.largest_checkpoint, size)

    def check(self, now: bool = False) -> DiskFull | None:
        """A ``DiskFull`` when the free space is below the reserve (at most once a second unless ``now``)."""
        if not now and time.monotonic() - self._checked < self.every_s:
            return None
        self._checked = time.monotonic()
        free, reserve = self.free(), self.reserve
        if free >= reserve:
            return None
        return DiskFull(self.folder, detail=f"{free / MIB:.1f} MiB free, under the {reserve / MIB:.0f} MiB a search "
                                            "keeps for its state and checkpoints")


# The last line of an OSError's traceback as Python prints it: "[Errno 28] No space left on device: 'PATH'"
_ERRNO_LINE = re.compile(r"\[Errno (\d+)\] ([^\n:']+)(?:: '([^'\n]*)')?")


def trial_error(text: str) -> OSError | None:
    """The full-disk error in the text of a trial's last failure (what Ray Tune writes to the
    trial's ``error.txt``: each failure's traceback, after a "Failure # N" line), with the path it
    names; None if that failure was not a full disk. Nothing is unpickled: Ray also keeps a
    pickle of the exception beside it, which the driver never loads."""
    last = text.rsplit("Failure #", 1)[-1]
    for match in reversed(list(_ERRNO_LINE.finditer(last))):
        code = int(match.group(1))
        if code in (errno.ENOSPC, errno.EDQUOT):
            return OSError(code, match.group(2).strip(), match.group(3))
    if "No space left on device" in last:  # the message without its errno (an error Ray re-raised as text)
        return OSError(errno.ENOSPC, "No space left on device")
    return None


def trial_disk_full(trial) -> OSError | None:
    """The full-disk error a trial last failed with, from the text file Tune keeps beside its results."""
    try:
        return trial_error(Path(trial.error_file).read_text(errors="replace"))
    except (OSError, TypeError):  # no file yet, or a trial without a folder
        return None


def begin_search() -> None:
    """This process's stop path starts clean for the search about to run: no stop asked for, no full
    disk seen, no failed save of Ray Tune's state, no staging folder (an earlier search in the same
    process, a test's, told nothing about this one)."""
    clear_disk_full()
    STOP.reset()
    SAVE_WATCH.failed, SAVE_WATCH.staging = None, None
