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
