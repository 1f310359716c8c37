"""Screenshots of TensorBoard on a search's results, taken by headless Chromium, to look at as a
person would.

    unshare -rn sh -c 'ip link set lo up && python tests/bench/tb_screenshots.py results/NAME --out shots/'

It starts ``tensorboard --logdir LOGDIR`` on loopback, waits until it answers, and saves a PNG of
each tab: Time Series, Scalars (filtered to ``--filter``, default the val/ charts), HParams (the
table), Images and Text, with Chromium (the Debian package ``chromium``; ``--chromium`` names another binary).
TensorBoard is stopped by its pid at the end. Not part of the tests.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

TABS = {  # file name -> the URL's fragment
    "time_series": "#timeseries",
    "scalars": "#scalars&tagFilter={filter}",
    "hparams": "#hparams",
    "images": "#images",
    "text": "#text",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "data/runs", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"error: TensorBoard did not answer at {url} within {timeout:.0f} s")


def screenshot(chromium: str, url: str, out: Path, size: str, wait_ms: int) -> None:
    subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--no-first-run", "--disable-dev-shm-usage", f"--window-size={size}",
                    f"--virtual-time-budget={wait_ms}", f"--screenshot={out}", url],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logdir", type=Path, help="a search's results folder (or all of results/)")
    parser.add_argument("--out", type=Path, default=Path("tb-screenshots"), help="where the PNGs go")
    parser.add_argument("--filter", default="val/", help="the Scalars tab's tag filter (default val/)")
    parser.add_argument("--size", default="1600,1200", help="the window, W,H (default 1600,1200)")
    parser.add_argument("--wait-ms", type=int, default=20000, help="virtual time for the page to load (default 20000)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "chromium")
    args = parser.parse_args(argv)
    if not args.logdir.is_dir():
        print(f"error: {args.logdir}: no such folder", file=sys.stderr)
        return 2
    if not shutil.which(args.chromium):
        print(f"error: {args.chromium}: not found; install the Debian package chromium", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    board = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(args.logdir), "--host",
                              "127.0.0.1", "--port", str(port), "--reload_interval", "0"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(url)
        time.sleep(3)  # the first load of every run's events
        for name, fragment in TABS.items():
            out = args.out / f"{name}.png"
            screenshot(args.chromium, url + fragment.format(filter=urllib.parse.quote(args.filter, safe="")), out, args.size, args.wait_ms)
            print(f"{out}")
    finally:
        board.terminate()
        try:
            board.wait(timeout=20)
        except subprocess.TimeoutExpired:
            board.kill()
            board.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
