"""After a search: the leaderboard, the report, the best config and checkpoint, pictures, a submission.

Everything is written into the experiment folder beside Ray Tune's trial folders. For a cloud
``--storage`` it is written to a local staging folder first and uploaded with ``pyarrow.fs``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from search.results.curves import CURVES, write_curves
from search.results.journal import parameter_importances
from search.results.rows import LEADERBOARD_FIELDS, TrialRow, trial_rows
from search.space import PAPER, PROFILES, SEARCHED, TOP_TEAM, narrowed
from vidseg.atomic import atomic_path
from vidseg.baselines import copy_last_frame
from vidseg.data.remote import cached_shards, is_uri
from vidseg.data.shards import ShardSet
from vidseg.errors import InputError
from vidseg.eval.predict import frame_iou, load_trial_model, predict_last_frame, submission
from vidseg.eval.score import hidden_score
from vidseg.task import INPUT_FRAMES, LAST_INPUT, TARGET
from vidseg.train.loop import CHECKPOINT

__all__ = ["write_results", "no_trial_completed", "summary_text", "outcome_text", "draw_progress", "PICTURE"]

log = logging.getLogger("vidseg.search")

SCHEDULER_NAMES = {"asha": "ASHA", "pasha": "PASHA", "hyperband": "asynchronous Hyperband", "fifo": "FIFO"}
IMAGE_TRIALS, IMAGE_VIDEOS = 3, 4


def _best_checkpoint(row: TrialRow) -> Path | None:
    """The trial's checkpoint of its best val IoU: of equal ones (a plateau at copy-last-frame), the
    earliest, the epoch the leaderboard names."""
    result = row.result
    checkpoint = result.checkpoint
    scored = [(metrics["val_iou"], -metrics.get("epoch", 0), k) for k, (_, metrics) in enumerate(result.best_checkpoints or [])
              if isinstance(metrics.get("val_iou"), (int, float)) and not math.isnan(metrics["val_iou"])]
    if scored:
        checkpoint = result.best_checkpoints[max(scored)[2]][0]
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:  # local storage: the folder itself; cloud: a download
        file = Path(folder) / CHECKPOINT
        if not file.is_file():
            return None
        keep = Path(tempfile.mkdtemp(prefix="vidseg-best-")) / CHECKPOINT
        shutil.copyfile(file, keep)
        return keep


def _write_images(rows: list[TrialRow], shards: ShardSet, staging: Path, models: dict[str, tuple]) -> None:
    """For the best trials: val videos' target frame predicted against the truth, enlarged, with titled
    columns and an error column (``search.results.board.prediction_image``); the video ids and each
    row's IoU in the image's description; and a class legend in the experiment's run."""
    from search.results.board import REPORT_RUN, legend_image, prediction_image, write_images

    val = shards.split("val")
    n = min(IMAGE_VIDEOS, len(val))
    if n == 0:
        return
    unet_masks = np.stack([val.unet[i] for i in range(n)])
    truth = np.stack([val.true[i][-1] for i in range(n)])
    ids = [int(v) for v in val.video_ids[:n]]
    classes: set[int] = set()
    for row in rows[:IMAGE_TRIALS]:
        if row.trial_id not in models:
            continue
        model, config, state = models[row.trial_id]
        pred = predict_last_frame(model, unet_masks)
        ious = [frame_iou(p, t) for p, t in zip(pred, truth)]
        classes |= set(np.unique(truth).tolist()) | set(np.unique(pred).tolist()) | \
            set(np.unique(unet_masks[:, INPUT_FRAMES - 1]).tolist())
        labels = [f"video {vid:05d}\nIoU {iou:.3f}" for vid, iou in zip(ids, ious)]
        description = (f"**{row.name}**, epoch {state['epoch']} (its best, val IoU {row.best_val_iou:.4f} over "
                       "the whole val split). Rows: " + ", ".join(f"video {vid:05d} ({TARGET} IoU {iou:.3f})"
                                                                  for vid, iou in zip(ids, ious))
                       + f". Columns: the UNet's mask of {LAST_INPUT} (the last input), the predicted and the true "
                       f"{TARGET}, and the errors: white correct object, orange missed, blue extra, red wrong class. "
                       "Class colours: the `predictions/legend` image of the `report` run.")
        write_images(staging / Path(row.path).name, "predictions/val_frame22",
                     prediction_image(unet_masks[:, INPUT_FRAMES - 1], pred, truth, row_labels=labels),
                     description, state["epoch"], ".predictions")
    if classes:
        write_images(staging / REPORT_RUN, "predictions/legend", legend_image(sorted(classes - {0}) + [0]),
                     "The classes in the prediction images (class id: shape, material, colour), and the error "
                     "column's colours.", 0, ".legend")


