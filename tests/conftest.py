"""Shared fixtures: one tiny synthetic dataset and its shards, made once per test run by the real
CLIs (once for all pytest-xdist workers), and one local Ray instance per module for the tests that
only need a local Ray."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest
from filelock import FileLock

TINY_COUNTS = {"train": 4, "val": 2, "unlabeled": 2, "hidden": 2}
TINY_SEED = 7
SHARD_SIZE = (40, 60)
SEGMENT_ARGS = (f"--size={SHARD_SIZE[0]}x{SHARD_SIZE[1]}", "--unet-size=80x120", "--width=4", "--epochs=1", "--num-workers=0",
                "--videos-per-shard=3", "--no-ray", "--quiet")

# Tests that start Ray, or read the one smoke search (``-m "not ray"`` leaves them out). The run's
# two pytest-xdist workers each take whole modules (``--dist loadfile``): a module's Ray instance,
# cluster or smoke search is made once, and two Ray instances may run at once, one a worker.
RAY = pytest.mark.ray

# The modules that take longest, started first so that the two workers end together (seconds on
# the 2-core machine, docs/testing.md; xdist's own reordering is off: --no-loadscope-reorder); the
# second needs no tiny shards, so that one worker runs it while the other makes them.
SLOWEST_FIRST = (
    "tests/search/test_faults.py",        # ~160: SIGTERM and resume, a full disk mid-search, data on a full disk
    "tests/search/test_run_search.py",    # ~45: the smoke search from scratch, and what it wrote
    "tests/search/test_reliability.py",   # ~80: killed, planted checkpoints, Ctrl-C, --retry-errored
    "tests/train/test_loop.py",           # ~40, ~90 with a cold Inductor cache: torch.compile against eager
    "tests/test_device_suite.py",         # ~45: every device part at toy size, SIGTERM, the deadline
    "tests/cluster/test_multinode.py",    # ~40: a three-node cluster that loses a node
    "tests/cluster/test_simulated_cluster.py",  # a GPU cluster rehearsed: 32 simulated trials, SIGTERM, resume, budget
    "tests/test_device_bundle.py",        # ~35: the bundle built, installed, and a search cut from it
    "tests/search/run/test_lock.py",      # ~30: a resumed smoke search held, a second refused, killed, taken over
    "tests/search/run/test_trainable.py",  # ~27
    "tests/data/test_synth.py",           # ~18
    "tests/segment/test_pretrained.py",   # ~13
    "tests/train/test_ingredients.py",    # ~13
)


@pytest.fixture(scope="session", autouse=True)
def _counted_here(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The machine's kept model counts (vidseg.train.counted) start empty, in this run's temp folder,
    for the tests and every process they start: nothing read from, or left in, ~/.cache."""
    from vidseg.train.counted import CACHE_ENV

    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.getbasetemp() / "counted")
    yield
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slowest modules first (a stable sort: every worker collects the same order)."""
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))

if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)  # two workers on a 2-core machine: one thread each for their own torch work


def run_cli(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python <args>`` in a process of its own and capture its output as text."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, **kwargs)


def run_main(main: Callable[[list[str]], int], *args: str, capsys: pytest.CaptureFixture) -> subprocess.CompletedProcess:
    """A CLI's ``main(argv)`` in this process, as ``run_cli`` reports it: the exit code (argparse's
    SystemExit included) and what it printed. Each CLI also keeps one real-process test."""
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


def need_small_tmpfs(tmp_path: Path) -> None:
    """Skip unless this process can make a tmpfs in a mount namespace of its own (``unshare -m``), as
    the full-disk tests do; where ``VIDSEG_REQUIRE_TMPFS`` is set (``.ci/run`` sets it), fail instead,
    so that those tests never pass unseen in CI."""
    probe = tmp_path / "tmpfs-probe"
    probe.mkdir()
    try:
        done = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {probe}"],
                              capture_output=True, text=True, timeout=30)
        why = done.stderr.strip() if done.returncode else ""
    except (OSError, subprocess.TimeoutExpired) as err:
        why = str(err)
    probe.rmdir()
    if why:
        message = f"needs a mount namespace (unshare -m) to make a small tmpfs: {why}"
        if os.environ.get("VIDSEG_REQUIRE_TMPFS"):
            pytest.fail(message)
        pytest.skip(message)


def read_leaderboard(experiment: Path) -> list[dict[str, str]]:
    """A finished search's leaderboard.csv, a dict a row."""
    import csv

    with open(experiment / "leaderboard.csv", newline="") as f:
        return list(csv.DictReader(f))


