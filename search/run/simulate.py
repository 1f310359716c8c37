"""Simulated trials (``--simulate``): the real search over trials that do not train, to rehearse a
GPU cluster's search (its concurrency, packing, budget, resume) before paying for GPUs.

A simulated trial (``simulated_trial``, the trainable in place of ``search.run.trainable.train_simvp``)
reports every epoch what a real trial of its configuration would report:

- **val IoU and the soft score** from a learning-curve table (a ``--scheduler fifo`` search's
  ``curves.parquet``; by default the one that ships with the profile, else the demo's): the curve of
  the recorded configuration nearest its own (``search.results.distance``), stretched to the search's
  ``max_epochs`` (``stretch``: epoch e of E reads the table at the same share of its training,
  linearly between recorded epochs), plus noise seeded by the trial (``VALUE_NOISE`` a report, none
  where the table holds copy-last-frame exactly: such a trial predicts the last frame);
- **its cost** from the estimate's cost model (``search.tools.estimate.assumed_probe``: the target
  GPU's rate of multiply-adds, the profile's video counts): the epoch seconds of the nearest of the
  estimate's configurations, with the estimate's spreads (one per trial, one per epoch), seeded by
  the trial. Its device seconds are those times its share of a GPU (or its CPUs); it holds its Ray
  resources for the seconds divided by ``--time-scale`` (3600: an hour in a second).
- It checkpoints every epoch (a small JSON) and restores from it like a real trial, set-up paid
  again, so retries, lost nodes and ``--resume`` are exercised.
- Beside a real trial's fields, each report says where it runs (``device``: its node and GPU ids)
  and when (``started_at``, this process's start of the trial, and ``reported_at``; wall clock).

``search.tools.simulation.build_world`` builds a search's world on the driver. Everything else is
the real search. The estimate of a simulated search replays the same table
with the same cost model, so the two can be held against each other. The module imports neither
torch nor the search's other modules at its top: a simulated trial's process holds only Ray,
numpy and this.
"""

from __future__ import annotations

import json
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.results.distance import Axis, nearest

__all__ = ["World", "SimulatedResources", "simulated_trial", "stretch", "table_path", "VALUE_NOISE", "STATE"]

VALUE_NOISE = 0.002  # a report's val IoU and soft score: Gaussian, seeded by the trial
STATE = "simulated.json"  # a simulated trial's checkpoint


def stretch(table: np.ndarray, epochs: int) -> np.ndarray:
    """(trials, recorded epochs) -> (trials, ``epochs``): epoch e (from 1) of ``epochs`` reads the
    table at the same share of its training, e / epochs of its recorded epochs, linearly between the
    recorded ones (before the first, the first)."""
    recorded = table.shape[1]
    at = np.arange(1, epochs + 1) * recorded / epochs  # in recorded epochs, from 1
    known = np.arange(1, recorded + 1)
    return np.stack([np.interp(at, known, row) for row in table])


@dataclass(frozen=True)
class World:
    """What simulated trials report from: the table's configurations and curves at ``max_epochs``,
    and the estimate's configurations with their cost figures (seconds on the target device)."""

    source: str  # the table's path
    axes: list[Axis]
    recorded: list[dict[str, Any]]
    values: np.ndarray  # (recorded, max_epochs) val IoU
    ties: np.ndarray | None  # (recorded, max_epochs) soft val IoU
    floor: float  # copy-last-frame's val IoU on the UNet's masks
    baselines: dict[str, float]
    pool: list[dict[str, Any]]  # the estimate's configurations
    train_s: np.ndarray  # an epoch's training seconds, per pool configuration
    val_s: np.ndarray  # its validation, checkpoint and report
    setup_s: np.ndarray  # a trial's set-up and first step's warm-up
    macs: np.ndarray
    probe_spread: float
    epoch_spread: float
    time_scale: float
    seed: int

    def curves(self):
        """The table at ``max_epochs`` as ``search.results.curves.Curves``: what the estimate replays."""
        from search.results.curves import Curves

        seconds = np.ones_like(self.values)  # unread: the estimate times epochs by its own cost model
        return Curves([f"recorded-{i}" for i in range(len(self.recorded))], self.recorded, self.values, seconds,
                      {"max_epochs": self.values.shape[1], "scheduler": "fifo", "baselines": self.baselines},
                      ties=self.ties)

    def trial(self, config: dict[str, Any], trial_id: str) -> dict[str, Any]:
        """What trial ``trial_id`` of ``config`` reports, epoch by epoch, and what it costs."""
        rng = np.random.default_rng([self.seed, zlib.crc32(trial_id.encode())])
        epochs = self.values.shape[1]
        row = nearest(config, self.recorded, self.axes)
        values = self.values[row].copy()
        moved = values != self.floor
        values[moved] += rng.normal(0.0, VALUE_NOISE, epochs)[moved]
        ties = None if self.ties is None else self.ties[row] + rng.normal(0.0, VALUE_NOISE, epochs)
        cost = nearest(config, self.pool, self.axes)
        spread = rng.lognormal(0.0, self.probe_spread) * rng.lognormal(0.0, self.epoch_spread, epochs)
        return {"values": np.clip(values, 0.0, 1.0), "ties": ties, "train_s": self.train_s[cost] * spread,
                "val_s": self.val_s[cost] * spread, "setup_s": float(self.setup_s[cost]), "macs": float(self.macs[cost]),
                "recorded": row}