# ----------------------------------------------------------------------------------------------
# the search's progress: best val IoU against trial-epochs spent

PICTURE = "best_vs_trial_epochs.png"


def progress_curve(rows: list[TrialRow]) -> list[tuple[int, float]]:
    """(trial-epochs spent, best val IoU so far) after each trial-epoch, in the order they were
    reported (Ray's timestamps; a trial's own epochs in order)."""
    events = []
    for index, row in enumerate(rows):
        history = row.history
        if history is None:
            continue
        stamps = history["timestamp"] if "timestamp" in history else range(len(history))
        for stamp, epoch, value in zip(stamps, history["epoch"], history["val_iou"]):
            events.append((float(stamp), index, int(epoch), float(value)))
    events.sort()
    curve, best = [], -math.inf
    for spent, (_, _, _, value) in enumerate(events, 1):
        if math.isfinite(value):
            best = max(best, value)
        curve.append((spent, best))
    return curve


def draw_progress(rows: list[TrialRow], baselines: dict[str, float], max_epochs: int, path: Path) -> Path | None:
    """``report.md``'s picture: the best val IoU found against trial-epochs spent, beside the
    baselines and the reference configurations' best; None where there is nothing to draw."""
    curve = [(x, y) for x, y in progress_curve(rows) if math.isfinite(y)]
    if not curve:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    xs, ys = zip(*curve)
    ax.step(xs, ys, where="post", color="tab:blue", linewidth=2.2, label=f"best found (final {ys[-1]:.4f})")
    ax.axhline(baselines["unet"], color="black", linestyle="--", linewidth=1.2,
               label=f"copy-last-frame, UNet masks ({baselines['unet']:.4f})")
    ax.axhline(baselines["true"], color="grey", linestyle=":", linewidth=1.2,
               label=f"copy-last-frame, true masks ({baselines['true']:.4f})")
    colors = iter(["tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"])
    for row in rows:
        if row.reference and row.scored:
            ax.axhline(row.best_val_iou, color=next(colors, "tab:gray"), linestyle="-.", linewidth=1,
                       label=f"{row.reference} ({row.best_val_iou:.4f}, {row.epochs} epoch{'s' * (row.epochs != 1)})")
    full = len(rows) * max_epochs
    ax.axvline(full, color="tab:green", linewidth=1, alpha=0.6, label=f"every trial to the end ({full} trial-epochs)")
    ax.set_xlim(0, max(full, xs[-1]) * 1.02)
    ax.set_xlabel("trial-epochs spent")
    ax.set_ylabel(f"best val IoU ({TARGET}, UNet masks in)")
    ax.set_title(f"The search's progress: {xs[-1]} trial-epochs run")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------
# importances and the report


