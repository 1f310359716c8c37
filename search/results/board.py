"""TensorBoard for a search, made to be read at a glance.

Ray Tune's own TensorBoard logger is replaced (``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS``, with its CSV
and JSON loggers kept, which the results are read from) by ``TrialBoard``, a driver callback:

- **run names** say what a trial is (``run_name``): ``gsta-2.8.16.128-ce-skip-c7a607ca`` is gSTA,
  N_S 2, N_T 8, hid_S 16, hid_T 128, cross-entropy, with the last-frame skip, trial c7a607ca; the
  paper's and the top teams' configurations start with ``paper-`` and ``top-``. The trial's folder
  carries the same name, and so does its row in the HParams table;
- **scalars** in groups, without Ray's bookkeeping: ``val/`` (``iou``, ``best_iou``,
  ``iou_true_inputs``: the oracle, ``soft_iou``: the scheduler's tie score), ``loss/`` (``train``, ``val``), ``opt/lr``, ``perf/`` (epoch
  seconds, samples/s, data share, GPU busy share, peak memory), ``cost/`` (device seconds held,
  of them training and validation; the model's parameters, multiply-adds and ms for one clip) and
  ``trial/`` (``epochs``, ``status``);
- **one hparams config for the experiment** (``experiment_config``), in the experiment's ``report``
  run: every dimension the search varies (none that is constant), and the metrics
  best_val_iou, val_iou, the oracle, the losses, epochs and status (``STATUS``: 1 completed,
  2 stopped early, 3 diverged, 4 failed), and the costs. Each trial's folder starts a session with its values;
- **a ``baselines`` run**: copy-last-frame on the UNet's and on the true masks, as flat lines on
  ``val/iou`` and ``val/iou_true_inputs`` beside the trials;
- after the search, the ``report`` run gets the anytime curve (best val IoU so far, its step the
  device seconds spent: ``ANYTIME_TAG``), and ``search.results.report`` adds the prediction images (in each of the best trials' runs),
  and the class legend, ``report.md`` as text and its picture (in the ``report`` run).
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.logger import LoggerCallback

from search.results.outcome import Outcome, classify
from search.space.dimensions import GROUPED
from vidseg.task import LAST_INPUT, TARGET

__all__ = ["run_name", "TrialBoard", "experiment_config", "write_experiment", "write_baselines", "write_board", "write_report",
           "write_anytime", "ANYTIME_TAG", "image_summary",
           "prediction_image", "legend_image", "trial_status", "STATUS", "SCALARS", "BASELINES_RUN", "REPORT_RUN"]


BASELINES_RUN = "baselines"
REPORT_RUN = "report"  # the experiment's own run: hparams config, report.md, its picture, the legend
STATUS = {"running": 0, **{outcome.value: outcome.code for outcome in Outcome}}
STATUS_TEXT = "status (" + ", ".join(f"{outcome.code} {outcome.value}" for outcome in Outcome) + ")"
SCALARS = {  # a trial's report key -> its tag
    "val_iou": "val/iou", "val_iou_true_inputs": "val/iou_true_inputs", "val_soft_iou": "val/soft_iou",
    # the same epoch's val IoU under each decoding (vidseg.train.decoding): what known-objects decoding gains
    "val_iou_plain": "val/iou_plain", "val_iou_known": "val/iou_known", "val_iou_known_regions": "val/iou_known_regions",
    "train_loss": "loss/train", "val_loss": "loss/val", "lr": "opt/lr",
    "epoch_seconds": "perf/epoch_seconds", "samples_per_second": "perf/samples_per_second",
    "data_fraction": "perf/data_fraction", "gpu_busy_fraction": "perf/gpu_busy_fraction",
    "peak_memory_gb": "perf/peak_memory_gb", "planned_peak_gb": "perf/planned_peak_gb",  # on GPUs: measured, modelled
    # what the trial cost (vidseg.train.cost): device seconds held so far, and its model's inference cost
    "device_seconds": "cost/device_seconds", "train_device_seconds": "cost/train_device_seconds",
    "val_device_seconds": "cost/val_device_seconds", "params": "cost/params", "macs": "cost/macs",
    "ms_per_clip": "cost/ms_per_clip",
}
ANYTIME_TAG = "search/best_val_iou_by_device_seconds"  # the report run's anytime curve: step = device seconds spent
BEST_TAG, EPOCHS_TAG, STATUS_TAG = "val/best_iou", "trial/epochs", "trial/status"
METRICS = (  # the HParams table's metric columns, the first five shown: (tag, display name, description)
    (BEST_TAG, "best_val_iou", f"best val IoU of {TARGET} so far, UNet masks in (the search's objective)"),
    ("val/iou", "val_iou", f"val IoU of {TARGET} at the last epoch, UNet masks in"),
    ("val/iou_true_inputs", "oracle", "val IoU with the true masks in: what a perfect UNet would give"),
    (EPOCHS_TAG, "epochs", "epochs run"),
    (STATUS_TAG, STATUS_TEXT, "how the trial ended (search.results.outcome): 0 running, "
                              + ", ".join(f"{outcome.code} {outcome.value}" for outcome in Outcome)),
    ("loss/train", "train_loss", "training loss at the last epoch"),
    ("loss/val", "val_loss", "validation loss at the last epoch"),
    ("cost/device_seconds", "device_seconds", "device time it held: its GPU share (or CPUs) x wall seconds"),
    ("cost/train_device_seconds", "train_device_seconds", "of which training"),
    ("cost/macs", "macs", "its model's multiply-adds for one clip"),
    ("cost/params", "params", "its model's parameters"),
    ("cost/ms_per_clip", "ms_per_clip", "milliseconds to predict one clip on its device"),
)
SHOWN_HPARAMS = ("hid_S", "hid_T", "loss", "lr", "translator")  # TensorBoard shows five columns by default
LOSS_SHORT = {"mse": "mse", "ce": "ce", "weighted_ce": "wce"}


def _description(name: str) -> str:
    """A searched dimension's help text: its TrainConfig field's (vidseg.train.config), as --help shows it."""
    from vidseg.train.config import TrainConfig

    field = TrainConfig.__dataclass_fields__.get(name)
    return field.metadata.get("help", "") if field is not None else ""


def _number(value: float) -> str:
    return f"{value:.3g}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def run_name(config: dict[str, Any], trial_id: str, reference: str = "") -> str:
    """What the trial is, in a folder name: translator-N_S.N_T.hid_S.hid_T[-gG]-loss[W][-skip]-ID, with
    ``paper-`` or ``top-`` in front of a reference configuration."""
    parts = [] if not reference else ["top" if reference.startswith("top") else "paper"]
    translator = config.get("translator", "incep")
    parts.append(f"{translator}-{config.get('N_S')}.{config.get('N_T')}.{config.get('hid_S')}.{config.get('hid_T')}")
    if translator in GROUPED and config.get("groups") is not None:
        parts.append(f"g{config['groups']}")
    loss = config.get("loss", "")
    parts.append(LOSS_SHORT.get(loss, str(loss)) + (_number(float(config["last_frame_weight"]))
                                                    if loss == "weighted_ce" and "last_frame_weight" in config else ""))
    if config.get("last_frame_skip"):
        parts.append("skip")
    parts.append(trial_id)
    return "-".join(str(p) for p in parts)


def trial_status(last_result: dict[str, Any] | None, max_epochs: int, failed: bool) -> str:
    """How a finished trial ended, in words (``search.results.outcome.classify``)."""
    return classify(last_result, max_epochs, failed).value


# ----------------------------------------------------------------------------------------------
# writing summaries


def _writer(folder: Path | str, suffix: str = ""):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(folder), filename_suffix=suffix)


def _add(writer, summary, step: int | None = None) -> None:
    writer.file_writer.add_summary(summary, step)  # a new writer's (it is made at once)


def _varied(profile) -> list:
    """The profile's dimensions that take more than one value: the searched ones."""
    return [dim for dim in profile.space if dim.bounds is not None or len(dim.choices) > 1]


