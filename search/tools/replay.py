"""Replay schedulers over recorded learning curves: what early stopping saves, measured over many seeds.

    python -m search.replay results/NAME/curves.parquet                       # the default grid, 100 seeds
    python -m search.replay TABLE --tie-evidence --scheduler asha pasha --grace-period 1 --reduction-factor 3
    python -m search.replay TABLE --scheduler asha --grace-period 1 2 4 --reduction-factor 2 3 --seeds 200
    python -m search.replay TABLE --plot replay.png --json replay.json

TABLE is a search's ``curves.parquet`` from ``run_search.py --scheduler fifo`` (every trial ran
every epoch). Each replay draws a random order of the recorded configurations and runs them as the
live search would: ``--max-concurrent`` at a time, each epoch taking its recorded seconds, and
every result handed to the very scheduler the live search builds (``search.run.tuner.make_scheduler``:
``search.run.schedulers.RungScheduler`` for ASHA and PASHA, with the table's copy-last-frame as its floor
and ties by the soft val IoU, or by arrival with ``--ties arrival``; Ray Tune's
``AsyncHyperBandScheduler`` over three brackets for Hyperband; or FIFO), which decides, as live,
whether the trial goes on.

For each setting it prints the median and interquartile range, over the seeds, of:
- ``to 2%``: the trial-epochs spent until the best found is within 2% of the table's best (the best
  any trial reached, as running every trial to the end finds it), as a share of that full budget;
  a replay that never gets there counts as never (its share is infinite);
- ``kept best``: how often the table's best configuration ran to the end (was not stopped);
- ``best at budget``: the best found by a search of ``--num-samples`` trials (the profile's budget:
  a random subset of the configurations);
- ``spent``: the trial-epochs the whole table's replay spent, as a share of the full budget.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.results.curves import Curves, read_curves
from search.results.distance import distance
from vidseg.errors import InputError

__all__ = ["Setting", "replay", "replay_many", "distance", "main"]

CLOSE = 0.98  # within 2% of the table's best


@dataclass(frozen=True)
class Setting:
    scheduler: str  # asha, pasha, hyperband or fifo
    grace_period: int = 1
    reduction_factor: int = 2
    ties: str = "score"  # asha and pasha: ties in val IoU by the tie score, or by "arrival" (Ray's ASHA's rule)

    @property
    def label(self) -> str:
        if self.scheduler == "fifo":
            return "fifo"
        rule = " (arrival ties)" if self.scheduler in ("asha", "pasha") and self.ties == "arrival" else ""
        return f"{self.scheduler} grace {self.grace_period} factor {self.reduction_factor}{rule}"


@dataclass(frozen=True)
class Replay:
    trace: list[tuple[int, float]]  # (trial-epochs spent, best found so far) after each result
    epochs_run: dict[int, int]  # trial index -> epochs it ran
    spent: int
    decisions: dict[str, str]  # ASHA and PASHA: trial id -> why the scheduler stopped it
    makespan: float = 0.0  # when the last trial ended, in the table's seconds


class _Trial:
    """What Ray's schedulers read of a trial: its id."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


@dataclass(frozen=True)
class Budget:
    """A device-time budget as the live search keeps it (``search.run.budget``): a trial starts only
    where what is spent, what the running trials are still expected to spend and ``trial_s`` fit
    ``budget_s`` (else it waits for a running trial to end, and where none runs the search ends), and
    a trial stops at its report where one more epoch like its last would overrun. ``shares``: each
    trial's device share (by its index in the curves), which turns its seconds into device seconds."""

    budget_s: float
    trial_s: float
    shares: Any


def replay(curves: Curves, setting: Setting, order: list[int], max_concurrent: int, seed: int,
           restore_every: int = 0, forget: bool = False, budget: Budget | None = None,
           capacity: float | None = None, shares=None, narrate: bool = True) -> Replay:
    """Run the trials ``order`` (indices into ``curves``) through ``setting``'s scheduler, as the live
    search would, within ``budget`` where one is given. Up to ``max_concurrent`` trials are proposed
    at once; with ``capacity`` (the cluster's GPUs, or CPUs) and ``shares`` (each trial's, by its index
    in the curves), a proposed trial waits until its share fits beside the running ones' (Ray Tune
    starts the first waiting trial that fits). ``restore_every`` k > 0: after every k-th
    result the scheduler is replaced by a new one given the saved state, as ``--resume`` does
    (``SchedulerState``, through pickle, then every trial added so far added again, as Ray re-adds
    restored trials); with ``forget``, given no state, as Ray Tune's own restore does
    (ray-project/ray#30838). ``narrate`` False: the scheduler does not log why it stops a trial (the
    estimate's made-up trials)."""
    run = _Run(curves, setting, order, max_concurrent, seed, budget, capacity, shares, narrate)
    run.start_more(0.0)
    while run.events:
        run.next_result()
        if restore_every and run.spent % restore_every == 0:  # stopped and resumed here
            run.restore(forget)
    return Replay(run.trace, run.epochs_run, run.spent, dict(getattr(run.scheduler, "decisions", {})), run.now)