def _report(rows, settings, baselines, importances, hidden, best_row, picture: Path | None = None,
            cost: list[str] | None = None) -> str:
    max_epochs = settings["max_epochs"]
    run = sum(r.epochs for r in rows)
    full = len(rows) * max_epochs
    stopped = sum(r.stopped_early for r in rows)
    scheduler = settings.get("scheduler", "asha")
    lines = [f"# Search report: {settings.get('name', '')}", "",
             f"Profile `{settings['profile']}`: {len(rows)} trials of up to {max_epochs} epochs; "
             f"searcher {settings.get('searcher', 'tpe')}; "
             + (f"{SCHEDULER_NAMES[scheduler]} grace {settings['grace_period']}, reduction factor "
                f"{settings['reduction_factor']}" if scheduler != "fifo" else "no early stopping (FIFO)")
             + f"; seed {settings['seed']}.", ""]
    notes = (settings.get("limits") or {}).get("notes") or []
    if notes:  # values of the profile's space that these shards cannot run
        lines += ["Left out of the space for these shards: " + "; ".join(notes) + ".", ""]
    lines += _against_baselines(rows, baselines, best_row, scheduler)
    if best_row is not None and baselines["unet"] > 0:
        lines += ["", f"Best against copy-last-frame: {best_row.best_val_iou / baselines['unet']:.2f}x."]
    lines += ["", f"## Early stopping's savings ({SCHEDULER_NAMES[scheduler]})", "",
              f"{run} trial-epochs run, against {full} without early stopping ({1 - run / max(full, 1):.0%} saved). "
              f"{stopped} trial(s) stopped early; {outcome_text(rows)}.", ""]
    if picture is not None:
        lines += [f"![best val IoU found against trial-epochs spent]({picture.name})", "",
                  f"`{picture.name}`: the best val IoU found against trial-epochs spent, with the baselines and the "
                  "reference configurations' best.", ""]
    lines += cost or []
    lines += _importances_lines(importances) + _hidden_lines(hidden)
    lines += ["", "## All trials", "", "See `leaderboard.csv`; `tensorboard --logdir` this folder compares them.", ""]
    return "\n".join(lines)


def _against_baselines(rows, baselines, best_row, scheduler: str) -> list[str]:
    """The table of the best trial against copy-last-frame and the reference configurations."""
    lines = ["## Best trial against the baselines and the reference configurations", "",
             f"val IoU of {TARGET} on the val split, with the UNet's masks as inputs (as at test time).", "",
             "| What | val IoU | Note |", "|---|---|---|"]
    if best_row is not None:
        lines.append(f"| **Best trial** `{best_row.name}` | **{_fmt(best_row.best_val_iou)}** | "
                     f"epoch {best_row.best_epoch}; {_config_text(best_row)} |")
        lines.append(f"| Best trial, true masks as inputs (oracle) | {_fmt(best_row.val_iou_true_inputs)} | "
                     "what a perfect UNet would give this model |")
    lines.append(f"| Copy last frame (UNet {LAST_INPUT}) | {_fmt(baselines['unet'])} | the test-time baseline |")
    lines.append(f"| Copy last frame (true {LAST_INPUT}) | {_fmt(baselines['true'])} | with a perfect UNet |")
    seen = {r.reference: r for r in rows if r.reference}
    for name in [name for name, *_ in PAPER] + [TOP_TEAM]:
        what = "Top teams' recipe" if name == TOP_TEAM else "Paper"
        row = seen.get(name)
        if row is None:
            lines.append(f"| {what} `{name}` | | not in this profile's space |")
        else:
            note = f"{row.epochs} epoch{'s' * (row.epochs != 1)}" + (f", stopped by {SCHEDULER_NAMES[scheduler]}" if row.stopped_early else "") + \
                   (f", {row.status.lower()}: {row.error}" if not row.completed else "")
            lines.append(f"| {what} `{name}` | {_fmt(row.best_val_iou)} | {note} |")
    return lines


