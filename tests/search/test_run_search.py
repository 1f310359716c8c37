"""``python search/run_search.py --smoke-test`` end to end on real Ray, Optuna and TensorBoard files."""

import io
import json
import shutil
import re
from pathlib import Path

import numpy as np
import optuna
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from torchmetrics import JaccardIndex

from tests.conftest import RAY, files_under, read_leaderboard, run_cli, run_main
from vidseg.train.config import TrainConfig

SCRIPT = "search/run_search.py"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke search: demo data made from scratch, then 4 trials of up to 3 epochs."""
    tmp = tmp_path_factory.mktemp("smoke")
    result = run_cli(SCRIPT, "--smoke-test", "--data-dir", str(tmp / "data"), "--storage", str(tmp / "results"),
                     "--name", "smoke", "--workers=2", timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp, result


@RAY
def test_smoke_search_runs_trials_and_asha_stops_some(smoke):
    tmp, result = smoke
    experiment = tmp / "results" / "smoke"
    rows = read_leaderboard(experiment)
    assert len(rows) == 4 and all(r["status"] == "TERMINATED" for r in rows)
    epochs = [int(r["epochs"]) for r in rows]
    assert max(epochs) == 3 and min(epochs) < 3  # ASHA stopped at least one trial early
    assert sum(r["stopped_early"] == "True" for r in rows) == sum(e < 3 for e in epochs)
    assert [float(r["best_val_iou"]) for r in rows] == sorted((float(r["best_val_iou"]) for r in rows), reverse=True)
    # the paper's smallest configuration was enqueued first, so it ran
    assert any(r["reference"] == "paper-mse-2_4_4_32_1" for r in rows)
    assert f"results: {experiment}" in result.stdout and "tensorboard --logdir" in result.stdout


ABORT_SIGNS = ("Fatal Python error", "SIGABRT", "pthread_exit", "terminate called", "libc.so", "libtorch")


@RAY
def test_no_trial_process_aborts_on_the_terminal(smoke):
    """Trials that end normally leave no abort and no C++ stack frames in the search's output
    (search.run.ray_internals.joined_trainable)."""
    _, result = smoke
    output = result.stdout + result.stderr
    assert not [sign for sign in ABORT_SIGNS if sign in output], output[-3000:]


RUN_NAME = re.compile(r"^(paper-|top-)?(incep|gsta)-\d+\.\d+\.\d+\.\d+(-g\d+)?-(mse|ce|wce[\d.]+)(-skip)?-[0-9a-f]{8}$")


def _board(folder: Path) -> EventAccumulator:
    return EventAccumulator(str(folder), size_guidance={"tensors": 0, "scalars": 0}).Reload()


def _hparams(events: EventAccumulator, tag: str) -> plugin_data_pb2.HParamsPluginData:
    return plugin_data_pb2.HParamsPluginData.FromString(events.PluginTagToContent("hparams")[tag])


@RAY
def test_run_names_say_what_the_trial_is(smoke):
    """Each trial's folder, its TensorBoard run and its HParams row are named by its configuration,
    e.g. gsta-2.8.16.128-ce-skip-c7a607ca; the paper's and the top teams' points say so."""
    tmp, _ = smoke
    experiment = tmp / "results" / "smoke"
    for row in read_leaderboard(experiment):
        name = row["name"]
        assert RUN_NAME.match(name), name
        assert name.endswith("-" + row["trial_id"]) and (experiment / name / "result.json").is_file()
        assert name.split("-")[1 if name.startswith(("paper-", "top-")) else 0] == row["translator"]
        config = json.loads((experiment / name / "params.json").read_text())
        assert f"-{config['N_S']}.{config['N_T']}.{config['hid_S']}.{config['hid_T']}-" in name
        assert ("-skip-" in name) == config["last_frame_skip"]
        assert name.startswith("paper-") == row["reference"].startswith("paper-")
        assert name.startswith("top-") == row["reference"].startswith("top-")
        start = _hparams(_board(experiment / name), "_hparams_/session_start_info").session_start_info
        assert start.group_name == name  # the HParams table's row


@RAY
def test_tensorboard_reads_at_a_glance(smoke):
    """Read back with TensorBoard's own reader: one hparams config for the experiment with every
    searched dimension and no constant; grouped scalars without Ray's bookkeeping; a status; the
    baselines run; report.md as text with its picture."""
    from search.space import PROFILES, narrowed
    from vidseg.baselines import copy_last_frame
    from vidseg.data.shards import ShardSet

    tmp, _ = smoke
    experiment = tmp / "results" / "smoke"
    saved = json.loads((experiment / "search.json").read_text())
    profile = narrowed(PROFILES["smoke"], saved["settings"]["limits"])
    root = _board(experiment / "report")
    config = _hparams(root, "_hparams_/experiment").experiment
    varied = {d.name for d in profile.space if d.bounds is not None or len(d.choices) > 1}
    assert {h.name for h in config.hparam_infos} == varied
    for h in config.hparam_infos:  # described by the TrainConfig field, as --help describes the flag
        assert h.description and h.description == TrainConfig.__dataclass_fields__[h.name].metadata["help"]
    assert "N_S" not in varied  # smoke searches one N_S: a constant, so not listed
    assert {"epochs", "seed", "device"}.isdisjoint(h.name for h in config.hparam_infos)
    assert {m.display_name for m in config.metric_infos} >= {"best_val_iou", "val_iou", "oracle", "train_loss",
                                                              "val_loss", "epochs"}
    status_metric = next(m for m in config.metric_infos if m.name.tag == "trial/status")
    assert "stopped early" in status_metric.display_name
    baselines = copy_last_frame(ShardSet.open(saved["shards"]))
    lines = _board(experiment / "baselines")
    # a flat line across the chart, over the search's 3 epochs
    assert [e.value for e in lines.Scalars("val/iou")] == pytest.approx([baselines["unet"]] * 3)
    assert [e.value for e in lines.Scalars("val/iou_true_inputs")] == pytest.approx([baselines["true"]] * 3)
    codes = {"True": 2, "False": 1}
    for row in read_leaderboard(experiment):
        events = _board(experiment / row["name"])
        tags = events.Tags()["scalars"]
        assert tags and all(t.split("/")[0] in ("val", "loss", "opt", "perf", "cost", "trial") for t in tags), tags
        values = [e.value for e in events.Scalars("val/iou")]
        spent = [e.value for e in events.Scalars("cost/device_seconds")]  # what it held so far, growing
        assert len(spent) == int(row["epochs"]) and spent == sorted(spent) and spent[0] > 0
        assert spent[-1] == pytest.approx(float(row["device_s"]), rel=1e-4)
        assert events.Scalars("cost/macs")[-1].value == pytest.approx(float(row["macs"]), rel=1e-6)
        assert len(values) == int(row["epochs"])
        history = [json.loads(line) for line in (experiment / row["name"] / "result.json").read_text().splitlines()]
        assert [e.value for e in events.Scalars("val/soft_iou")] == pytest.approx(  # the tie score, as reported
            [r["val_soft_iou"] for r in history if "val_soft_iou" in r], abs=1e-6)
        for decode in ("plain", "known"):  # each epoch's val IoU under both decodings, the trial's own as val/iou
            assert [e.value for e in events.Scalars(f"val/iou_{decode}")] == pytest.approx(
                [r[f"val_iou_{decode}"] for r in history if "val_iou" in r], abs=1e-6)
        assert [e.value for e in events.Scalars("val/iou_plain")] == pytest.approx(values, abs=1e-6)  # smoke: plain
        assert max(values) == pytest.approx(float(row["best_val_iou"]), abs=1e-4)
        assert events.Scalars("val/best_iou")[-1].value == pytest.approx(float(row["best_val_iou"]), abs=1e-4)
        assert [e.value for e in events.Scalars("val/best_iou")] == sorted(e.value for e in events.Scalars("val/best_iou"))
        assert events.Scalars("trial/epochs")[-1].value == int(row["epochs"])
        assert events.Scalars("trial/status")[-1].value == codes[row["stopped_early"]]
        start = _hparams(events, "_hparams_/session_start_info").session_start_info
        assert set(start.hparams) <= varied and start.hparams["loss"].string_value == row["loss"]
        assert start.hparams["hid_T"].number_value == int(row["hid_T"])
        assert _hparams(events, "_hparams_/session_end_info").session_end_info.status == 1  # STATUS_SUCCESS
    report = (experiment / "report.md").read_text()
    assert "![best val IoU found against trial-epochs spent](best_vs_trial_epochs.png)" in report
    picture = Image.open(experiment / "best_vs_trial_epochs.png")
    assert picture.size[0] >= 600
    text = root.Tensors("report/text_summary")[0].tensor_proto.string_val[0].decode()
    assert text == report
    assert "report/best_vs_trial_epochs" in root.Tags()["tensors"]


def _image(events: EventAccumulator, tag: str) -> tuple[np.ndarray, str]:
    [event] = events.Tensors(tag)
    assert events.SummaryMetadata(tag).plugin_data.plugin_name == "images"
    width, height, png = event.tensor_proto.string_val
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert image.shape[:2] == (int(height), int(width))
    return image, events.SummaryMetadata(tag).summary_description


@RAY
def test_prediction_images_are_enlarged_titled_and_show_errors(smoke):
    """The best trials' images: 2 val videos at 40x60, enlarged 4x (nearest) to 160x240 tiles under
    column titles, an error column, the video ids and each row's IoU in the description; and a
    class legend in the experiment's report run."""
    from search.results.board import ERROR_COLORS

    tmp, _ = smoke
    experiment = tmp / "results" / "smoke"
    rows = read_leaderboard(experiment)
    image, description = _image(_board(experiment / rows[0]["name"]), "predictions/val_frame22")
    assert image.shape == (28 + 2 * (160 + 4), 120 + 4 * 240 + 3 * 4, 3)
    tile = image[28:28 + 160, 120 + 240 + 4:120 + 2 * 240 + 4]  # the first row's prediction
    assert (tile[::4, ::4].repeat(4, 0).repeat(4, 1) == tile).all()  # nearest: 4x4 blocks
    assert (image[:28] < 100).any()  # the column titles are drawn
    errors = image[28:28 + 160, 120 + 3 * (240 + 4):]
    allowed = {tuple(c) for c in ERROR_COLORS.values()}
    assert {tuple(c) for c in errors.reshape(-1, 3)} <= allowed
    shards = json.loads((experiment / "search.json").read_text())["shards"]
    from vidseg.data.shards import ShardSet

    ids = ShardSet.open(shards).split("val").video_ids
    from vidseg.task import TARGET

    assert all(f"video {int(v):05d} ({TARGET} IoU " in description for v in ids[:2])
    legend, text = _image(_board(experiment / "report"), "predictions/legend")
    assert legend.shape[0] > 100 and "error" in text