class _Run:
    """A replay's cluster in the table's time: the trials proposed, waiting for room, running; the
    scheduler deciding on each result; the budget kept."""

    def __init__(self, curves: Curves, setting: Setting, order: list[int], max_concurrent: int, seed: int,
                 budget: Budget | None, capacity: float | None, shares, narrate: bool) -> None:
        self.curves, self.setting, self.seed, self.narrate = curves, setting, seed, narrate
        self.max_concurrent, self.budget, self.capacity, self.shares = max_concurrent, budget, capacity, shares
        self.scheduler = self.new_scheduler()
        self.events: list[tuple[float, int, int, int]] = []  # (finish time, tie-break, trial index, epoch)
        self.counter = itertools.count()
        self.pending = list(order)
        self.trials: dict[int, _Trial] = {}
        self.epochs_run = {i: 0 for i in order}
        self.trace: list[tuple[int, float]] = []
        self.best, self.spent, self.now = -math.inf, 0, 0.0
        self.running: set[int] = set()  # proposed: started, or waiting for room (``waiting``, in order)
        self.waiting: list[int] = []
        self.held = 0.0  # the running trials' shares of the capacity
        self.costs: dict[int, float] = {}  # device seconds each trial has spent, under a budget
        self.spent_s = 0.0  # and all of them together

    def new_scheduler(self):
        from search.run.tuner import make_scheduler

        setting = self.setting
        scheduler = make_scheduler(setting.scheduler, self.curves.max_epochs, setting.grace_period,
                                   setting.reduction_factor, floor=self.curves.floor, ties=setting.ties, seed=self.seed)
        if not self.narrate and hasattr(scheduler, "narrate"):
            scheduler.narrate = False
        return scheduler

    def share(self, index: int) -> float:
        return 0.0 if self.capacity is None else float(self.shares[index])

    def fits(self) -> bool:
        """Whether one more trial fits the budget, beside what the running ones are still expected to spend."""
        if self.budget is None:
            return True
        committed = sum(max(0.0, self.budget.trial_s - self.costs.get(i, 0.0)) for i in self.running)
        return self.spent_s + committed + self.budget.trial_s <= self.budget.budget_s

    def start_more(self, now: float) -> None:
        while self.pending and len(self.running) < self.max_concurrent:
            if not self.fits():
                if not self.running:  # none runs and none fits: the budget ends the search
                    self.pending.clear()
                break
            index = self.pending.pop(0)
            self.running.add(index)
            self.trials[index] = _Trial(f"{self.seed}-{index}")
            self.scheduler.on_trial_add(None, self.trials[index])
            self.waiting.append(index)
        for index in list(self.waiting):
            share = self.share(index)
            if self.capacity is not None and self.held + share > self.capacity + 1e-9 and self.held > 0:
                continue
            self.waiting.remove(index)
            self.held += share
            heapq.heappush(self.events, (now + self.curves.seconds[index, 0], next(self.counter), index, 1))

    def next_result(self) -> None:
        """The next epoch to end: reported, decided (the budget's stopper first, as Tune asks it), and
        the trials that now fit started."""
        from ray.tune.schedulers import TrialScheduler

        curves = self.curves
        self.now, _, index, epoch = heapq.heappop(self.events)
        value = float(curves.values[index, epoch - 1])
        self.spent += 1
        self.epochs_run[index] = epoch
        self.best = max(self.best, value)
        self.trace.append((self.spent, self.best))
        result = {"epoch": epoch, "val_iou": value, "training_iteration": epoch}
        if curves.ties is not None:
            result["val_soft_iou"] = float(curves.ties[index, epoch - 1])
        over = False
        if self.budget is not None:  # BudgetStop, which Tune asks before the scheduler
            cost = float(self.budget.shares[index]) * float(curves.seconds[index, epoch - 1])
            self.costs[index] = self.costs.get(index, 0.0) + cost
            self.spent_s += cost
            over = self.spent_s + cost > self.budget.budget_s
        decision = TrialScheduler.STOP if over else self.scheduler.on_trial_result(None, self.trials[index], result)
        if decision == TrialScheduler.STOP or epoch == curves.max_epochs:
            self.scheduler.on_trial_complete(None, self.trials[index], result)
            self.running.discard(index)
            self.held -= self.share(index)
        else:
            heapq.heappush(self.events, (self.now + curves.seconds[index, epoch], next(self.counter), index, epoch + 1))
        self.start_more(self.now)

    def restore(self, forget: bool) -> None:
        """The scheduler saved and a new one given its state (none, with ``forget``), every trial re-added."""
        import pickle

        from search.run.schedulers import SchedulerState

        saved = pickle.dumps(SchedulerState(self.scheduler).saved_state())
        self.scheduler = self.new_scheduler()
        if pickle.loads(saved) is not None and not forget:
            SchedulerState(self.scheduler, quiet=True).restore_state(pickle.loads(saved))
        for trial in self.trials.values():
            self.scheduler.on_trial_add(None, trial)


