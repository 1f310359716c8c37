"""Checkpoints hold plain data only, and are read without pickle's power to run code.

Every checkpoint the project writes (trials, the UNet, the best model) is a dict of tensors,
numbers, strings, lists and dicts. ``load_checkpoint`` reads one with ``torch.load(...,
weights_only=True)``: a file that holds any other pickled object (which could run code on the
machine that loads it, e.g. one planted in a shared bucket) is refused with one line naming the
file, and nothing in it is executed. ``save_checkpoint`` writes atomically.
"""

from __future__ import annotations

import io
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from vidseg.atomic import atomic_path
from vidseg.errors import InputError

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint"]


class CheckpointError(InputError):
    """A checkpoint that is unreadable, or that holds more than plain data; the message names it."""


def load_checkpoint(source: Path | str | bytes, map_location: Any = "cpu", name: str | None = None) -> dict:
    """The dict in a checkpoint file (or its bytes, named ``name`` in errors), loaded with
    ``weights_only=True``. Raises ``CheckpointError`` naming the file."""
    label = name or str(source if not isinstance(source, bytes) else "checkpoint")
    target = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():  # a raw pickle's protocol warning says nothing more than the refusal
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(target, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refused what plain data never holds
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f"it calls {found.group(1)}" if found else "it holds an object that is not plain data"
        raise CheckpointError(f"{label}: refused, not loaded: {what}; a checkpoint may hold only tensors, numbers, "
                              "strings, lists and dicts") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, IndexError) as err:
        detail = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise CheckpointError(f"{label}: not a readable checkpoint ({type(err).__name__}: {detail})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{label}: not a checkpoint (it holds a {type(state).__name__}, not a dict)")
    return state


def save_checkpoint(state: dict, path: Path | str) -> None:
    """``torch.save`` through a temporary file: a killed writer never leaves a half checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
