"""The driver's hold on a search: ``STORAGE/NAME/driver.lock``, so that one driver at a time runs it.

A driver that starts or resumes a search takes the hold before it writes anything there, and
releases it when it ends, however it ends (``Hold.release``, from a ``finally``; an ``atexit`` hook
as a backstop). A second driver is refused with a ``UsageError`` that names the holder (its host,
pid, since when and its command) and what to do if it is known to be dead.

The holder file is JSON: the host, the pid (and its PID namespace and start time, where ``/proc``
has them), a random token, when it started, the command, and a heartbeat that a daemon thread
rewrites every ``HEARTBEAT_S``. A holder that died does not hold the search forever; it is stale:

- on this host (the same host name and PID namespace): when its pid no longer runs, is a zombie,
  or is another process now (its start time, from ``/proc/PID/stat``, differs);
- on another host (shared storage: NFS, a bucket): when its last heartbeat is older than three of
  its heartbeat periods. This trusts the hosts' clocks to agree to within two periods.

A stale hold is taken over with one log line. How atomic the taking is depends on the storage:

- a local disk (or NFS mounted as one): the holder file is written whole beside its place, then
  linked into place, which fails where a file is there (as ``O_CREAT|O_EXCL`` does; no reader sees a
  half-written file). A stale file is first renamed aside, and put back if it turned out not to be
  the stale one; only one of the drivers that race for it creates the new one;
- a cloud URI (``pyarrow.fs``; ``file://`` behaves the same): an object store has no create-if-absent
  here, so the holder is written, read back after ``SETTLE_S`` and kept only if it still holds our
  token. Two drivers both hold the search only where both read it free, and the later one's write
  lands more than ``SETTLE_S`` after the earlier one's: a window of the time between a driver's
  read and its write (milliseconds), not of the whole start-up.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import os
import secrets
import shlex
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from search.run.settings import UsageError

__all__ = ["HOLDER", "HEARTBEAT_S", "SETTLE_S", "Holder", "Hold", "hold", "read_holder", "holds_nothing_else"]

log = logging.getLogger("vidseg.search")

HOLDER = "driver.lock"  # not .json or .pkl: Ray Tune copies those of an experiment folder back and forth on restore
HEARTBEAT_S = 30.0
STALE_AFTER = 3  # heartbeat periods without one: a holder on another host is gone
SETTLE_S = 1.0  # a cloud storage: the pause between writing the holder and reading it back


def _now(timespec: str = "seconds") -> str:
    return datetime.now().astimezone().isoformat(timespec=timespec)


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _process_start(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of ``pid`` from ``/proc/PID/stat``; None
    where there is no such file (no such process, or no ``/proc``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": field 3 (state) onwards
    return fields[0], int(fields[19])  # the process start time (proc(5): starttime)


@dataclass(frozen=True)
class Holder:
    """Who holds a search, as its holder file says."""

    host: str
    pid: int
    token: str
    started: str  # ISO 8601, with the offset
    command: str
    heartbeat: str  # ISO 8601: the last time the holder said it runs
    heartbeat_every_s: float = HEARTBEAT_S
    pid_namespace: str = ""
    pid_start: int | None = None  # ticks since boot (/proc/PID/stat); None where unknown

    @classmethod
    def mine(cls, command: str, heartbeat_every_s: float = HEARTBEAT_S) -> Holder:
        """This process, as a new holder."""
        found = _process_start(os.getpid())
        return cls(socket.gethostname(), os.getpid(), secrets.token_hex(8), _now(), command, _now("milliseconds"),
                   heartbeat_every_s, _pid_namespace(), found[1] if found else None)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Holder | None:
        """The holder a file says; None where it is not one."""
        try:
            data = json.loads(text)
            holder = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (ValueError, TypeError, KeyError):
            return None
        if not (isinstance(holder.pid, int) and isinstance(holder.host, str) and isinstance(holder.token, str)
                and isinstance(holder.heartbeat_every_s, (int, float))):
            return None
        return holder

    def stale(self, now: float | None = None) -> str | None:
        """Why this holder is gone (a phrase), or None where it may still run."""
        if self.host == socket.gethostname() and self.pid_namespace == _pid_namespace():
            found = _process_start(self.pid)
            if found is None and Path("/proc/self/stat").exists():
                return f"pid {self.pid} no longer runs on this host"
            if found is None:  # no /proc: ask the kernel
                try:
                    os.kill(self.pid, 0)
                except ProcessLookupError:
                    return f"pid {self.pid} no longer runs on this host"
                except PermissionError:
                    pass
                return None
            state, start = found
            if state in ("Z", "X"):
                return f"pid {self.pid} has ended on this host"
            if self.pid_start is not None and start != self.pid_start:
                return f"pid {self.pid} is another process on this host now"
            return None
        age = self.heartbeat_age(now)
        if age is None or age > STALE_AFTER * self.heartbeat_every_s:
            when = "cannot be read" if age is None else f"was {age:.0f} s ago"
            return f"its last heartbeat {when} (it beats every {self.heartbeat_every_s:.0f} s)"
        return None

    def heartbeat_age(self, now: float | None = None) -> float | None:
        try:
            beat = datetime.fromisoformat(self.heartbeat).timestamp()
        except (TypeError, ValueError):
            return None
        return (time.time() if now is None else now) - beat

    def describe(self) -> str:
        age = self.heartbeat_age()
        beat = "" if age is None else f", last heartbeat {max(age, 0):.0f} s ago"
        return f"pid {self.pid} on {self.host}, since {self.started}{beat}, running `{self.command}`"


class _Place:
    """Where a search's holder file lives, and the few operations the hold needs there."""

    def __init__(self, storage: str, name: str) -> None:
        from vidseg.data.remote import filesystem, is_uri

        self.where = f"{storage}/{name}/{HOLDER}"
        self.local = None if is_uri(storage) else Path(storage) / name / HOLDER
        if self.local is None:  # the storage was checked before (search.run.state.check_storage)
            self.fs, root = filesystem(storage)
            self.path = f"{root}/{name}/{HOLDER}"

    def read(self) -> tuple[bool, Holder | None]:
        """(whether a holder file is there, what it says; None where it cannot be read)."""
        try:
            if self.local is not None:
                text = self.local.read_text(errors="replace")
            else:
                with self.fs.open_input_stream(self.path) as f:
                    text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return False, None
        return True, Holder.from_json(text)

    def _tmp(self, holder: Holder) -> Path:
        return self.local.with_name(f".{HOLDER}.{holder.token}.tmp")

    def create(self, holder: Holder) -> bool:
        """Write ``holder`` where no holder file is (True), or nothing where one is (False)."""
        if self.local is None:
            self.write(holder)
            return True
        tmp = self._tmp(holder)
        tmp.write_text(holder.to_json())
        try:
            os.link(tmp, self.local)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def write(self, holder: Holder) -> None:
        """Replace the holder file with ``holder``: atomically on a local disk, whole in a bucket."""
        if self.local is None:
            self.fs.create_dir(self.path.rsplit("/", 1)[0], recursive=True)
            with self.fs.open_output_stream(self.path) as f:
                f.write(holder.to_json().encode())
            return
        tmp = self._tmp(holder)
        try:
            tmp.write_text(holder.to_json())
            os.replace(tmp, self.local)
        finally:
            tmp.unlink(missing_ok=True)

    def clear_stale(self, stale: Holder | None, mine: Holder) -> None:
        """Remove the stale holder file ``stale`` (None: an unreadable one); a file that is no longer
        that one (another driver took over meanwhile) is put back."""
        if self.local is None:
            return  # overwritten by the write that takes it
        aside = self.local.with_name(f".{HOLDER}.{mine.token}.stale")
        try:
            os.rename(self.local, aside)
        except FileNotFoundError:
            return
        moved = Holder.from_json(aside.read_text(errors="replace"))
        if (moved.token if moved else None) != (stale.token if stale else None):
            try:
                os.link(aside, self.local)
            except FileExistsError:
                pass
        aside.unlink(missing_ok=True)

    def remove(self) -> None:
        if self.local is not None:
            self.local.unlink(missing_ok=True)
        else:
            self.fs.delete_file(self.path)