@RAY
def test_the_terminal_shows_a_progress_table_and_a_summary(smoke):
    tmp, result = smoke
    rows = read_leaderboard(tmp / "results" / "smoke")
    out = result.stdout
    assert out.count("search best") >= 1 and "Configuration for experiment" not in out.split("search best")[1]
    assert "Trial " not in out and "│ Trial" not in out  # no configuration box at every trial start
    assert "val IoU    soft   plain   known" in out
    for row in rows:
        lines = [line for line in out.splitlines() if line.startswith(row["name"])]
        assert len(lines) == int(row["epochs"])
        history = [json.loads(line) for line in (tmp / "results" / "smoke" / row["name"] / "result.json").read_text().splitlines()]
        # each row: the epoch's val IoU, soft score, plain and known val IoU, as the trial reported them
        shown = [[float(v) for v in line.split()[4:8]] for line in lines]
        assert shown == [pytest.approx([r["val_iou"], r["val_soft_iou"], r["val_iou_plain"], r["val_iou_known"]], abs=6e-5)
                         for r in history if "val_iou" in r]
        ended = "stopped early by ASHA" if row["stopped_early"] == "True" else "completed 3 epochs"
        assert f"  {row['name']}: {ended}" in out
    assert "copy-last-frame, UNet masks (the baseline)" in out and "paper-mse-2_4_4_32_1" in out
    run = sum(int(r["epochs"]) for r in rows)
    assert f"ASHA ran {run} of {4 * 3} trial-epochs" in out


