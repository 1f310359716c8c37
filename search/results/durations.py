"""Device time as a user reads and writes it: ``parse_duration`` reads ``--budget``'s ``20h``,
``45m``, ``1h30m``, ``90s`` or ``1.5d``; ``duration_text`` writes one back (``1h 05m``, ``12m 30s``,
``42.0s``)."""

from __future__ import annotations

import math
import re

from vidseg.errors import InputError

__all__ = ["parse_duration", "duration_text"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]+)")


def parse_duration(text: str, flag: str = "--budget") -> float:
    """Seconds in ``20h``, ``45m``, ``1h30m``, ``90s`` or ``1.5d``; raises InputError, naming
    ``flag``, for anything else, zero or a negative duration."""
    spoken = str(text).strip().lower()
    if spoken.startswith("-"):
        raise InputError(f"{flag} {text} is negative: give a duration of device time such as 20h, 45m or 1h30m")
    try:
        bare = float(spoken)
    except ValueError:
        bare = None
    if bare is not None:
        if not bare > 0:
            raise InputError(f"{flag} {text} is no time at all: give a duration of device time above zero")
        raise InputError(f"{flag} {text} has no unit: give one of s, m, h or d, such as {text}h or {text}m")
    parts = _PART.findall(spoken)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != spoken.replace(" ", ""):
        raise InputError(f"{flag} {text!r} is not a duration: give a number and a unit (s, m, h or d), "
                         "such as 20h, 45m or 1h30m")
    unknown = [unit for _, unit in parts if unit not in _UNITS]
    if unknown:
        raise InputError(f"{flag} {text}: no unit {unknown[0]!r}; the units are s, m, h and d (20h, 45m, 1h30m)")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise InputError(f"{flag} {text} is no time at all: give a duration of device time above zero")
    return seconds


def duration_text(seconds: float) -> str:
    """``1h 05m``, ``12m 30s`` or ``42.0s``."""
    if not math.isfinite(seconds):
        return "?"
    if seconds >= 3600:
        hours, rest = divmod(round(seconds / 60), 60)
        return f"{hours}h {rest:02d}m"
    if seconds >= 60:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes}m {rest:02d}s"
    return f"{seconds:.1f}s"
