"""What a search's trials cost, after the last one: the fronts, the cheapest near-best, the anytime curve.

- ``pareto_front``: the trials no other trial beats on both val IoU and a cost (training device
  time, or the model's multiply-adds for one clip), cheapest first;
- ``cheapest_within``: the trial that cost least to train among those within 1% (or 5%) of the best
  val IoU;
- ``anytime_curve``: the best val IoU found so far against the device seconds spent, each epoch's
  cost counted when Ray Tune recorded its result;
- ``cost_section``: report.md's part about cost (tables, and the two pictures ``draw_fronts`` and
  ``draw_anytime`` make).

Optuna's study stays single-objective (TPE with ASHA's pruning): a multi-objective study cannot be
pruned (``Trial.report`` raises for one), so the front is computed here, from the trials.
"""

from __future__ import annotations

import math
from pathlib import Path

from search.results.rows import TrialRow
from vidseg.atomic import atomic_path
from search.results.durations import duration_text

__all__ = ["pareto_front", "cheapest_within", "anytime_curve", "draw_fronts", "draw_anytime", "cost_section",
           "FRONTS_PICTURE", "ANYTIME_PICTURE", "COSTS"]

FRONTS_PICTURE, ANYTIME_PICTURE = "front.png", "anytime.png"
COSTS = {"train_device_seconds": "training device time", "macs": "multiply-adds for one clip"}


def _cost(row: TrialRow, cost: str) -> float:
    return row.cost.get(cost, math.nan)


def _priced(rows: list[TrialRow], cost: str) -> list[TrialRow]:
    return [r for r in rows if r.scored and math.isfinite(_cost(r, cost))]


def pareto_front(rows: list[TrialRow], cost: str) -> list[TrialRow]:
    """The scored trials that no other beats on both best val IoU (higher) and ``cost`` (lower),
    cheapest first; of equal trials, the first."""
    front, best = [], -math.inf
    for row in sorted(_priced(rows, cost), key=lambda r: (_cost(r, cost), -r.best_val_iou)):
        if row.best_val_iou > best:
            front.append(row)
            best = row.best_val_iou
    return front


def cheapest_within(rows: list[TrialRow], share: float, cost: str = "train_device_seconds") -> TrialRow | None:
    """The trial of least ``cost`` whose best val IoU is within ``share`` (0.01: 1%) of the best
    trial's; None where no trial is scored and priced."""
    priced = _priced(rows, cost)
    if not priced:
        return None
    top = max(r.best_val_iou for r in priced)
    near = [r for r in priced if r.best_val_iou >= top - share * abs(top)]
    return min(near, key=lambda r: (_cost(r, cost), -r.best_val_iou))


def anytime_curve(rows: list[TrialRow]) -> list[tuple[float, float]]:
    """(device seconds spent, best val IoU so far) after each reported epoch, in the order Ray Tune
    recorded them: an epoch's cost is what its trial's ``device_seconds`` grew by."""
    events = []
    for index, row in enumerate(rows):
        history = row.history
        if history is None or "device_seconds" not in history:
            continue
        stamps = history["timestamp"] if "timestamp" in history else range(len(history))
        before = 0.0
        for stamp, spent, value in zip(stamps, history["device_seconds"], history["val_iou"]):
            spent = float(spent)
            if not math.isfinite(spent):
                continue
            events.append((float(stamp), index, spent - before, float(value)))
            before = spent
    events.sort(key=lambda e: (e[0], e[1]))
    curve, total, best = [], 0.0, -math.inf
    for _, _, grown, value in events:
        total += grown
        if math.isfinite(value):
            best = max(best, value)
        if math.isfinite(best):
            curve.append((total, best))
    return curve


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def draw_fronts(rows: list[TrialRow], path: Path) -> Path | None:
    """Every priced trial's best val IoU against each cost, its front drawn as a line; None where no
    trial is priced."""
    if not any(_priced(rows, cost) for cost in COSTS):
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=110)
    for ax, (cost, label) in zip(axes, COSTS.items()):
        priced = _priced(rows, cost)
        if cost == "macs":
            scale, unit = 1e9, "GMACs"
        elif priced and max(_cost(r, cost) for r in priced) > 3 * 3600:
            scale, unit = 3600.0, "device-hours"
        else:
            scale, unit = 1.0, "device seconds"
        ax.scatter([_cost(r, cost) / scale for r in priced], [r.best_val_iou for r in priced], color="tab:gray",
                   s=18, label="trials")
        front = pareto_front(rows, cost)
        ax.plot([_cost(r, cost) / scale for r in front], [r.best_val_iou for r in front], "o-", color="tab:red",
                label="front")
        ax.set_xlabel(f"{label} ({unit})")
        ax.set_ylabel("best val IoU")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())  # the minor ticks' labels overlap
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Val IoU against cost: the trials no other beats on both")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def draw_anytime(curve: list[tuple[float, float]], baseline: float, path: Path, budget_s: float | None = None) -> Path | None:
    """The search's anytime curve: best val IoU found against device seconds spent."""
    if not curve:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4), dpi=110)
    hours = curve[-1][0] > 3 * 3600
    scale, unit = (3600.0, "device-hours") if hours else (1.0, "device seconds")
    xs, ys = [x / scale for x, _ in curve], [y for _, y in curve]
    ax.step(xs, ys, where="post", color="tab:blue", linewidth=2, label=f"best found (final {ys[-1]:.4f})")
    ax.axhline(baseline, color="black", linestyle="--", linewidth=1, label=f"copy-last-frame ({baseline:.4f})")
    if budget_s is not None:
        ax.axvline(budget_s / scale, color="tab:red", linewidth=1, label=f"budget ({duration_text(budget_s)})")
    ax.set_xlabel(f"{unit} spent")
    ax.set_ylabel("best val IoU")
    ax.set_title(f"Anytime: {duration_text(curve[-1][0])} of device time spent")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def _macs(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value / 1e9:.3g} G" if value >= 1e8 else f"{value / 1e6:.3g} M"