def experiment_config(profile):
    """The HParams plugin's experiment summary: every varied dimension of ``profile``, and METRICS."""
    from tensorboard.plugins.hparams import plugin_data_pb2, summary_v2 as hp

    hparams = []
    for dim in _varied(profile):
        domain = hp.RealInterval(float(dim.bounds[0]), float(dim.bounds[1])) if dim.bounds is not None else \
            hp.Discrete([v if isinstance(v, (bool, str)) else float(v) for v in dim.choices])
        hparams.append(hp.HParam(dim.name, domain))
    metrics = [hp.Metric(tag, display_name=name, description=text) for tag, name, text in METRICS]
    summary = hp.hparams_config_pb(hparams, metrics, time_created_secs=time.time())
    # TensorBoard lists the hparams that "differ" first, by name, and shows the first five: these
    value = summary.value[0]
    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in SHOWN_HPARAMS
        info.description = _description(info.name)
    value.metadata.plugin_data.content = data.SerializeToString()
    return summary


def _session_start(config: dict[str, Any], profile, group: str):
    from tensorboard.plugins.hparams import summary_v2 as hp

    values = {}
    for dim in _varied(profile):
        if dim.name in config and dim.active(config):
            value = config[dim.name]
            values[dim.name] = value if isinstance(value, (bool, str)) else float(value)
    return hp.hparams_pb(values, trial_id=group, start_time_secs=time.time())


