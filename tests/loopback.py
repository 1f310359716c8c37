"""A multi-node Ray cluster on 127.0.0.1, owned by the caller: for tests and benchmarks.

Each node is a ``ray start --block`` process in a session of its own, so its raylet and workers
are its descendants: ``stop()`` (or ``kill_tree``) ends exactly that node's processes, by pid.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

__all__ = ["RayNode", "free_port", "token_env", "process_tree", "kill_processes", "driver_process"]

RAY = str(Path(sys.executable).with_name("ray"))
READY = "This command will now block"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token_env(folder: Path) -> dict[str, str]:
    """This process's environment for a cluster with Ray's token authentication on: a new token in
    ``folder/auth_token``, Ray's drain and usage reports off."""
    import os
    import secrets

    token = Path(folder) / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_AUTH_TOKEN", None)
    return env


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants, now (workers started later are not in it)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def kill_processes(processes: list[psutil.Process]) -> None:
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=20)


@contextlib.contextmanager
def driver_process(args: list[str], **popen):
    """``args`` run with text pipes; on leaving, whatever of its process tree still runs is killed, by pid."""
    driver = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    try:
        yield driver
    finally:
        if driver.poll() is None:
            kill_processes(process_tree(driver.pid))
            driver.wait()


class RayNode:
    """One node: ``ray start --block ARGS`` on 127.0.0.1, its log in ``logs/NAME.log``.

    ``temp_dir`` must be short: Ray's socket paths under it must stay under 107 bytes.
    """

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path, temp_dir: Path) -> None:
        self.name, self.log = name, Path(logs) / f"{name}.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [RAY, "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1",
                 "--object-store-memory=100000000", f"--temp-dir={Path(temp_dir) / name}", *args],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while READY not in self.log.read_text():
            if self.process.poll() is not None:
                raise RuntimeError(f"ray node {self.name} exited:\n{self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"ray node {self.name} did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.2)

    def kill_tree(self) -> None:
        """Lose the node: SIGKILL its processes, as a machine that vanished."""
        kill_processes(process_tree(self.process.pid))

    def stop(self) -> None:
        processes = process_tree(self.process.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        kill_processes(processes)  # whatever outlived its node, by pid
        self.process.wait(timeout=20)
