"""The cost estimate (``search.tools.estimate``): its probe (trial-like processes, at once, each
configuration's own figures) and its replay over the learning curves that ship with a profile."""

from __future__ import annotations

import json
import os

import numpy as np
import torch

import search.tools.estimate as estimate_module
from search.run.settings import Settings
from search.space import PROFILES, train_config
from search.tools.estimate import Estimate, Probed, probe_on_workers, shipped_curves
from tests.conftest import RAY, SHARD_SIZE
from search.results.durations import duration_text
from vidseg.train.model import build_model

BASE = {"N_S": 2, "N_T": 2, "hid_T": 16, "epochs": 1, "batch_size": 2, "device": "cpu", "translator": "incep"}


@RAY
def test_the_probes_run_at_once_in_fresh_processes_each_figure_its_own_configurations(local_ray, tiny_shards):
    configs = [{**BASE, "hid_S": 4, "loss": "mse"}, {**BASE, "hid_S": 8, "loss": "ce"}, {**BASE, "hid_S": 16, "loss": "mse"}]
    probed = probe_on_workers(str(tiny_shards), cpus=1, at_once=2)(configs)
    with torch.device("meta"):
        params = [sum(p.numel() for p in build_model(train_config(c), *SHARD_SIZE).parameters()) for c in configs]
    assert [point["params"] for point in probed.points] == params  # in the order given, though split over two tasks
    pids = {point["pid"] for point in probed.points}
    assert len(pids) == 2 and os.getpid() not in pids  # two processes at once, not this one
    assert all(point["train_s_per_sample"] > 0 and point["val_s_per_clip"] > 0 for point in probed.points)
    assert probed.cold_s > 0  # a fresh process's first probe costs more than the same probe again


def test_the_demo_ships_whole_learning_curves_of_its_own_space():
    curves = shipped_curves(PROFILES["demo"])
    assert curves is not None and curves.settings["scheduler"] == "fifo" and len(curves.configs) >= 6
    assert np.isfinite(curves.values).all() and curves.floor is not None
    losses = {config["loss"] for config in curves.configs}  # both kinds of output the space draws
    assert "mse" in losses and losses & {"ce", "weighted_ce"}


def _estimate(monkeypatch, curves_folder, whole: bool = False, budget_s: float | None = None):
    """The demo's expected device seconds with the curves in ``curves_folder``, where a trial whose
    nearest shipped curve rises above copy-last-frame costs ten times one whose curve does not."""
    from search.tools.replay import distance

    shipped = shipped_curves(PROFILES["demo"])
    learns = shipped.values.max(axis=1) > shipped.floor + 0.01
    monkeypatch.setattr(estimate_module, "CURVES", curves_folder)
    profile = PROFILES["demo"]
    settings = Settings(profile="demo", num_samples=profile.num_samples, max_epochs=profile.max_epochs,
                        grace_period=profile.grace_period, reduction_factor=profile.reduction_factor,
                        max_concurrent=profile.max_concurrent, budget_s=budget_s)

    def probe(configs):
        nearest = [int(np.argmin([distance(c, recorded, profile.space) for recorded in shipped.configs]))
                   for c in configs]
        return Probed([{"setup_s": 0.0, "warmup_s": 0.0, "checkpoint_s": 0.0, "val_s_per_clip": 0.0,
                        "train_s_per_sample": 0.01 if learns[i] else 0.001} for i in nearest])

    found = estimate_module.estimate(settings, profile, {"train": 100, "val": 10}, lambda c: 1.0, probe, "fake",
                                     profile.num_samples)
    return found if whole else found.expected_s


def test_the_replay_over_the_shipped_curves_lets_the_trials_that_learn_go_on(monkeypatch, tmp_path):
    # over the shipped curves the scheduler stops the trials that stay at copy-last-frame and promotes
    # the ones that learn (here the costlier); made-up curves, which promote at random, expect less
    shipped = _estimate(monkeypatch, estimate_module.CURVES)
    made_up = _estimate(monkeypatch, tmp_path)
    assert shipped > 1.1 * made_up