@RAY
def test_the_stored_study_tells_optuna_what_happened(smoke):
    """The journal beside the results loads with optuna.load_study, under the experiment's name:
    a trial ASHA stopped is PRUNED with its per-epoch values, a completed one is valued at its
    leaderboard best (not its last epoch), and each carries its Ray trial id."""
    tmp, result = smoke
    experiment = tmp / "results" / "smoke"
    storage = JournalStorage(JournalFileBackend(str(experiment / "optuna.journal")))
    study = optuna.load_study(study_name="smoke", storage=storage)
    rows = {r["trial_id"]: r for r in read_leaderboard(experiment)}
    trials = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert sorted(trials) == sorted(rows)
    for trial_id, row in rows.items():
        trial = trials[trial_id]
        epochs = [json.loads(line) for line in (experiment / rows[trial_id]["name"] / "result.json").read_text().splitlines()]
        assert trial.intermediate_values == pytest.approx({e["epoch"]: e["val_iou"] for e in epochs})
        if row["stopped_early"] == "True":
            assert trial.state == TrialState.PRUNED
        else:
            assert trial.state == TrialState.COMPLETE and int(row["epochs"]) == 3
            assert trial.value == pytest.approx(float(row["best_val_iou"]), abs=1e-4)
            assert trial.value == max(trial.intermediate_values.values())
    assert any(t.state == TrialState.PRUNED for t in study.trials)
    # who proposed each: the references are enqueued, the rest TPE's random start-up (4 trials, 2 at once)
    for trial in study.trials:
        assert trial.user_attrs["proposed_by"] == ("reference" if rows[trial.user_attrs["ray_trial_id"]]["reference"]
                                                   else "random")
    assert f"optuna-dashboard {experiment / 'optuna.journal'}" in result.stdout
    report = (experiment / "report.md").read_text()  # 4 finished trials: importances from the stored study
    assert "From the stored study" in report and "| Parameter | Importance |" in report