def table_path(profile, given: str | None) -> Path:
    """The learning-curve table a simulated search draws from: ``given``, else the one that ships
    with the profile, else the demo's."""
    from search.space import CURVES

    if given:
        return Path(given).expanduser().resolve()
    own = CURVES / f"{profile.name}.parquet"
    return own if own.is_file() else CURVES / "demo.parquet"


@dataclass(frozen=True)
class SimulatedResources:
    """A simulated trial's Ray resources, as ``search.run.trainable.trial_resources`` gives a real
    one's (its GPU share as packed by the memory model, or its CPUs). Ray pickles it with the
    trainable, so it lives here and imports the memory model (torch) only when called, on the driver:
    the trials' processes never import torch."""

    cpus: float
    resolution: tuple[int, int]
    gpu_memory_gb: float | None
    counts: dict[str, int]

    def __call__(self, config: dict[str, Any]) -> dict[str, float]:
        from search.run.trainable import trial_resources

        return trial_resources(self.cpus, self.resolution, self.gpu_memory_gb, self.counts)(config)


def simulated_trial(config: dict[str, Any], world: World) -> None:
    """Ray Tune function trainable: ``world`` comes through ``tune.with_parameters``."""
    import logging

    from ray import tune
    from ray.tune import Checkpoint

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # not a line per saved checkpoint
    import ray

    runtime = ray.get_runtime_context()
    where = f"{runtime.get_node_id()[:8]}:{','.join(runtime.get_accelerator_ids().get('GPU', [])) or 'cpu'}"
    started = time.time()
    context = tune.get_context()
    resources = context.get_trial_resources().required_resources
    share = float(resources.get("GPU", 0) or 0) or float(resources.get("CPU", 1) or 1)
    drawn = world.trial(config, context.get_trial_id())
    epochs = min(int(config.get("epochs", world.values.shape[1])), world.values.shape[1])
    start, spent = 0, {"device_seconds": 0.0, "train_device_seconds": 0.0, "val_device_seconds": 0.0}
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder:
            saved = json.loads((Path(folder) / STATE).read_text())
        start, spent = int(saved["epoch"]), {k: float(saved[k]) for k in spent}
    setup = drawn["setup_s"]  # paid again by a restarted trial, as a real one sets up again
    with tempfile.TemporaryDirectory(prefix="vidseg-simulated-") as folder:
        for epoch in range(start, epochs):
            train, val = float(drawn["train_s"][epoch]) + setup, float(drawn["val_s"][epoch])
            setup = 0.0
            time.sleep((train + val) / world.time_scale)
            spent = {"device_seconds": spent["device_seconds"] + share * (train + val),
                     "train_device_seconds": spent["train_device_seconds"] + share * train,
                     "val_device_seconds": spent["val_device_seconds"] + share * val}
            (Path(folder) / STATE).write_text(json.dumps({"epoch": epoch + 1, **spent}))
            metrics = {"epoch": epoch + 1, "val_iou": float(drawn["values"][epoch]), **spent,
                       "epoch_seconds": train + val, "train_seconds": train, "val_seconds": val, "device_share": share,
                       "macs": drawn["macs"], "simulated_from": drawn["recorded"], "device": where,
                       "started_at": started, "reported_at": time.time()}
            if drawn["ties"] is not None:
                metrics["val_soft_iou"] = float(drawn["ties"][epoch])
            tune.report(metrics, checkpoint=Checkpoint.from_directory(folder))