SAMPLERS = {  # name -> (searcher, TPE settings): what --samplers compares
    "random": ("random", None),
    "tpe-independent": ("tpe", {"multivariate": False, "group": False, "constant_liar": False}),
    "tpe-multivariate-group": ("tpe", {"multivariate": True, "group": True, "constant_liar": False}),
    "tpe-multivariate-group-liar": ("tpe", {"multivariate": True, "group": True, "constant_liar": True}),
}


def replay_sampler(curves: Curves, name: str, seeds: int, budget: int, max_concurrent: int, profile) -> dict[str, Any]:
    """A searcher replayed over the table, as a surrogate benchmark: each config Optuna proposes
    in ``profile``'s space runs as the nearest recorded configuration (``distance``), to the end,
    scoring its best val_iou; ``max_concurrent`` trials run at once, the oldest told first and the
    next asked then (the recorded trials' run times are not modelled here);
    the paper's points are enqueued first, as live. Returns the best found at ``budget``."""
    import optuna

    from search.space import SearchSpace, enqueue, points_to_evaluate
    from search.run.study import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher, tpe = SAMPLERS[name]
    space, dims = SearchSpace(profile, curves.max_epochs, 0), profile.space
    peak = curves.values.max(axis=1)
    found = []
    for seed in range(seeds):
        study = optuna.create_study(direction="maximize", sampler=make_sampler(searcher, seed, budget, tpe_settings=tpe))
        for point in points_to_evaluate(profile).values():
            enqueue(study, point)
        rng, best = np.random.default_rng(seed), -math.inf
        running = []  # asked, not yet told: as live, a new trial is asked as soon as one ends
        for asked in range(budget):
            trial = study.ask()
            config = space(trial)
            distances = np.array([distance(config, recorded, dims) for recorded in curves.configs])
            running.append((trial, float(peak[int(rng.choice(np.flatnonzero(distances == distances.min())))])))
            if len(running) == max_concurrent or asked == budget - 1:
                for trial, value in running[:1] if asked < budget - 1 else running:
                    study.tell(trial, value)
                    best = max(best, value)
                running = running[1:] if asked < budget - 1 else []
        found.append(best)
    return {"sampler": name, "seeds": seeds, "budget": budget, "best_at_budget": _quartiles(found),
            "mean": float(np.mean(found)), "table_best": float(peak.max())}


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    values = np.array(values, dtype=float)  # an infinity (never got close) is not interpolated with
    method = "linear" if np.isfinite(values).all() else "inverted_cdf"
    q1, median, q3 = np.percentile(values, [25, 50, 75], method=method)
    return float(median), float(q1), float(q3)