@RAY
def test_every_search_writes_its_learning_curves(smoke):
    tmp, _ = smoke
    experiment = tmp / "results" / "smoke"
    table = pq.read_table(experiment / "curves.parquet").to_pylist()
    rows = read_leaderboard(experiment)
    assert len(table) == sum(int(r["epochs"]) for r in rows)
    for row in rows:
        curve = sorted((r["epoch"], r["val_iou"]) for r in table if r["trial_id"] == row["trial_id"])
        assert [e for e, _ in curve] == list(range(1, int(row["epochs"]) + 1))
        assert max(v for _, v in curve) == pytest.approx(float(row["best_val_iou"]), abs=1e-4)
        assert json.loads(next(r["config"] for r in table if r["trial_id"] == row["trial_id"]))["loss"] == row["loss"]


@RAY
def test_the_curves_of_a_finished_search_can_be_rewritten_from_its_trial_folders(smoke, tmp_path, capsys):
    from search.curves import main

    tmp, _ = smoke
    copy = tmp_path / "moved"
    shutil.copytree(tmp / "results" / "smoke", copy)
    (copy / "curves.parquet").unlink()
    result = run_main(main, str(copy), capsys=capsys)
    assert result.returncode == 0, result.stderr[-2000:]
    written, original = (pq.read_table(d / "curves.parquet").sort_by([("trial_id", "ascending"), ("epoch", "ascending")])
                         for d in (copy, tmp / "results" / "smoke"))
    assert written.num_rows > 0 and written.equals(original)
    floors = [json.loads(pq.read_schema(d / "curves.parquet").metadata[b"vidseg.settings"])["baselines"]["unet"]
              for d in (copy, tmp / "results" / "smoke")]
    assert 0 < floors[0] == floors[1]  # copy-last-frame, a replay's floor, in both
    # in a process of its own: a folder with no search is one line, exit 2, no traceback
    refused = run_cli("-m", "search.curves", str(tmp_path))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[0].startswith(f"error: {tmp_path}")
    assert len(refused.stderr.strip().splitlines()) == 1


