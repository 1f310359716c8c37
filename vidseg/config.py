"""Shared by the stage configs: build a frozen dataclass from a flat dict, refusing unknown keys
and values of the wrong type."""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any, TypeVar

from vidseg.errors import InputError

T = TypeVar("T")

__all__ = ["from_dict", "validate", "check_device"]


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is tuple:
        return isinstance(value, (tuple, list)) and all(_type_ok(v, typing.get_args(hint)[0]) for v in value)
    return isinstance(value, hint) if isinstance(hint, type) else True


def from_dict(cls: type[T], values: dict[str, Any], what: str = "config") -> T:
    """``cls(**values)``, but an unknown key or a value of the wrong type is an error naming it."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"unknown {what} key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    for key, value in values.items():
        if not _type_ok(value, hints[key]):
            name = getattr(hints[key], "__name__", None) or str(hints[key]).replace("typing.", "")
            raise InputError(f"{what} value {key}={value!r} is not of type {name}")
    return cls(**values)


def validate(checks: list[tuple[bool, str]]) -> None:
    """Raise ``InputError`` with the message of the first failed check."""
    for ok, message in checks:
        if not ok:
            raise InputError(message)


def check_device(device: str) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``, and CUDA only where there is one."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise InputError(f"device is {device!r}; valid: auto, cpu, cuda, cuda:N")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"device is {device!r}, but this machine has no CUDA device")