def replay_many(curves: Curves, setting: Setting, seeds: int, num_samples: int, max_concurrent: int) -> dict[str, Any]:
    """The setting's metrics over ``seeds`` replays (the module's docstring)."""
    n, full = len(curves.trial_ids), len(curves.trial_ids) * curves.max_epochs
    peak = curves.values.max(axis=1)
    table_best, best_trial = float(peak.max()), int(peak.argmax())
    to_close, kept, at_budget, spent, traces = [], [], [], [], []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        order = [int(i) for i in rng.permutation(n)]
        whole = replay(curves, setting, order, max_concurrent, seed)
        reached = next((s for s, b in whole.trace if b >= CLOSE * table_best), None)
        to_close.append(math.inf if reached is None else reached / full)
        kept.append(whole.epochs_run[best_trial] == curves.max_epochs)
        spent.append(whole.spent / full)
        traces.append(whole.trace)
        subset = [int(i) for i in rng.permutation(n)[:num_samples]]
        at_budget.append(replay(curves, setting, subset, max_concurrent, seed).trace[-1][1])
    return {"setting": setting.label, "scheduler": setting.scheduler, "grace_period": setting.grace_period,
            "reduction_factor": setting.reduction_factor, "ties": setting.ties, "seeds": seeds, "table_best": table_best,
            "to_close": _quartiles(to_close), "never_close": sum(math.isinf(v) for v in to_close) / seeds,
            "kept_best": sum(kept) / seeds, "best_at_budget": _quartiles(at_budget), "spent": _quartiles(spent),
            "num_samples": num_samples, "traces": traces, "full": full}


TIE_BINS = (0.0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2)  # gaps in val IoU: exact ties, then (previous, this]


def tie_evidence(curves: Curves, epoch: int = 1, bins: tuple[float, ...] = TIE_BINS) -> list[dict[str, Any]]:
    """How well each signal at ``epoch`` predicts which of two trials ends better (its best val IoU
    over every epoch), over the pairs of trials whose ends differ, by the gap between their val IoUs
    at ``epoch``: exact ties first, then each bin (previous edge, edge]. For each bin: the share
    the tie score (``val_soft_iou``) gets right, the share val IoU itself gets right (where it is
    not tied), and the share val loss gets right (pairs of the same loss type only: a loss is not
    comparable across them). A coin, such as arrival order, gets half right. The scheduler's tie
    tolerance is the widest gap up to which the tie score does at least as well as val IoU."""
    if curves.ties is None:
        raise InputError("the table has no val_soft_iou column (a table made before trials reported it)")
    peak = curves.values.max(axis=1)
    value, tie = curves.values[:, epoch - 1], curves.ties[:, epoch - 1]
    loss = curves.losses[:, epoch - 1] if curves.losses is not None else np.full(len(value), np.nan)
    kinds = [c.get("loss") for c in curves.configs]
    rows = [{"epoch": epoch, "low": low, "high": high, **dict.fromkeys(
        ("pairs", "tie", "val_iou", "val_loss", "val_loss_pairs"), 0)}
        for low, high in zip((-1.0, *bins[:-1]), bins)]
    for i in range(len(value)):
        for j in range(i + 1, len(value)):
            gap = abs(value[i] - value[j])
            row = next((r for r in rows if r["low"] < gap <= r["high"]), None)
            if row is None or abs(peak[i] - peak[j]) <= 1e-12:
                continue
            better = peak[i] > peak[j]
            row["pairs"] += 1
            row["tie"] += bool(tie[i] != tie[j] and (tie[i] > tie[j]) == better)
            row["val_iou"] += bool(gap > 0 and (value[i] > value[j]) == better)
            if kinds[i] == kinds[j] and np.isfinite(loss[i]) and np.isfinite(loss[j]) and loss[i] != loss[j]:
                row["val_loss_pairs"] += 1
                row["val_loss"] += (loss[i] < loss[j]) == better
    return rows


def tie_evidence_text(rows: list[dict[str, Any]]) -> str:
    def share(right: int, total: int) -> str:
        return f"{right / total:.0%} of {total}" if total else "-"
    lines = [f"{'val IoU gap':>18} {'pairs':>6} {'soft val IoU right':>19} {'val IoU right':>14} {'val loss right':>16}"]
    for r in rows:
        gap = "0 (tied)" if r["high"] == 0 else f"{max(r['low'], 0):g}-{r['high']:g}"
        lines.append(f"{gap:>18} {r['pairs']:>6} {share(r['tie'], r['pairs']):>19} "
                     f"{share(r['val_iou'], r['pairs']) if r['high'] > 0 else '-':>14} "
                     f"{share(r['val_loss'], r['val_loss_pairs']):>16}")
    return "\n".join(lines)