@RAY
def test_best_config_report_and_submission(smoke):
    tmp, _ = smoke
    experiment = tmp / "results" / "smoke"
    best = json.loads((experiment / "best_config.json").read_text())
    config = TrainConfig.from_dict(best["config"])  # a valid config, refused otherwise
    top = read_leaderboard(experiment)[0]
    assert best["trial_id"] == top["trial_id"] and config.loss == top["loss"] and config.hid_S == int(top["hid_S"])
    assert best["val_iou"] == pytest.approx(float(top["best_val_iou"]), abs=1e-4)
    state = torch.load(experiment / best["checkpoint"])
    assert state["epoch"] == best["epoch"] == int(top["best_epoch"])
    report = (experiment / "report.md").read_text()
    for part in ("Copy last frame", "paper-mse-2_4_4_32_1", "Early stopping's savings (ASHA)", "importances", "submission.pt"):
        assert part in report
    submission = torch.load(experiment / "submission.pt")
    assert submission.dtype == torch.uint8 and tuple(submission.shape) == (2, 160, 240)
    answers = np.load(tmp / "data" / "smoke" / "seed0-4t-2v-2u-2h" / "hidden_answers.npy")
    assert submission.shape == answers.shape
    # the answers travelled with the shards, and the driver scored the submission against them
    expected = JaccardIndex(task="multiclass", num_classes=49)(submission.long(), torch.from_numpy(answers).long())
    assert f"Score against the known answers (the shard set's answers): **{float(expected):.4f}** IoU" in report


@RAY
def test_rerun_refuses_an_existing_name(smoke, capsys):
    from search.run_search import main

    tmp, _ = smoke
    args = ["--smoke-test", "--data-dir", str(tmp / "data"), "--storage", str(tmp / "results")]
    before = files_under(tmp / "results" / "smoke")
    again = run_main(main, *args, "--name", "smoke", capsys=capsys)
    assert again.returncode == 2
    assert again.stderr.strip() == (f"error: {tmp / 'results' / 'smoke'} already exists: pass --resume to "
                                    "continue it, or another --name")
    assert files_under(tmp / "results" / "smoke") == before


@RAY
def test_prepare_only_reuses_the_cached_data_and_runs_no_search(smoke):
    tmp, _ = smoke
    storage = tmp / "prepare-only"
    result = run_cli(SCRIPT, "--smoke-test", "--prepare-only", "--data-dir", str(tmp / "data"), "--storage", str(storage))
    assert result.returncode == 0, result.stderr[-2000:]
    shards = tmp / "data" / "smoke" / "seed0-4t-2v-2u-2h-shards-40x60"
    assert f"shards ready: {shards.resolve()}" in result.stdout
    assert "UNet already trained" in result.stderr and "reusing" in result.stderr
    assert "Ray:" not in result.stderr and "Token authentication" not in result.stderr  # all cached: no Ray started
    assert not storage.exists()


BAD_INPUT = [
    (["--data", "{tmp}/missing"], "error: {tmp}/missing: no such dataset folder"),
    (["--shards", "{tmp}"], "error: {tmp}/manifest.json: "),
    (["--num-samples", "0"], "error: --num-samples is 0, but must be >= 1"),
    (["--reduction-factor", "1"], "error: --reduction-factor is 1, but must be >= 2"),
    (["--max-epochs", "2", "--grace-period", "3"], "error: --grace-period 3 is more than --max-epochs 2"),
    (["--address", "127.0.0.1:9"], "error: --address 127.0.0.1:9: no Ray cluster answers there"),
    (["--resume"], "error: {tmp}/results: no search to resume here"),
    (["--gpu-memory-gb", "0"], "error: --gpu-memory-gb is 0.0, but must be > 0"),
    (["--retry-errored"], "error: --retry-errored retries the errored trials of a saved search: give it with --resume"),
    (["--hidden-answers", "{tmp}/answers.npy"], "error: {tmp}/answers.npy: not readable as hidden answers"),
    (["--storage", "{tmp}/results", "--seed", "-1"], "error: --seed is -1, but must be >= 0"),
    (["--simulate", "{tmp}/missing.parquet"], "error: --simulate {tmp}/missing.parquet: no such learning-curve table"),
    (["--time-scale", "60"], "error: --time-scale scales simulated trials: give it with --simulate"),
    (["--simulate", "--time-scale", "0"], "error: --time-scale is 0.0, but must be > 0"),
    (["--simulate", "--shards", "{tmp}"], "error: --simulate trains nothing: give it without --data or --shards"),
]


