"""The cost estimate's probe (``search.tools.estimate.probe_here``): trial-like processes, at once,
each configuration's own figures."""

from __future__ import annotations

import os

import torch

from search.space import train_config
from search.tools.estimate import probe_here
from tests.conftest import RAY, SHARD_SIZE
from vidseg.train.model import build_model

BASE = {"N_S": 2, "N_T": 2, "hid_T": 16, "epochs": 1, "batch_size": 2, "device": "cpu", "translator": "incep"}


@RAY
def test_the_probes_run_at_once_in_fresh_processes_each_figure_its_own_configurations(local_ray, tiny_shards):
    configs = [{**BASE, "hid_S": 4, "loss": "mse"}, {**BASE, "hid_S": 8, "loss": "ce"}, {**BASE, "hid_S": 16, "loss": "mse"}]
    probed = probe_here(str(tiny_shards), cpus=1, at_once=2)(configs)
    with torch.device("meta"):
        params = [sum(p.numel() for p in build_model(train_config(c), *SHARD_SIZE).parameters()) for c in configs]
    assert [point["params"] for point in probed.points] == params  # in the order given, though split over two tasks
    pids = {point["pid"] for point in probed.points}
    assert len(pids) == 2 and os.getpid() not in pids  # two processes at once, not this one
    assert all(point["train_s_per_sample"] > 0 and point["val_s_per_clip"] > 0 for point in probed.points)
    assert probed.cold_s > 0  # a fresh process's first probe costs more than the same probe again
