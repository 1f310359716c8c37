"""Shared fixtures: one tiny synthetic dataset, made once per session by the real CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TINY_COUNTS = {"train": 4, "val": 2, "unlabeled": 2, "hidden": 2}
TINY_SEED = 7


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python <args>`` and capture its output as text."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m vidseg.data.synth --out D --train 4 --val 2 --unlabeled 2 --hidden 2``. Read only."""
    root = tmp_path_factory.mktemp("synth") / "tiny"
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


SHARD_SIZE = (40, 60)


@pytest.fixture(scope="session")
def tiny_shards(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m vidseg.segment`` on the tiny dataset: a 1-epoch narrow UNet, shards made on Ray. Read only."""
    out = tmp_path_factory.mktemp("shards") / "tiny"
    result = run_cli("-m", "vidseg.segment", "--data", str(tiny_dataset), "--out", str(out), "--size=40x60",
                     "--unet-size=80x120", "--width=4", "--epochs=1", "--num-workers=0", "--videos-per-shard=3",
                     "--quiet")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def shards_copy(tiny_shards: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "shards"
    shutil.copytree(tiny_shards, copy)
    return copy