def _session_end(status: str):
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    info = plugin_data_pb2.SessionEndInfo(
        status=api_pb2.STATUS_FAILURE if Outcome(status).failed else api_pb2.STATUS_SUCCESS,
        end_time_secs=time.time())
    meta = metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(session_end_info=info))
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=meta,
                                                                tensor=metadata.NULL_TENSOR)])


def write_experiment(folder: Path | str, profile) -> None:
    """The experiment's hparams config, in its ``report`` run."""
    writer = _writer(Path(folder) / REPORT_RUN, ".hparams")
    _add(writer, experiment_config(profile))
    writer.close()


def write_baselines(folder: Path | str, baselines: dict[str, float], max_epochs: int) -> None:
    """The ``baselines`` run: copy-last-frame as flat lines on the trials' val charts."""
    writer = _writer(Path(folder) / BASELINES_RUN, ".baselines")
    for step in range(1, max(max_epochs, 2) + 1):
        writer.add_scalar("val/iou", baselines["unet"], step)
        writer.add_scalar(BEST_TAG, baselines["unet"], step)
        writer.add_scalar("val/iou_true_inputs", baselines["true"], step)
    writer.add_text("baselines", f"Copy-last-frame ({LAST_INPUT}'s mask taken as {TARGET}'s): {baselines['unet']:.4f} "
                                 f"on the UNet's masks (`val/iou`, `val/best_iou`), {baselines['true']:.4f} on the true "
                                 "masks (`val/iou_true_inputs`).")
    writer.close()


def write_board(folder: Path | str, profile, baselines: dict[str, float], max_epochs: int) -> None:
    """The experiment's own TensorBoard runs: its hparams config and the ``baselines`` run
    (copy-last-frame on the shard set's val split)."""
    if not list((Path(folder) / REPORT_RUN).glob("*.hparams")):  # a resumed search has them already
        write_experiment(folder, profile)
        write_baselines(folder, baselines, max_epochs)


def image_summary(tag: str, image: np.ndarray, description: str = ""):
    """An image summary of (H, W, 3) uint8, PNG-encoded, in the image plugin's tensor form (as
    ``tf.summary.image`` writes it), with a markdown description."""
    from PIL import Image
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.image import metadata
    from tensorboard.util import tensor_util

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    tensor = tensor_util.make_tensor_proto([str(image.shape[1]).encode(), str(image.shape[0]).encode(),
                                            buffer.getvalue()])
    meta = metadata.create_summary_metadata(display_name=tag, description=description)
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, metadata=meta, tensor=tensor)])


def write_images(folder: Path | str, tag: str, image: np.ndarray, description: str, step: int, suffix: str) -> None:
    writer = _writer(folder, suffix)
    _add(writer, image_summary(tag, image, description), step)
    writer.close()


def write_report(folder: Path | str, report: str, picture: Path | None = None) -> None:
    """``report.md`` as text, and its picture, in the experiment's ``report`` run."""
    writer = _writer(Path(folder) / REPORT_RUN, ".report")
    writer.add_text("report", report)
    if picture is not None and picture.is_file():
        from PIL import Image

        _add(writer, image_summary("report/best_vs_trial_epochs", np.asarray(Image.open(picture).convert("RGB")),
                                   "Best val IoU found against trial-epochs spent, with the baselines and the "
                                   "reference configurations."))
    writer.close()


def write_anytime(folder: Path | str, curve: list[tuple[float, float]]) -> None:
    """The search's anytime curve in its ``report`` run: the best val IoU found so far (``ANYTIME_TAG``)
    at each step of device seconds spent (``search.results.cost.anytime_curve``)."""
    writer = _writer(Path(folder) / REPORT_RUN, ".anytime")
    for spent, best in curve:
        writer.add_scalar(ANYTIME_TAG, best, int(round(spent)))
    writer.close()


# ----------------------------------------------------------------------------------------------
# the callback


