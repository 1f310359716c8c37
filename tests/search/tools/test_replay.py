"""``python -m search.replay``: schedulers replayed over a learning-curve table, with the live
search's own scheduler (a real Ray Tune run makes the same stop decisions)."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from search.results.curves import read_curves
from search.tools.replay import Setting, replay, replay_many
from tests.conftest import RAY, run_cli, run_main

EPOCHS = 8


def _curves(n: int = 12, seed: int = 0) -> np.ndarray:
    """Saturating curves of different heights and speeds; trial 0 is a late bloomer (the lowest
    early, the best at the end)."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, EPOCHS + 1)
    top, rate = rng.uniform(0.1, 0.3, n), rng.uniform(0.3, 1.5, n)
    values = top[:, None] * (1 - np.exp(-rate[:, None] * t))
    values[0] = 0.4 / (1 + np.exp(-(t - 6) * 2))  # flat near 0, then past every other trial
    return values


def write_table(path, values: np.ndarray, settings: dict | None = None, drop_last_of: int | None = None,
                ties: np.ndarray | None = None):
    rows = {k: [] for k in ("trial_id", "epoch", "val_iou", "val_iou_true_inputs", "val_soft_iou", "train_loss",
                            "val_loss", "epoch_seconds", "status", "reference", "config")}
    ties = values if ties is None else ties
    for i, curve in enumerate(values):
        for epoch, value in enumerate(curve, 1):
            if i == drop_last_of and epoch == len(curve):
                continue
            rows["trial_id"].append(f"t{i:02d}")
            rows["epoch"].append(epoch)
            rows["val_iou"].append(float(value))
            rows["val_iou_true_inputs"].append(float(value))
            rows["val_soft_iou"].append(float(ties[i, epoch - 1]))
            rows["train_loss"].append(1.0)
            rows["val_loss"].append(1.0)
            rows["epoch_seconds"].append(1.0 + 0.1 * i)
            rows["status"].append("TERMINATED")
            rows["reference"].append("")
            rows["config"].append(json.dumps({"hid_S": 4 * (i + 1)}))
    table = pa.table(rows).replace_schema_metadata(
        {b"vidseg.settings": json.dumps(settings or {"profile": "demo", "max_epochs": EPOCHS, "max_concurrent": 2}).encode()})
    pq.write_table(table, path)
    return path


def test_fifo_runs_everything_and_asha_saves_but_can_lose_a_late_bloomer(tmp_path):
    curves = read_curves(write_table(tmp_path / "curves.parquet", _curves()))
    assert curves.max_epochs == EPOCHS and len(curves.trial_ids) == 12
    fifo = replay_many(curves, Setting("fifo"), seeds=20, num_samples=12, max_concurrent=2)
    assert fifo["spent"][0] == 1.0 and fifo["kept_best"] == 1.0
    assert fifo["best_at_budget"][0] == pytest.approx(curves.values.max())
    asha = replay_many(curves, Setting("asha", 1, 2), seeds=20, num_samples=12, max_concurrent=2)
    assert asha["spent"][2] < 0.6  # it stops most trials early
    assert asha["kept_best"] < 1.0  # the late bloomer looks worst at the first rungs
    # once stopped, the late bloomer is lost: those replays never get within 2% of the table's best
    assert asha["never_close"] == pytest.approx(1 - asha["kept_best"]) and asha["never_close"] > 0
    patient = replay_many(curves, Setting("asha", EPOCHS, 2), seeds=5, num_samples=12, max_concurrent=2)
    assert patient["spent"][0] == 1.0  # a grace period of every epoch never stops a trial


def _live_epochs(values: np.ndarray, ties: np.ndarray, kind: str, grace: int, factor: int, floor: float) -> list[int]:
    """Epochs each trial ran in a real Ray Tune run, one trial at a time in table order, with the
    scheduler the live search builds."""
    from ray import tune

    from search.run.tuner import make_scheduler

    def trainable(config):
        for epoch, (value, tie) in enumerate(zip(config["trial"]["curve"], config["trial"]["ties"]), 1):
            tune.report({"epoch": epoch, "val_iou": float(value), "val_soft_iou": float(tie)})

    tuner = tune.Tuner(
        trainable, param_space={"trial": tune.grid_search([{"curve": list(map(float, c)), "ties": list(map(float, t))}
                                                           for c, t in zip(values, ties)])},
        tune_config=tune.TuneConfig(scheduler=make_scheduler(kind, EPOCHS, grace, factor, floor=floor),
                                    max_concurrent_trials=1,
                                    reuse_actors=True),  # as the live search (search.run.tuner.build_tuner)
        run_config=tune.RunConfig(storage_path=str(TMP[0]), verbose=0))
    results = tuner.fit()
    by_curve = {tuple(r.config["trial"]["curve"]): int(r.metrics_dataframe["epoch"].max()) for r in results}
    return [by_curve[tuple(map(float, c))] for c in values]


