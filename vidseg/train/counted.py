"""Counts a model's shape fixes, kept per machine: they take a trace to learn and never change
until torch does.

A search's driver asks two of them for every trial it starts, and again for every trial a
``--resume`` restores: the bytes autograd keeps for one step (``vidseg.train.memory``, 0.1-0.5 s a
trace on fake tensors) and the multiply-adds (``search.tools.estimate``, a few tenths of a second on
the ``meta`` device). ``Counted(kind)`` keeps each in a JSON of key -> number under
``$VIDSEG_CACHE`` (default ``~/.cache/vidseg``), one file per kind, torch version and version of
the code that builds and counts the model (``CODE``, hashed).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from vidseg.atomic import atomic_path

__all__ = ["CACHE_ENV", "Counted", "cache_root", "code_version"]

CACHE_ENV = "VIDSEG_CACHE"  # the folder of the machine's counts (default ~/.cache/vidseg)
VIDSEG = Path(__file__).resolve().parents[1]
CODE = ("models", "train/model.py", "train/losses.py", "train/cost.py", "train/memory.py", "train/config.py", "task.py")


@functools.cache
def code_version() -> str:
    """A hash of the code a count comes from (``CODE``, under vidseg/): a change there starts afresh."""
    digest = hashlib.sha256()
    for name in CODE:
        path = VIDSEG / name
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(VIDSEG).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:12]


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vidseg")


class Counted:
    """A number per key, counted once a machine: in this process's memory, and in ``path()``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.seen: dict[str, float] = {}
        self.read_from: Path | None = None

    def path(self) -> Path:
        import torch

        return cache_root() / f"{self.kind}-torch-{torch.__version__}-{code_version()}.json"

    def _read(self, path: Path) -> dict[str, float]:
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in found.items() if isinstance(v, (int, float))} if isinstance(found, dict) else {}

    def known(self, key: str) -> float | None:
        """The number kept for ``key``, or None where none is."""
        path = self.path()
        if self.read_from != path:
            self.seen, self.read_from = self._read(path), path
        return self.seen.get(key)

    def get(self, key: str, count: Callable[[], float]) -> float:
        """The number kept for ``key``, or ``count()``'s, kept. A file that cannot be read counts as
        empty and one that cannot be written (a read-only home) is left: the count is made again."""
        path = self.path()
        if self.known(key) is None:  # not in this process, nor in the file (read on first use, or a new $VIDSEG_CACHE)
            self.seen[key] = count()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                kept = {**self._read(path), **self.seen}  # what other processes kept meanwhile
                with atomic_path(path) as tmp:
                    tmp.write_text(json.dumps(kept))
                self.seen = kept
            except OSError:
                pass
        return self.seen[key]