@pytest.mark.parametrize("args, message", BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    from search.run_search import main

    (tmp_path / "given").mkdir()  # what the user had before the command
    (tmp_path / "given" / "notes.txt").write_text("kept")
    before = files_under(tmp_path)
    args = [a.format(tmp=tmp_path) for a in args]
    result = run_main(main, "--data-dir", str(tmp_path / "data"), "--storage", str(tmp_path / "results"), *args,
                      capsys=capsys)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.format(tmp=tmp_path)), result.stderr
    assert files_under(tmp_path) == before  # no file written (the storage probe may leave its empty folder)
    assert not (tmp_path / "data").exists() and not list((tmp_path / "results").glob("*"))


@RAY
def test_with_no_gpu_up_the_estimate_of_a_gpu_search_trains_nothing_on_cpus(tiny_shards, tmp_path):
    """``--gpu-memory-gb`` on a cluster with no GPU up yet (an autoscaling one): the estimate of the
    ``full`` profile, a GPU profile, is the cost model's, said in one line; nothing is probed."""
    result = run_cli(SCRIPT, "--profile", "full", "--shards", str(tiny_shards), "--gpu-memory-gb", "22",
                     "--estimate-only", "--num-samples", "8", "--storage", str(tmp_path / "results"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no GPU is up in the cluster to probe on" in result.stderr and "nothing is trained on CPUs" in result.stderr
    assert "probed " not in result.stderr and "estimate (assumed: an H100" in result.stderr


def test_bad_input_in_a_real_process_is_one_line_exit_2_and_no_traceback(tmp_path):
    result = run_cli(SCRIPT, "--data-dir", str(tmp_path / "data"), "--storage", str(tmp_path / "results"),
                     "--data", str(tmp_path / "missing"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing'}: no such dataset folder"]


def test_help_explains_what_it_does_and_how_it_exits(capsys):
    from search.run_search import main

    result = run_main(main, "--help", capsys=capsys)
    assert result.returncode == 0
    # the module's text, not only argparse's flag list: how to run it, what it writes, its exit codes
    for part in ("python search/run_search.py --resume", "tensorboard --logdir results", "leaderboard.csv",
                 "Exit codes: 0 a trial completed", "130 Ctrl-C"):
        assert part in " ".join(result.stdout.split()), part


def test_a_search_folder_of_an_older_format_is_refused_in_one_line(tmp_path, capsys):
    """A folder an earlier version saved (``search.json`` without a format; Ray Tune's pickles name
    ``search.tuner.TrialNamer``, a module that has since moved) is refused before Ray starts."""
    from search.run.settings import Settings
    from search.run_search import main

    folder = tmp_path / "results" / "old"
    folder.mkdir(parents=True)
    settings = Settings.defaults() | {"profile": "smoke", "num_samples": 4, "max_epochs": 3, "grace_period": 1,
                                      "reduction_factor": 2, "max_concurrent": 2}
    (folder / "search.json").write_text(json.dumps({"settings": settings, "shards": str(tmp_path / "shards")}))
    (folder / "tuner.pkl").write_bytes(b"\x80\x04\x95\x1c\x00\x00\x00\x00\x00\x00\x00\x8c\x0csearch.tuner\x94\x8c"
                                       b"\nTrialNamer\x94\x93\x94.")
    result = run_main(main, "--resume", "--storage", str(tmp_path / "results"), "--name", "old", capsys=capsys)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {folder}: saved by an earlier vidseg-search (search format 1; this version resumes format 2): its "
        "Ray Tune state cannot be restored here, so start a new search with another --name (the results it has "
        "written stay readable)")
    assert "Traceback" not in result.stderr


@RAY
def test_the_report_prices_every_trial_and_draws_the_fronts_and_the_anytime_curve(smoke):
    """Every trial's cost in the leaderboard; report.md's fronts (checked against their definition on
    the leaderboard), its two cheapest near-best configurations, the anytime curve as a picture and in
    TensorBoard; and the estimate said before the first trial and saved with the search."""
    tmp, result = smoke
    experiment = tmp / "results" / "smoke"
    rows = read_leaderboard(experiment)
    for row in rows:
        held, train, val = float(row["device_s"]), float(row["train_device_s"]), float(row["val_device_s"])
        assert 0 < train + val < held  # the set-up, checkpoints and reports are held too
        assert float(row["params"]) > 0 and float(row["macs"]) > float(row["params"]) and float(row["ms_per_clip"]) > 0
    report = (experiment / "report.md").read_text()
    cost = report[report.index("## Cost"):report.index("## Optuna")]
    spent = sum(float(r["device_s"]) for r in rows)
    assert f"({spent / 3600:.3f} device-hours" in cost

    def table(title: str) -> list[str]:
        part = cost[cost.index(title):]
        lines = [line for line in part.split("\n\n", 3)[2].splitlines() if line.startswith("| `")]
        return [line.split("`")[1] for line in lines]

    def is_front(names: list[str], key: str) -> None:
        """The front's definition, not its algorithm (tests/search/results/test_cost.py has a hand-built
        case): each trial on it is beaten by none on both val IoU and cost, each one off it by one on
        it, and it lists them cheapest first."""
        val, cost = (lambda r: float(r["best_val_iou"])), (lambda r: float(r[key]))
        on = [next(r for r in rows if r["name"] == name) for name in names]

        def beats(a, b) -> bool:
            return val(a) >= val(b) and cost(a) <= cost(b) and (val(a), cost(a)) != (val(b), cost(b))
        assert on and all(not beats(other, r) for r in on for other in rows)
        assert all(any(beats(r, other) or (val(r), cost(r)) == (val(other), cost(other)) for r in on)
                   for other in rows if other["name"] not in names)
        assert [cost(r) for r in on] == sorted(cost(r) for r in on)

    is_front(table("### Front: val IoU against training device time"), "train_device_s")
    is_front(table("### Front: val IoU against multiply-adds for one clip"), "macs")
    top = max(float(r["best_val_iou"]) for r in rows)
    near = {}
    for line in cost[cost.index("### The cheapest near-best"):cost.index("### Front")].splitlines():
        if line.startswith("| 1% ") or line.startswith("| 5% "):
            near[line[2:4]] = line.split("`")[1]
    for share, label in ((0.01, "1%"), (0.05, "5%")):
        within = [r for r in rows if float(r["best_val_iou"]) >= top - share * top]
        assert near[label] == min(within, key=lambda r: float(r["train_device_s"]))["name"]
    for picture in ("front.png", "anytime.png"):
        assert f"]({picture})" in cost and Image.open(experiment / picture).size[0] >= 600
    curve = _board(experiment / "report").Scalars("search/best_val_iou_by_device_seconds")
    assert [e.value for e in curve] == sorted(e.value for e in curve)  # the best so far never falls
    assert curve[-1].value == pytest.approx(top, abs=1e-4)
    assert abs(curve[-1].step - spent) <= 1  # its steps are the device seconds spent
    assert "estimate (probed on this machine's CPU" in result.stderr
    assert "4 trials with the scheduler:" in result.stderr
    estimate = json.loads((experiment / "search.json").read_text())["estimate"]
    assert 0 < estimate["cheapest_epoch_s"] < estimate["trial_s"] and estimate["expected_s"] <= estimate["full_s"]
    assert "Estimated before the first trial: " in cost