def _row_text(row: TrialRow) -> str:
    return (f"| `{row.name}` | {row.best_val_iou:.4f} | {duration_text(row.train_device_seconds)} | "
            f"{duration_text(row.device_seconds)} | {_macs(row.macs)} | "
            f"{row.cost.get('ms_per_clip', math.nan):.2f} | {row.epochs} |")


HEADER = ["| Trial | best val IoU | training device time | all device time | MACs / clip | ms / clip | epochs |",
          "|---|---|---|---|---|---|---|"]


def cost_section(rows: list[TrialRow], fronts: Path | None, anytime: Path | None,
                 budget: dict | None = None) -> list[str]:
    """report.md's lines about cost: what the search spent (against its budget and estimate), the
    cheapest near-best configurations, the two fronts, and the pictures."""
    priced = [r for r in rows if math.isfinite(r.device_seconds)]
    lines = ["## Cost", ""]
    if not priced:
        return lines + ["No trial recorded its cost.", ""]
    spent = sum(r.device_seconds for r in priced)
    train = sum(r.train_device_seconds for r in priced if math.isfinite(r.train_device_seconds))
    lines.append(f"Device time spent: **{duration_text(spent)}** ({spent / 3600:.3f} device-hours; training "
                 f"{duration_text(train)}), over {len(priced)} trials: each trial's GPU share (or CPUs) x the wall "
                 "seconds it held them.")
    if budget:
        if budget.get("budget_s"):
            lines.append(f"Budget: {duration_text(budget['budget_s'])}; spent {spent / budget['budget_s']:.0%} of it"
                         + (f"; {budget['end_reason']}" if budget.get("end_reason") else "") + ".")
        if budget.get("estimate_s"):
            span = budget.get("estimate_range_s")
            within = "" if not span else (f"; one search: {duration_text(span[0])} to {duration_text(span[1])}, "
                                          + ("inside" if span[0] <= spent <= span[1] else "outside") + " it")
            lines.append(f"Estimated before the first trial: {duration_text(budget['estimate_s'])} "
                         f"(measured/estimated {spent / budget['estimate_s']:.2f}{within}).")
    lines += ["", "### The cheapest near-best configurations", "",
              "Of the trials within 1% and within 5% of the best val IoU, the one that cost least to train.", "",
              "| Within | " + HEADER[0][2:], "|---" + HEADER[1]]
    for share in (0.01, 0.05):
        row = cheapest_within(rows, share)
        if row is not None:
            lines.append(f"| {share:.0%} " + _row_text(row))
    for cost, label in COSTS.items():
        lines += ["", f"### Front: val IoU against {label}", "",
                  "The trials no other trial beats on both, cheapest first.", ""] + HEADER
        lines += [_row_text(r) for r in pareto_front(rows, cost)]
    if fronts is not None:
        lines += ["", f"![val IoU against cost]({fronts.name})"]
    if anytime is not None:
        lines += ["", f"![best val IoU against device time spent]({anytime.name})", "",
                  f"`{anytime.name}`: the search's anytime curve, the best val IoU found against the device time "
                  "spent (TensorBoard: `search/best_val_iou_by_device_seconds` in the `report` run)."]
    return lines + [""]
