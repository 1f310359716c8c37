"""A simulated search's world (``search.run.simulate.World``), built on the driver from the
learning-curve table and the estimate's configurations and cost model."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from search.run.simulate import World

__all__ = ["build_world"]


def build_world(profile, settings, counts: dict[str, int]) -> World:
    """The world of a simulated search of ``settings`` (``settings.simulate``: its table): the table
    read and stretched, and the estimate's configurations with the cost model's figures. The same
    settings build the same world (on ``--resume`` too). Raises InputError naming a bad table."""
    from search.results.curves import read_curves
    from search.results.distance import axes
    from search.run.simulate import World, stretch, table_path
    from search.tools.estimate import EPOCH_SPREAD, PROBE_SPREAD, assumed_probe, configurations, epoch_parts, _macs

    path = table_path(profile, settings.simulate)
    table = read_curves(path)
    epochs = settings.max_epochs
    pool = configurations(profile, settings)
    points = [assumed_probe(config, _macs(config, profile.resolution)) for config in pool]
    train_s, val_s, setup_s = epoch_parts(pool, points, counts)
    floor = table.floor if table.floor is not None else float(np.min(table.values))
    baselines = {"unet": floor, "true": float((table.settings.get("baselines") or {}).get("true", math.nan))}
    return World(str(path), axes(profile.space), list(table.configs), stretch(table.values, epochs),
                 None if table.ties is None else stretch(table.ties, epochs), floor, baselines, pool, train_s, val_s,
                 setup_s, np.array([point["macs"] for point in points]), PROBE_SPREAD, EPOCH_SPREAD,
                 settings.time_scale, settings.seed)