def floor_evidence(curves: Curves, margin: float) -> str:
    """What the floor would stop, by epoch: trials clearly below copy-last-frame there (under
    ``floor * (1 - margin)``), and how many of those end above copy-last-frame (late bloomers the
    floor would lose)."""
    if curves.floor is None:
        return "the table records no copy-last-frame baseline"
    peak = curves.values.max(axis=1)
    parts = []
    for epoch in range(1, curves.max_epochs + 1):
        below = curves.values[:, epoch - 1] < curves.floor * (1 - margin)
        parts.append(f"{epoch}: {int(below.sum())}/{int((below & (peak > curves.floor)).sum())}")
    return (f"copy-last-frame {curves.floor:.4f}; by epoch, the trials more than {margin:.0%} under it / those of them "
            f"whose best ends above it: " + ", ".join(parts))


def _plain(value: Any) -> Any:
    """JSON-ready: infinities (a replay that never got close) become null."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return None if isinstance(value, float) and math.isinf(value) else value


def _share(q: tuple[float, float, float]) -> str:
    def one(v: float) -> str:
        return "never" if math.isinf(v) else f"{v:.0%}"
    return f"{one(q[0])} ({one(q[1])}-{one(q[2])})"


def table_text(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'setting':<44} {'to 2% of best':>20} {'kept best':>10} {'best at budget':>24} {'spent':>18}"]
    for r in rows:
        b = r["best_at_budget"]
        lines.append(f"{r['setting']:<44} {_share(r['to_close']):>20} {r['kept_best']:>10.0%} "
                     f"{f'{b[0]:.4f} ({b[1]:.4f}-{b[2]:.4f})':>24} {_share(r['spent']):>18}")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], out: Path, title: str) -> None:
    """The median best found against trial-epochs spent, per setting, with its interquartile band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vidseg.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        grid = np.arange(1, r["full"] + 1)
        curves = []
        for trace in r["traces"]:
            steps, best = np.array([s for s, _ in trace]), np.array([b for _, b in trace])
            at = np.searchsorted(steps, grid, side="right") - 1
            curves.append(np.where(at >= 0, best[np.clip(at, 0, None)], np.nan))
            curves[-1][grid > steps[-1]] = best[-1]  # a replay that stopped early keeps its best
        q1, median, q3 = np.nanpercentile(np.array(curves), [25, 50, 75], axis=0)
        line, = ax.plot(grid, median, label=r["setting"])
        ax.fill_between(grid, q1, q3, color=line.get_color(), alpha=0.15)
    ax.axhline(rows[0]["table_best"] * CLOSE, color="grey", linestyle=":", label="within 2% of the table's best")
    ax.set_xlabel("trial-epochs spent")
    ax.set_ylabel("best val IoU found")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m search.replay", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", type=Path, help="a search's curves.parquet, from run_search.py --scheduler fifo")
    parser.add_argument("--scheduler", nargs="+", choices=("asha", "pasha", "hyperband", "fifo"),
                        default=["fifo", "asha", "pasha", "hyperband"], help="schedulers to replay (default: all four)")
    parser.add_argument("--ties", nargs="+", choices=("score", "arrival"), default=["score", "arrival"],
                        help="asha's and pasha's tie rule: by the soft val IoU (the search's), by arrival (the old "
                             "rule), or both (default)")
    parser.add_argument("--tie-evidence", action="store_true",
                        help="first print how well the soft val IoU, val IoU and val loss at the first epoch predict "
                             "which of two trials with (nearly) tied val IoUs ends better")
    parser.add_argument("--grace-period", nargs="+", type=int, default=None,
                        help="ASHA's and Hyperband's grace periods (default: 1 2 3 4)")
    parser.add_argument("--reduction-factor", nargs="+", type=int, default=[2, 3, 4],
                        help="their reduction factors (default: 2 3 4)")
    parser.add_argument("--seeds", type=int, default=100, help="replays per setting (default 100)")
    parser.add_argument("--num-samples", type=int, default=None,
                        help="the budget in trials for 'best at budget' (default: the search's profile's, at most the "
                             "table's trials)")
    parser.add_argument("--max-concurrent", type=int, default=None,
                        help="trials at once (default: the table's search's)")
    parser.add_argument("--samplers", nargs="*", choices=sorted(SAMPLERS), default=None,
                        help="also replay Optuna samplers (a nearest-recorded-configuration surrogate: each proposed "
                             "config runs as the closest one in the table) at the budget; with no names: all of them")
    parser.add_argument("--plot", type=Path, default=None, help="draw best found against trial-epochs spent (PNG)")
    parser.add_argument("--json", type=Path, default=None, help="write the metrics as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        curves = _checked(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from search.space import PROFILES, narrowed

    saved = curves.settings
    profile = narrowed(PROFILES.get(saved.get("profile", ""), PROFILES["demo"]), saved.get("limits"))
    n = len(curves.trial_ids)
    num_samples = min(args.num_samples or profile.num_samples, n)
    max_concurrent = args.max_concurrent or saved.get("max_concurrent") or profile.max_concurrent
    graces = args.grace_period or [g for g in (1, 2, 3, 4) if g <= curves.max_epochs]
    settings = [Setting("fifo")] if "fifo" in args.scheduler else []
    settings += [Setting(s, g, f, ties) for s in ("asha", "pasha", "hyperband") if s in args.scheduler
                 for g in graces for f in args.reduction_factor
                 for ties in (args.ties if s != "hyperband" else ["arrival"])]
    print(f"{args.table}: {n} configurations x {curves.max_epochs} epochs; best val IoU {curves.values.max():.4f}; "
          f"{args.seeds} replays per setting, {max_concurrent} trials at once; budget {num_samples} trials")
    if curves.floor is None:
        print("note: the table records no copy-last-frame baseline, so asha and pasha replay without their floor "
              "(python -m search.curves EXPERIMENT adds it)")
    if args.tie_evidence:
        try:
            from search.run.schedulers import FLOOR_MARGIN

            print(f"\nwhich of two trials ends better, told from epoch 1 (pairs whose ends differ):\n"
                  f"{tie_evidence_text(tie_evidence(curves))}\n\nthe floor: {floor_evidence(curves, FLOOR_MARGIN)}\n")
        except InputError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    rows = [replay_many(curves, s, args.seeds, num_samples, max_concurrent) for s in settings]
    print(table_text(rows))
    if args.samplers is not None:
        rows += _samplers(args, curves, num_samples, max_concurrent, profile)
    _write(args, rows)
    return 0


def _checked(args: argparse.Namespace) -> Curves:
    """The flags checked, and the table read: an ``InputError`` names what is wrong."""
    for name in ("seeds", "num_samples", "max_concurrent"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} is {getattr(args, name)}, but must be >= 1")
    if any(g < 1 for g in args.grace_period or []) or any(f < 2 for f in args.reduction_factor):
        raise InputError("--grace-period must be >= 1 and --reduction-factor >= 2")
    curves = read_curves(args.table)
    if any(g > curves.max_epochs for g in args.grace_period or []):
        raise InputError(f"--grace-period is more than the table's {curves.max_epochs} epochs")
    return curves


def _samplers(args: argparse.Namespace, curves: Curves, num_samples: int, max_concurrent: int, profile) -> list[dict]:
    """``--samplers``: each searcher replayed over the table, said; their rows."""
    names = args.samplers or list(SAMPLERS)
    sampled = [replay_sampler(curves, name, args.seeds, num_samples, max_concurrent, profile) for name in names]
    print(f"\nsamplers, {num_samples} trials ({max_concurrent} at a time), each run to the end as the nearest "
          "recorded configuration: best val IoU found, median (IQR), mean")
    for r in sampled:
        b = r["best_at_budget"]
        print(f"{r['sampler']:<30} {b[0]:.4f} ({b[1]:.4f}-{b[2]:.4f})  mean {r['mean']:.4f}")
    return [{**r, "setting": f"sampler {r['sampler']}", "scheduler": "sampler"} for r in sampled]


def _write(args: argparse.Namespace, rows: list[dict]) -> None:
    """``--json`` and ``--plot`` (FIFO and each scheduler's two settings that come closest soonest)."""
    if args.json is not None:
        from vidseg.atomic import atomic_path

        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps([_plain({k: v for k, v in r.items() if k != "traces"}) for r in rows],
                                      indent=1) + "\n")
    if args.plot is not None:
        chosen = [r for r in rows if r["scheduler"] == "fifo"]
        for scheduler in ("asha", "pasha", "hyperband"):
            ranked = sorted((r for r in rows if r["scheduler"] == scheduler), key=lambda r: (r["to_close"][0], -r["kept_best"]))
            chosen += ranked[:2]
        plot(chosen, args.plot, f"{args.table.parent.name}: median and IQR over {args.seeds} replays")
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    raise SystemExit(main())