def test_the_estimate_gives_the_spread_of_one_search_as_a_range_of_its_replays(monkeypatch):
    found = _estimate(monkeypatch, estimate_module.CURVES, whole=True)
    (low, high), (wall_low, wall_high) = found.expected_range_s, found.wall_range_s
    assert low < found.expected_s < high and wall_low < found.wall_s < wall_high  # TPE's order: searches differ
    assert found.full_s > high
    said = "\n".join(found.lines())
    assert f"expected (one search: {duration_text(low)} to {duration_text(high)}, the replays' 5th to 95th " \
           "percentile)" in said
    assert f"{duration_text(found.wall_s)} (one search: {duration_text(wall_low)} to {duration_text(wall_high)}" in said
    again = Estimate.from_dict(json.loads(json.dumps(found.to_dict())))  # as search.json keeps it
    assert again == found and again.lines() == found.lines()


def test_kept_to_a_budget_the_estimate_replays_the_budget_as_the_live_search_keeps_it(monkeypatch):
    """A search that a budget cuts short (as the demo fitted to a slow machine) is expected to spend
    about its budget, not what its trials would spend without one: the range it prints is the one its
    measured device time is held against."""
    free = _estimate(monkeypatch, estimate_module.CURVES, whole=True)
    assert free.budgeted_s is None and "kept to the budget" not in "\n".join(free.lines())
    budget = free.expected_s / 2
    kept = _estimate(monkeypatch, estimate_module.CURVES, whole=True, budget_s=budget)
    assert kept.expected_s == free.expected_s and kept.trial_s == free.trial_s  # the unbudgeted figures as they were
    low, high = kept.budgeted_range_s
    longest_epoch = 0.01 * 100 + estimate_module.REPORT_S  # the costliest configuration's epoch: 100 samples at 10 ms
    longest_epoch *= np.exp(3 * (estimate_module.PROBE_SPREAD + estimate_module.EPOCH_SPREAD))  # at the spreads' far end
    assert budget - 2 * kept.trial_s < low <= kept.budgeted_s <= high <= budget + 2 * longest_epoch
    assert kept.budgeted_wall_s < free.wall_s and kept.budgeted_wall_range_s[1] < free.wall_range_s[1]
    said = "\n".join(kept.lines())
    assert (f"kept to the budget: {duration_text(kept.budgeted_s)} spent (one search: {duration_text(low)} to "
            f"{duration_text(high)}") in said
    again = Estimate.from_dict(json.loads(json.dumps(kept.to_dict())))
    assert again == kept and kept.probed is not None and again.probed == kept.probed  # a grown search estimates from it


def test_the_estimate_holds_at_a_cluster_s_concurrency():
    """More trials at once than the pool of probed draws (the demo at 40 of 60, ``full`` at 64 of 128
    and 512 of 520, as the estimate of a new search on a GPU cluster runs): TPE's random proposals
    past the pool are the pool's draws again, and the figures stay what a search of that size costs."""
    found = {}
    for name, concurrency, trials in (("demo", 40, 60), ("full", 64, 128), ("full", 512, 520)):
        profile = PROFILES[name]
        settings = Settings(name, trials, profile.max_epochs, profile.grace_period, profile.reduction_factor, concurrency)
        found[name, trials] = estimate_module.estimate(settings, profile, dict(profile.counts), lambda c: 1.0, None,
                                                       "assumed", trials)
    small, large = found["full", 128], found["full", 520]
    assert found["demo", 60].wall_s < found["demo", 60].expected_s / 20  # 40 at once: the wall is a fraction
    assert 0.5 < large.trial_s / small.trial_s < 2  # a trial costs about the same in a larger search
    assert large.wall_s < large.expected_s / 10  # 512 at once: about its longest trial
    assert large.full_s / large.expected_s > 2 and small.full_s / small.expected_s > 2  # ASHA stops most early