def _importances_lines(importances) -> list[str]:
    lines = ["## Optuna's parameter importances (PED-ANOVA, for best val IoU)", "",
             "From the stored study (`optuna.journal`; `optuna-dashboard optuna.journal` shows it), over its "
             "completed and pruned trials (early stops), each at its best val IoU.", ""]
    if isinstance(importances, str):
        return lines + [f"Not given: {importances}."]
    return lines + ["| Parameter | Importance |", "|---|---|"] + [f"| {k} | {v:.3f} |" for k, v in importances.items()]


def _hidden_lines(hidden) -> list[str]:
    lines = ["", "## Hidden split", ""]
    if hidden is None:
        return lines + ["No hidden split in the shard set."]
    lines.append(f"`submission.pt`: the best model's {TARGET} predictions, {hidden['shape']} uint8 "
                 "(the competition's format).")
    if hidden["score"] is not None:
        return lines + [f"Score against the known answers ({hidden['source']}): **{hidden['score']:.4f}** IoU."]
    return lines + [f"Not scored: {hidden['source']}."]


def _fmt(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.4f}"


def _config_text(row: TrialRow) -> str:
    """The trial's value of every searched dimension it has, in the table's order."""
    return " ".join(f"{name}={f'{value:.3g}' if isinstance(value, float) else value}"
                    for name in SEARCHED if (value := row.config.get(name, "")) != "")


# ----------------------------------------------------------------------------------------------


def write_results(results, settings: dict[str, Any], shards_dir: str, experiment: str,
                  hidden_answers: str | None = None, study_file: Path | None = None,
                  budget: dict[str, Any] | None = None,
                  baselines: dict[str, float] | None = None) -> tuple[str, list[TrialRow]]:
    """Write everything about a finished search into ``experiment``; returns it and the leaderboard's
    rows. ``hidden_answers`` (an .npy) scores the submission where the shard set carries no answers;
    ``study_file`` is the search's Optuna journal (importances come from it; for a cloud storage it
    is uploaded beside the results); ``budget`` what the search's cost section says of its budget and
    estimate (``budget_s``, ``estimate_s``, ``end_reason``). A simulated search (``search.run.simulate``) has
    no shards (``shards_dir`` None) and gives its ``baselines``: its trials' checkpoints hold no model,
    so it writes no best checkpoint, pictures of predictions or submission."""
    local = not is_uri(experiment)
    staging = Path(experiment) if local else Path(tempfile.mkdtemp(prefix="vidseg-results-"))
    staging.mkdir(parents=True, exist_ok=True)
    settings = {**settings, "name": Path(experiment).name}
    shards = ShardSet.open(cached_shards(shards_dir), verify=False) if shards_dir else None
    rows = trial_rows(results, settings["max_epochs"], settings)
    _write_leaderboard(staging, rows)
    if shards is not None:
        baselines = copy_last_frame(shards)
    write_curves(rows, staging / CURVES, {**settings, "baselines": baselines})  # a replay's floor
    checkpoints, models = _best_models(rows, shards)
    best_row, hidden = _write_best(staging, rows, checkpoints, models, shards, shards_dir, hidden_answers)
    if not local:  # a local experiment got its hparams config and baselines run when the search started
        from search.results.board import write_baselines, write_experiment

        write_experiment(staging, narrowed(PROFILES[settings["profile"]], settings.get("limits")))
        write_baselines(staging, baselines, settings["max_epochs"])
    if study_file is not None and not local and Path(study_file).is_file():
        shutil.copyfile(study_file, staging / Path(study_file).name)
    _write_report(staging, rows, settings, baselines, study_file, hidden, best_row, budget)
    for file in checkpoints.values():
        shutil.rmtree(file.parent, ignore_errors=True)
    print(summary_text(rows, baselines, best_row, settings))
    if not local:
        import pyarrow.fs as pafs

        pafs.copy_files(str(staging), experiment)
        shutil.rmtree(staging, ignore_errors=True)
    return experiment, rows