class Hold:
    """This driver's hold on ``STORAGE/NAME`` (``hold`` takes it): released by ``release`` or at the
    end of a ``with`` block; its heartbeat thread rewrites the holder file until then."""

    def __init__(self, place: _Place, holder: Holder, made_folder: Path | None) -> None:
        self.place, self.holder = place, holder
        self._made_folder = made_folder  # a local search folder the hold made, removed on release if still empty
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"hold {place.where}", daemon=True)
        self._thread.start()
        atexit.register(self.release)

    @property
    def held(self) -> bool:
        return not self._stop.is_set()

    def _beat(self) -> None:
        warned = False
        while not self._stop.wait(self.holder.heartbeat_every_s):
            try:
                _, now = self.place.read()
                if now is None or now.token != self.holder.token:
                    log.error("%s: this driver's hold on the search was taken by %s", self.place.where,
                              now.describe() if now else "another driver")
                    return
                self.holder = dataclasses.replace(self.holder, heartbeat=_now("milliseconds"))
                if not self._stop.is_set():
                    self.place.write(self.holder)
                warned = False
            except OSError as err:
                if not warned:
                    log.warning("%s: could not renew this driver's hold on the search: %s", self.place.where, err)
                warned = True

    def release(self) -> None:
        """Stop the heartbeat and remove the holder file, if it still holds our token. Idempotent."""
        if self._stop.is_set() or os.getpid() != self.holder.pid:  # a forked child never releases its parent's
            return
        self._stop.set()
        atexit.unregister(self.release)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        try:
            there, now = self.place.read()
            if there and now is not None and now.token == self.holder.token:
                self.place.remove()
            if self._made_folder is not None:
                self._made_folder.rmdir()  # a new search refused before it wrote anything
        except OSError:
            pass

    def __enter__(self) -> Hold:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def holds_nothing_else(folder: Path) -> bool:
    """Whether the local ``folder`` is missing, or holds only a driver's holder file (what a new search
    that was killed before it saved anything leaves)."""
    try:
        return all(p.name == HOLDER or p.name.startswith(f".{HOLDER}.") for p in Path(folder).iterdir())
    except FileNotFoundError:
        return True
    except NotADirectoryError:
        return False