def _live_epochs_in_budget(values: np.ndarray, seconds: np.ndarray, kind: str, floor: float, budget_s: float,
                           trial_s: float) -> list[int]:
    """Epochs each trial ran (0: never started) in a real Ray Tune run kept to a device-time budget by
    the live search's own ``BudgetLimiter`` and ``BudgetStop``, one trial at a time in table order,
    each epoch costing the table's seconds."""
    from ray import tune
    from ray.tune.search import Searcher

    from search.run.budget import BudgetLimiter, BudgetStop
    from search.run.tuner import make_scheduler

    class InOrder(Searcher):
        def __init__(self) -> None:
            super().__init__(metric="val_iou", mode="max")
            self.given = 0

        def set_search_properties(self, metric, mode, config, **spec) -> bool:
            return True

        def suggest(self, trial_id):
            if self.given == len(values):
                return Searcher.FINISHED
            self.given += 1
            return {"index": self.given - 1}

        def on_trial_complete(self, trial_id, result=None, error=False) -> None:
            pass

    def trainable(config):
        spent = 0.0
        for epoch, (value, cost) in enumerate(zip(values[config["index"]], seconds[config["index"]]), 1):
            spent += float(cost)
            tune.report({"epoch": epoch, "val_iou": float(value), "val_soft_iou": float(value), "device_seconds": spent})

    limiter = BudgetLimiter(InOrder(), budget_s, trial_s)
    tuner = tune.Tuner(
        trainable, tune_config=tune.TuneConfig(search_alg=limiter, num_samples=len(values), max_concurrent_trials=1,
                                               scheduler=make_scheduler(kind, EPOCHS, 1, 2, floor=floor),
                                               reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(TMP[0]), verbose=0, stop=BudgetStop(limiter)))
    ran = {r.config["index"]: int(r.metrics_dataframe["epoch"].max()) for r in tuner.fit()}
    return [ran.get(i, 0) for i in range(len(values))]


@RAY
def test_kept_to_a_budget_the_replay_runs_and_stops_the_trials_that_a_live_run_does(local_ray, tmp_path):
    """The budget as the estimate replays it (``Budget``) against the live search's limiter in a real
    Ray Tune run: trials that wait and never start, and a trial stopped mid-way by ``BudgetStop``."""
    from search.tools.replay import Budget

    TMP[:] = [tmp_path / "ray"]
    values = _curves(n=6, seed=3)
    seconds = np.repeat(np.array([1.0, 2.0, 1.0, 3.0, 1.5, 1.0])[:, None], EPOCHS, axis=1)
    curves = read_curves(write_table(tmp_path / "curves.parquet", values,
                                     settings={"profile": "demo", "max_epochs": EPOCHS, "max_concurrent": 1,
                                               "baselines": {"unet": 0.0, "true": 0.2}}))
    order = [curves.trial_ids.index(f"t{i:02d}") for i in range(len(values))]
    curves.seconds[order] = seconds
    budget_s, trial_s = 20.0, 4.0
    replayed = replay(curves, Setting("asha", 1, 2), order, max_concurrent=1, seed=0,
                      budget=Budget(budget_s, trial_s, np.ones(len(values))))
    expected = [replayed.epochs_run[i] for i in order]
    assert 0 in expected  # the budget ended the search before the last trials
    spent = sum(e * s for e, s in zip(expected, seconds[:, 0]))
    assert budget_s - trial_s < spent <= budget_s + seconds.max()
    assert _live_epochs_in_budget(values, seconds, "asha", 0.0, budget_s, trial_s) == expected


TMP = []


@RAY
@pytest.mark.parametrize("kind", ["asha", "pasha"])
def test_the_replay_stops_the_trials_that_a_live_ray_tune_run_stops(local_ray, tmp_path, kind):
    """With ties at the first rung (decided by the soft score), a trial below the floor at an empty
    rung, and for PASHA a budget that grows: the same stops live as replayed."""
    TMP[:] = [tmp_path / "ray"]
    values = _curves(n=7, seed=1)
    values[1:5, 0] = 0.1  # four trials tied at the first rung, as the demo's plateau
    ties = values + np.random.default_rng(2).uniform(-0.01, 0.01, values.shape)
    floor = 0.09
    values[0, 0] = 0.01  # trial 0 arrives first, clearly below the floor
    curves = read_curves(write_table(tmp_path / "curves.parquet", values, ties=ties,
                                     settings={"profile": "demo", "max_epochs": EPOCHS, "max_concurrent": 1,
                                               "baselines": {"unet": floor, "true": 0.2}}))
    assert curves.floor == floor and curves.ties is not None
    order = [curves.trial_ids.index(f"t{i:02d}") for i in range(len(values))]
    replayed = replay(curves, Setting(kind, 1, 2), order, max_concurrent=1, seed=0)
    expected = [replayed.epochs_run[i] for i in order]
    assert expected[0] == 1  # no free ride at the empty first rung
    assert min(expected) < EPOCHS and max(expected) > 2  # some stopped, some went on
    if kind == "asha":
        assert max(expected) == EPOCHS
    assert _live_epochs(values, ties, kind, 1, 2, floor) == expected