def _write_leaderboard(staging: Path, rows: list[TrialRow]) -> None:
    with atomic_path(staging / "leaderboard.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LEADERBOARD_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(row.leaderboard() for row in rows)


def _best_models(rows: list[TrialRow], shards) -> tuple[dict[str, Path], dict[str, Any]]:
    """The best checkpoints of the leading trials that completed and scored (``IMAGE_TRIALS``), and
    their models, each loaded once; a checkpoint that does not load is skipped, in one line."""
    checkpoints, models = {}, {}
    for row in rows[:IMAGE_TRIALS] if shards is not None else []:
        if row.completed and row.scored:
            file = _best_checkpoint(row)
            if file is None:
                continue
            try:  # plain data that builds this trial's model: a planted pickle is refused here, and never run
                models[row.trial_id] = load_trial_model(file, shards.resolution)
            except (InputError, KeyError, ValueError, RuntimeError) as err:  # CheckpointError is an InputError
                log.warning("trial %s: its checkpoint %s is skipped: %s", row.trial_id, file,
                            err.args[0] if isinstance(err, KeyError) else str(err).splitlines()[0])
                continue
            checkpoints[row.trial_id] = file
    return checkpoints, models


def _write_best(staging: Path, rows: list[TrialRow], checkpoints: dict[str, Path], models: dict[str, Any], shards,
                shards_dir: str | None, hidden_answers: str | None) -> tuple[TrialRow | None, dict | None]:
    """The best trial with a model: its checkpoint, best_config.json, the submission and its score
    on the hidden split, and the pictures of predictions; a simulated search's best configuration
    alone. Returns the best row and the hidden split's score (None where there is none)."""
    best_row = next((r for r in rows if r.trial_id in checkpoints), None)
    hidden = None
    if best_row is not None:
        best_dir = staging / "best"
        best_dir.mkdir(exist_ok=True)
        with atomic_path(best_dir / CHECKPOINT) as tmp:
            shutil.copyfile(checkpoints[best_row.trial_id], tmp)
        model, config, state = models[best_row.trial_id]
        best = {"trial_id": best_row.trial_id, "val_iou": best_row.best_val_iou, "epoch": state["epoch"],
                "val_iou_true_inputs": best_row.val_iou_true_inputs, "checkpoint": "best/checkpoint.pt",
                "shards": shards_dir, "config": config.to_dict()}
        with atomic_path(staging / "best_config.json") as tmp:
            tmp.write_text(json.dumps(best, indent=2) + "\n")
        if "hidden" in shards.splits and len(shards.split("hidden")):
            prediction, ids = submission(model, shards)
            with atomic_path(staging / "submission.pt") as tmp:
                torch.save(prediction, tmp)
            score, source = hidden_score(shards, prediction, ids, hidden_answers)
            hidden = {"shape": tuple(prediction.shape), "score": score, "source": source}
        _write_images(rows, shards, staging, models)
    elif shards is None and rows and rows[0].completed and rows[0].scored:  # simulated: the best configuration
        best_row = rows[0]
        best = {"trial_id": best_row.trial_id, "val_iou": best_row.best_val_iou, "epoch": best_row.best_epoch,
                "simulated": True, "config": best_row.config}
        with atomic_path(staging / "best_config.json") as tmp:
            tmp.write_text(json.dumps(best, indent=2) + "\n")
    return best_row, hidden


def _write_report(staging: Path, rows: list[TrialRow], settings: dict[str, Any], baselines: dict[str, float],
                  study_file: Path | None, hidden: dict | None, best_row: TrialRow | None,
                  budget: dict[str, Any] | None) -> None:
    """report.md with its pictures (progress, the fronts, the anytime curve), and its TensorBoard copies."""
    from search.results.board import write_anytime, write_report
    from search.results.cost import ANYTIME_PICTURE, FRONTS_PICTURE, anytime_curve, cost_section, draw_anytime, draw_fronts

    importances = (parameter_importances(study_file, settings["name"]) if study_file is not None
                   else "the search has no stored study")
    picture = draw_progress(rows, baselines, settings["max_epochs"], staging / PICTURE)
    curve = anytime_curve(rows)
    cost = cost_section(rows, draw_fronts(rows, staging / FRONTS_PICTURE),
                        draw_anytime(curve, baselines["unet"], staging / ANYTIME_PICTURE, (budget or {}).get("budget_s")),
                        budget)
    report = _report(rows, settings, baselines, importances, hidden, best_row, picture, cost)
    with atomic_path(staging / "report.md") as tmp:
        tmp.write_text(report)
    write_report(staging, report, picture)
    write_anytime(staging, curve)


def outcome_text(rows: list[TrialRow]) -> str:
    """How the trials ended, e.g. '3 completed, 1 diverged, 1 failed (error)'."""
    words = {"TERMINATED": "completed", "DIVERGED": "diverged", "INFEASIBLE": "infeasible", "ERROR": "failed (error)"}
    counts = {status: sum(r.status == status for r in rows) for status in words}
    return ", ".join(f"{n} {words[status]}" for status, n in counts.items() if n or status == "TERMINATED")


def no_trial_completed(rows: list[TrialRow], experiment: str) -> str | None:
    """The error line of a search in which no trial completed (the driver then exits 1), or None."""
    if any(row.completed for row in rows):
        return None
    return f"error: no trial completed ({outcome_text(rows)}); see {experiment}/leaderboard.csv for why"


def summary_text(rows, baselines, best_row, settings: dict[str, Any]) -> str:
    """The terminal's end-of-search summary: the best trial against the baselines and the reference
    configurations, and what early stopping saved."""
    max_epochs, scheduler = settings["max_epochs"], settings.get("scheduler", "asha")
    lines = ["", f"{len(rows)} trials: {outcome_text(rows)}; {sum(r.stopped_early for r in rows)} stopped early"]
    if best_row is None:
        lines.append("no trial finished with a checkpoint")
        return "\n".join(lines)
    best = best_row.best_val_iou

    def against(value: float) -> str:
        return f"{best / value:.2f}x" if value and math.isfinite(value) and value > 0 else "-"

    lines += [f"best  {best:.4f}  {best_row.name}  (epoch {best_row.best_epoch}; oracle "
              f"{best_row.val_iou_true_inputs:.4f})",
              f"      {_config_text(best_row)}",
              f"  {'against':<44} {'val IoU':>8} {'best is':>8}",
              f"  {'copy-last-frame, UNet masks (the baseline)':<44} {baselines['unet']:>8.4f} {against(baselines['unet']):>8}",
              f"  {'copy-last-frame, true masks':<44} {baselines['true']:>8.4f} {against(baselines['true']):>8}"]
    first_rung = settings.get("grace_period", 1)
    for row in rows:
        if row.reference:  # a ratio against one stopped at its first rung, before it learned, tells nothing
            early = row.stopped_early and row.epochs <= first_rung
            what = f"{row.reference} ({row.epochs} epoch{'s' * (row.epochs != 1)}{', stopped at the first rung' if early else ''})"
            lines.append(f"  {what:<44} {row.best_val_iou:>8.4f} {'-' if early else against(row.best_val_iou):>8}")
    run, full = sum(r.epochs for r in rows), len(rows) * max_epochs
    if scheduler != "fifo":
        lines.append(f"{SCHEDULER_NAMES[scheduler]} ran {run} of {full} trial-epochs: {1 - run / max(full, 1):.0%} saved")
    spent = sum(r.device_seconds for r in rows if math.isfinite(r.device_seconds))
    if spent:
        from search.results.durations import duration_text

        budget = settings.get("budget_s")
        lines.append(f"device time spent: {duration_text(spent)} ({spent / 3600:.3f} device-hours)"
                     + (f" of a {duration_text(budget)} budget" if budget else ""))
    return "\n".join(lines)