def read_holder(storage: str, name: str) -> Holder | None:
    """Who holds search ``name`` in ``storage`` now, as its holder file says (stale or not)."""
    return _Place(storage, name).read()[1]


def hold(storage: str, name: str, command: str | None = None, heartbeat_every_s: float = HEARTBEAT_S) -> Hold:
    """Take this driver's hold on search ``name`` in ``storage`` (a local path or a cloud URI),
    taking over a stale one with one log line. Raises UsageError, naming the holder, where another
    driver holds it."""
    place = _Place(storage, name)
    command = command if command is not None else shlex.join([os.path.basename(sys.executable), *sys.argv])
    mine = Holder.mine(command, heartbeat_every_s)
    made = None  # a local search folder that held nothing of a search: removed on release if empty
    if place.local is not None and holds_nothing_else(place.local.parent):
        place.local.parent.mkdir(parents=True, exist_ok=True)
        made = place.local.parent
    for _ in range(3):  # a holder that ended between our reads: look again
        there, found = place.read()
        if there:
            why = found.stale() if found is not None else "its holder file cannot be read"
            if why is None:
                break
            log.warning("%s: taking over the hold of a driver that is gone (%s): %s", place.where,
                        found.describe() if found else "unknown", why)
            place.clear_stale(found, mine)
        if place.create(mine):
            if place.local is None:
                time.sleep(SETTLE_S)  # another driver's write, racing ours, lands by then
            there, found = place.read()
            if found is not None and found.token == mine.token:
                return Hold(place, mine, made)
            if not there:
                continue
            break
    else:
        there, found = place.read()
    if made is not None:
        try:
            made.rmdir()
        except OSError:
            pass
    who = found.describe() if found is not None else "a driver whose holder file cannot be read"
    raise UsageError(f"{place.where.rsplit('/', 1)[0]} is in use by another driver: {who}. Wait for it to end, or "
                     f"stop it (Ctrl-C or SIGTERM saves its state); if you know it is dead, delete {place.where} and "
                     "run this command again")