def test_the_cli_prints_the_table_draws_the_plot_and_writes_json(tmp_path, capsys):
    from search.tools.replay import main

    values = _curves()
    values[:6, 0] = 0.05  # half the trials tied at epoch 1
    ties = values + np.linspace(0, 0.01, len(values))[:, None]  # the tie score orders them by index
    table = write_table(tmp_path / "curves.parquet", values, ties=ties,
                        settings={"profile": "demo", "max_epochs": EPOCHS, "max_concurrent": 2,
                                  "baselines": {"unet": 0.05, "true": 0.1}})
    result = run_main(main, str(table), "--scheduler", "fifo", "asha", "--grace-period", "1", "2",
                     "--reduction-factor", "2", "--seeds", "50", "--plot", str(tmp_path / "replay.png"),
                     "--json", str(tmp_path / "replay.json"), "--samplers", "random", "tpe-multivariate-group-liar",
                     "--tie-evidence", capsys=capsys)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert "12 configurations x 8 epochs" in lines[0] and "50 replays per setting" in lines[0]
    evidence = lines.index("which of two trials ends better, told from epoch 1 (pairs whose ends differ):")
    assert lines[evidence + 1].split()[:3] == ["val", "IoU", "gap"]
    exact = lines[evidence + 2].split()
    pairs = sum(1 for i in range(6) for j in range(i + 1, 6) if values[i].max() != values[j].max())
    assert exact[:3] == ["0", "(tied)", str(pairs)]  # the six trials tied at epoch 1
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["setting", "to"])
    assert [line.split()[0] for line in lines[header + 1:header + 6]] == ["fifo", "asha", "asha", "asha", "asha"]
    assert (tmp_path / "replay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((tmp_path / "replay.json").read_text())
    assert [m["setting"] for m in metrics] == ["fifo", "asha grace 1 factor 2", "asha grace 1 factor 2 (arrival ties)",
                                               "asha grace 2 factor 2", "asha grace 2 factor 2 (arrival ties)",
                                               "sampler random", "sampler tpe-multivariate-group-liar"]
    assert all(m["seeds"] == 50 and 0 <= m["kept_best"] <= 1 for m in metrics[:5])
    peaks = _curves().max(axis=1)
    for sampled in metrics[5:]:  # the bests found lie among the recorded configurations' peaks
        assert all(peaks.min() - 1e-9 <= v <= peaks.max() + 1e-9 for v in sampled["best_at_budget"])
        assert sampled["budget"] == 12  # the demo profile's 16, at most the table's 12
    assert "samplers, 12 trials (2 at a time)" in result.stdout


def _text(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.parquet", "error: {p}/missing.parquet: no such learning-curve table"),
    (lambda p: _text(p / "bad.parquet", "not parquet"), "error: {p}/bad.parquet: not a Parquet"),
    (lambda p: write_table(p / "c.parquet", _curves(n=2), drop_last_of=1),
     "error: {p}/c.parquet: 1 of 2 trials ran all 8 epochs; a replay needs whole curves"),
    (lambda p: write_table(p / "a.parquet", _curves(n=4), {"scheduler": "asha", "max_epochs": EPOCHS}, drop_last_of=1),
     "error: {p}/a.parquet: a asha search's table (1 of 4 trials stopped early); a replay needs every trial's whole"),
])
def test_bad_tables_get_one_line_and_exit_2(tmp_path, make, message, capsys):
    from search.tools.replay import main

    result = run_main(main, str(make(tmp_path)), "--json", str(tmp_path / "out.json"), capsys=capsys)
    assert result.returncode == 2 and not (tmp_path / "out.json").exists()
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(message.format(p=tmp_path))


def test_a_bad_table_in_a_real_process_is_one_line_exit_2_and_no_traceback(tmp_path):
    result = run_cli("-m", "search.replay", str(_text(tmp_path / "bad.parquet", "not parquet")))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"error: {tmp_path}/bad.parquet: not a Parquet")


