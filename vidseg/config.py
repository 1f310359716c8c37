"""Shared by the stage configs: build a frozen dataclass from a flat dict, refusing unknown keys."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["from_dict", "validate"]


def from_dict(cls: type[T], values: dict[str, Any], what: str = "config") -> T:
    """``cls(**values)``, but an unknown key is an error that lists the valid ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    return cls(**values)


def validate(checks: list[tuple[bool, str]]) -> None:
    """Raise ``ValueError`` with the message of the first failed check."""
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
