"""How far two configurations are apart, over a space's dimensions: what decides which recorded
learning curve stands for a configuration (``search.tools.replay``, ``search.tools.estimate``,
``search.run.simulate``). It imports nothing heavy: a simulated trial's process computes it."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

__all__ = ["Axis", "axes", "distance", "nearest"]


class Axis(NamedTuple):
    """What ``distance`` reads of a dimension (``search.space.dimensions``): its name, a float
    dimension's bounds (None for a categorical one) and whether it is on a log scale."""

    name: str
    bounds: tuple[float, float] | None
    log: bool


def axes(dims) -> list[Axis]:
    """A space's dimensions as plain ``Axis`` tuples, to pickle into processes that import no torch."""
    return [Axis(dim.name, None if dim.bounds is None else tuple(dim.bounds), bool(dim.log)) for dim in dims]


def distance(a: dict[str, Any], b: dict[str, Any], dims) -> float:
    """How far two configs are: 1 per categorical dimension that differs (or that only one has),
    and a float dimension's distance on its (log) scale over its range."""
    total = 0.0
    for dim in dims:
        x, y = a.get(dim.name), b.get(dim.name)
        if x is None or y is None:
            total += x is not y
        elif dim.bounds is not None:
            scale = (lambda v: math.log(v)) if dim.log else (lambda v: v)
            total += abs(scale(x) - scale(y)) / (scale(dim.bounds[1]) - scale(dim.bounds[0]))
        else:
            total += x != y
    return total


def nearest(config: dict[str, Any], recorded: list[dict[str, Any]], dims) -> int:
    """The index of the recorded configuration nearest ``config`` (the first of equals)."""
    found = [distance(config, other, dims) for other in recorded]
    return found.index(min(found))