def test_asha_breaks_ties_at_a_rung_by_arrival():
    """Trials on the same plateau score the same to the last digit: Ray's ASHA promotes all of them
    (each equals the rung's cutoff); the search's stops all but the first."""
    from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

    from search.tools.replay import _Trial
    from search.run.tuner import make_scheduler

    def decisions(scheduler):
        out = []
        for i in range(4):
            trial = _Trial(f"t{i}")
            scheduler.on_trial_add(None, trial)
            value = 0.0195 if i < 3 else 0.25
            out.append(scheduler.on_trial_result(None, trial, {"epoch": 1, "val_iou": value, "training_iteration": 1}))
        return out

    ours = decisions(make_scheduler("asha", 10, 1, 3))
    assert ours[:3] == [TrialScheduler.CONTINUE, TrialScheduler.STOP, TrialScheduler.STOP]
    assert ours[3] == TrialScheduler.CONTINUE  # the best so far
    plain = decisions(AsyncHyperBandScheduler(time_attr="epoch", metric="val_iou", mode="max", max_t=10,
                                              grace_period=1, reduction_factor=3, brackets=1))
    assert plain[:3] == [TrialScheduler.CONTINUE] * 3  # what the tie-break fixes


def _demo_like(n: int = 24) -> np.ndarray:
    """Curves as the demo's: many trials tied at copy-last-frame after the first epoch, a few below
    it, and curves that cross (so PASHA's budget grows and Hyperband's brackets disagree)."""
    values = _curves(n, seed=3)
    values[4:12, 0] = 0.2511  # the last-frame skip's plateau, to the last digit
    values[12:15, :2] *= 0.3  # clearly below copy-last-frame, at first
    return values


@pytest.mark.parametrize("scheduler", ["asha", "pasha", "hyperband"])
def test_a_scheduler_saved_and_restored_after_every_kth_result_decides_as_never_stopped(tmp_path, scheduler):
    """The replay stops and resumes the search after every k-th result (k = 1, 3, 7): the scheduler
    is rebuilt and given its saved state through ``SchedulerState``, as ``--resume`` does. Over 100
    seeds, every trial runs exactly the epochs it ran straight through, for the same reasons. Without
    the state, the same replay decides otherwise (what ``--resume`` did before)."""
    values = _demo_like()
    rng = np.random.default_rng(1)
    ties = values + rng.uniform(0, 0.01, values.shape)
    settings = {"profile": "demo", "max_epochs": EPOCHS, "max_concurrent": 2, "baselines": {"unet": 0.2511}}
    curves = read_curves(write_table(tmp_path / "curves.parquet", values, settings=settings, ties=ties))
    setting = Setting(scheduler, grace_period=1, reduction_factor=2)
    forgetful = 0
    for seed in range(100):
        order = [int(i) for i in np.random.default_rng(seed).permutation(len(values))]
        straight = replay(curves, setting, order, 2, seed)
        for k in (1, 3, 7):
            resumed = replay(curves, setting, order, 2, seed, restore_every=k)
            assert (resumed.epochs_run, resumed.decisions, resumed.spent) == \
                (straight.epochs_run, straight.decisions, straight.spent), (seed, k)
        forgetful += replay(curves, setting, order, 2, seed, restore_every=3, forget=True).epochs_run != straight.epochs_run
    assert forgetful >= 50  # a scheduler restored empty decides otherwise in most replays


def test_trials_wait_for_room_on_the_cluster_s_gpus_as_ray_packs_them():
    """With a capacity (the cluster's GPUs) and each trial's share, a proposed trial starts only
    where its share fits beside the running ones', the first waiting one that fits first."""
    from search.results.curves import Curves
    from search.tools.replay import Setting, replay

    n = 6
    values, seconds = np.tile(np.linspace(0.1, 0.2, 2), (n, 1)), np.ones((n, 2))
    curves = Curves([f"t{i}" for i in range(n)], [{} for _ in range(n)], values, seconds,
                    {"max_epochs": 2, "scheduler": "fifo", "baselines": {"unet": 0.0}})
    fifo = Setting("fifo")
    assert replay(curves, fifo, list(range(n)), n, 0).makespan == 2  # all at once: no capacity given
    whole = replay(curves, fifo, list(range(n)), n, 0, capacity=2.0, shares=np.ones(n))
    assert whole.makespan == 6 and sum(whole.epochs_run.values()) == 2 * n  # two at a time, each to its end
    packed = replay(curves, fifo, list(range(n)), n, 0, capacity=2.0, shares=np.full(n, 0.5))
    assert packed.makespan == 4  # four at a time, a GPU to two
    mixed = replay(curves, fifo, list(range(n)), n, 0, capacity=1.0, shares=np.array([0.5, 1.0, 0.5, 0.5, 0.5, 0.5]))
    assert mixed.makespan == 8  # the whole-GPU trial waits, and the halves behind it start around it