class TrialBoard(LoggerCallback):
    """A driver callback writing each trial's TensorBoard run into its folder: its hparams session
    (the ``profile``'s varied dimensions), its scalars every epoch, and how it ended."""

    def __init__(self, profile, max_epochs: int) -> None:
        self.profile, self.max_epochs = profile, max_epochs
        self._writers: dict[Any, Any] = {}
        self._best: dict[Any, float] = {}

    def _open(self, trial):
        if trial not in self._writers:
            trial.init_local_path()
            writer = _writer(trial.local_path, ".trial")
            _add(writer, _session_start(trial.config, self.profile, Path(trial.local_path).name))
            self._writers[trial] = writer
        return self._writers[trial]

    def log_trial_start(self, trial) -> None:
        self._open(trial)

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        writer = self._open(trial)
        step = int(result.get("epoch", iteration) or 0)
        for key, tag in SCALARS.items():
            value = result.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                writer.add_scalar(tag, value, step)
        value = result.get("val_iou")
        if isinstance(value, (int, float)) and math.isfinite(value):
            self._best[trial] = max(self._best.get(trial, value), value)
        if trial in self._best:
            writer.add_scalar(BEST_TAG, self._best[trial], step)
        writer.add_scalar(EPOCHS_TAG, step, step)
        writer.add_scalar(STATUS_TAG, STATUS["running"], step)
        writer.flush()

    def log_trial_end(self, trial, failed: bool = False) -> None:
        writer = self._open(trial)
        status = trial_status(trial.last_result, int(trial.config.get("epochs", self.max_epochs)), failed)
        step = int((trial.last_result or {}).get("epoch", 0) or 0)
        writer.add_scalar(STATUS_TAG, STATUS[status], step)
        _add(writer, _session_end(status), step)
        writer.close()
        self._writers.pop(trial, None)

    def on_experiment_end(self, trials, **info) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


# ----------------------------------------------------------------------------------------------
# pictures


ERROR_COLORS = {  # the error column: what each pixel of a prediction did
    "correct object": (235, 235, 235), "correct background": (0, 0, 0), "missed (object predicted as background)":
    (255, 150, 0), "extra (background predicted as object)": (0, 190, 255), "wrong class": (255, 30, 30),
}


def error_map(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: correct pixels white (objects) or black (background); missed, extra and
    wrong-class pixels in ``ERROR_COLORS``."""
    colors = list(ERROR_COLORS.values())
    out = np.zeros((*pred.shape, 3), np.uint8)
    out[(pred == truth) & (truth > 0)] = colors[0]
    out[(truth > 0) & (pred == 0)] = colors[2]
    out[(truth == 0) & (pred > 0)] = colors[3]
    out[(truth > 0) & (pred > 0) & (pred != truth)] = colors[4]
    return out


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def prediction_image(unet_last: np.ndarray, pred: np.ndarray, truth: np.ndarray, scale: int | None = None,
                     row_labels: list[str] | None = None) -> np.ndarray:
    """(H, W, 3) uint8: a row per video, enlarged by ``scale`` (nearest; by default to >= 160 pixels
    high), under column titles: UNet's last input frame | predicted target frame | true target frame | errors."""
    from PIL import Image, ImageDraw

    from vidseg.data.classes import colorize

    h, w = pred.shape[1:]
    scale = scale or max(1, math.ceil(160 / h))
    gap, title, label_w = 4, 28, 0 if not row_labels else 120
    tiles = [[colorize(a), colorize(b), colorize(c), error_map(b, c)] for a, b, c in zip(unet_last, pred, truth)]
    th, tw = h * scale, w * scale
    width = label_w + 4 * tw + 3 * gap
    canvas = np.full((title + len(tiles) * (th + gap), width, 3), 255, np.uint8)
    for r, row in enumerate(tiles):
        top = title + r * (th + gap)
        for c, tile in enumerate(row):
            left = label_w + c * (tw + gap)
            canvas[top:top + th, left:left + tw] = tile.repeat(scale, 0).repeat(scale, 1)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    font = _font(16)
    for c, text in enumerate((f"UNet {LAST_INPUT} (input)", f"predicted {TARGET}", f"true {TARGET}", "errors")):
        draw.text((label_w + c * (tw + gap) + 4, 5), text, fill=(0, 0, 0), font=font)
    for r, text in enumerate(row_labels or []):
        draw.multiline_text((4, title + r * (th + gap) + 4), text, fill=(0, 0, 0), font=_font(14), spacing=4)
    return np.asarray(image)


def legend_image(classes: list[int]) -> np.ndarray:
    """(H, W, 3) uint8: a swatch and name for each class in ``classes``, then the error colours."""
    from PIL import Image, ImageDraw

    from vidseg.data.classes import PALETTE, class_name

    entries = [(tuple(int(v) for v in PALETTE[c]), f"{c}: {class_name(c)}") for c in classes]
    entries += [((255, 255, 255), "")] + [(color, f"errors: {name}") for name, color in ERROR_COLORS.items()]
    row, columns, column = 22, 2, 400  # pixels: a line's height, columns, a column's width
    rows = math.ceil(len(entries) / columns)
    image = Image.new("RGB", (columns * column, rows * row + 8), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = _font(14)
    for i, (color, text) in enumerate(entries):
        x, y = (i // rows) * column + 6, (i % rows) * row + 4
        if text:
            draw.rectangle((x, y, x + 16, y + 16), fill=color, outline=(128, 128, 128))
            draw.text((x + 24, y), text, fill=(0, 0, 0), font=font)
    return np.asarray(image)