def files_under(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` and its bytes: to show that a refused command wrote nothing."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def _made_once(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[tuple[Path, bool]]:
    """A folder shared by every xdist worker of this run: yields (path, True) to the first worker,
    which makes it, and (path, False) to the others once it is made."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # each worker's folder is in the run's, which they share
    path = root / name
    with FileLock(str(root / f"{name}.lock")):
        yield path, not (root / f"{name}.done").exists()
        (root / f"{name}.done").touch()


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m vidseg.data.synth --out D --train 4 --val 2 --unlabeled 2 --hidden 2``. Read only."""
    with _made_once(tmp_path_factory, "tiny") as (root, make):
        if make:
            counts = [f"--{k}={v}" for k, v in TINY_COUNTS.items()]
            result = run_cli("-m", "vidseg.data.synth", "--out", str(root), *counts, f"--seed={TINY_SEED}",
                             "--workers=2", "--quiet")
            assert result.returncode == 0, result.stderr
    return root


@pytest.fixture
def dataset_copy(tiny_dataset: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny dataset, free to corrupt."""
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    return copy


@pytest.fixture(scope="session")
def tiny_shards(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m vidseg.segment`` on the tiny dataset: a 1-epoch narrow UNet, shards made in its
    process (``--no-ray``: no Ray in tests not marked ``ray``; the smoke search and ``test_pretrained``
    make shards on Ray tasks). Read only."""
    with _made_once(tmp_path_factory, "tiny-shards") as (out, make):
        if make:
            result = run_cli("-m", "vidseg.segment", "--data", str(tiny_dataset), "--out", str(out), *SEGMENT_ARGS)
            assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def shards_copy(tiny_shards: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "shards"
    shutil.copytree(tiny_shards, copy)
    return copy


@pytest.fixture
def shards_without(tiny_shards: Path, tmp_path: Path) -> Callable[[str], Path]:
    """A copy of the tiny shards whose manifest lists no ``split``."""
    def make(split: str) -> Path:
        copy = shutil.copytree(tiny_shards, tmp_path / f"shards-without-{split}")
        manifest = json.loads((copy / "manifest.json").read_text())
        del manifest["splits"][split]
        (copy / "manifest.json").write_text(json.dumps(manifest))
        return copy
    return make


@contextlib.contextmanager
def ray_instance(**resources) -> Iterator[None]:
    """A local Ray instance in this process (``ray.init(num_cpus=2, **resources)``), shut down after."""
    import ray

    ray.init(**{"num_cpus": 2, **resources}, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray instance, 2 CPUs, for a module's tests (as Ray's own ``ray_start_regular_shared``)."""
    with ray_instance():
        yield


def write_shard_set(out: Path, splits: dict[str, tuple]) -> Path:
    """A shard set written by the library, one shard a split: ``splits`` maps a split to
    ``(video_ids, unet_masks, true_masks)`` with masks (N, 22, H, W) uint8 (true None: unlabeled)."""
    import numpy as np

    from vidseg.data.shards import sha256_file, write_manifest, write_shard

    out.mkdir(parents=True, exist_ok=True)
    entries, height, width = {}, None, None
    for split, (ids, unet, true) in splits.items():
        path = out / f"{split}-00000.arrow"
        write_shard(path, split, np.asarray(ids), unet, true, "none")
        height, width = unet.shape[-2:]
        entries[split] = {"frames": unet.shape[1], "labeled": true is not None, "num_videos": len(unet), "shards": [
            {"file": path.name, "video_ids": [int(i) for i in ids], "num_videos": len(unet),
             "bytes": path.stat().st_size, "sha256": sha256_file(path)}]}
    write_manifest(out, {"resolution": {"height": int(height), "width": int(width)}, "unet": {"sha256": "none"},
                         "splits": entries})
    return out
