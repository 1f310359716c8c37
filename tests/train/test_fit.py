"""One trial: it learns, reports what ASHA needs, resumes exactly, and fails loudly on NaN."""

import math

import pytest
import torch

from tests.conftest import SHARD_SIZE, run_cli
from vidseg.baselines import copy_last_frame
from vidseg.data.shards import ShardSet
from vidseg.train import TrainConfig, TrialDiverged, build_model, fit

TINY = dict(N_S=2, N_T=2, hid_S=8, hid_T=16, groups=2, batch_size=4, device="cpu")
METRICS = {"epoch", "val_iou", "val_iou_true_inputs", "train_loss", "val_loss", "lr", "epoch_seconds",
           "samples_per_second", "data_fraction"}


@pytest.mark.parametrize("loss", ["mse", "ce", "weighted_ce"])
@pytest.mark.parametrize("translator", ["incep", "gsta"])
def test_one_epoch_reports_every_metric(tiny_shards, loss, translator):
    reports = []
    config = TrainConfig(loss=loss, translator=translator, epochs=1, **TINY)
    result = fit(config, tiny_shards, reports.append)
    assert len(reports) == 1 and set(reports[0]) == METRICS
    assert reports[0]["epoch"] == 1 and 0.0 <= reports[0]["val_iou"] <= 1.0
    assert all(math.isfinite(v) for v in reports[0].values())
    assert result.history == reports


def test_loss_falls_and_iou_rises_on_a_tiny_overfit_set(overfit_shards):
    reports = []  # one clip per step, so that 240 steps leave the all-background plateau
    config = TrainConfig(loss="weighted_ce", epochs=60, lr=1e-2, **{**TINY, "hid_S": 16, "hid_T": 32, "batch_size": 1})
    fit(config, overfit_shards, reports.append)
    assert reports[-1]["train_loss"] < 0.5 * reports[0]["train_loss"]
    assert reports[-1]["val_iou"] > reports[0]["val_iou"] + 0.2


def test_one_epoch_then_resume_equals_two_epochs(tiny_shards, tmp_path):
    config = TrainConfig(loss="weighted_ce", epochs=2, train_inputs="mix", pseudo_labels=True, **TINY)
    straight = fit(config, tiny_shards, lambda m: None, checkpoint_dir=tmp_path / "a")

    class Killed(Exception):
        pass

    def die_after_first(metrics):
        raise Killed

    with pytest.raises(Killed):
        fit(config, tiny_shards, die_after_first, checkpoint_dir=tmp_path / "b")
    reports = []
    resumed = fit(config, tiny_shards, reports.append, checkpoint=tmp_path / "b", checkpoint_dir=tmp_path / "b")
    assert [r["epoch"] for r in reports] == [2]  # only the missing epoch ran
    keys = ("train_loss", "val_loss", "val_iou", "val_iou_true_inputs", "lr")
    assert [[r[k] for k in keys] for r in resumed.history] == [[r[k] for k in keys] for r in straight.history]
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_another_config_is_refused(tiny_shards, tmp_path):
    fit(TrainConfig(epochs=1, **TINY), tiny_shards, lambda m: None, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="differs in hid_T"):
        fit(TrainConfig(epochs=1, **{**TINY, "hid_T": 32}), tiny_shards, lambda m: None, checkpoint=tmp_path)


def test_divergence_raises_trial_diverged(tiny_shards):
    config = TrainConfig(loss="mse", lr=1e30, epochs=3, **TINY)
    with pytest.raises(TrialDiverged, match="(?i)inf|nan"):
        fit(config, tiny_shards, lambda m: None)


def test_invalid_groups_are_refused_before_training(tiny_shards):
    with pytest.raises(ValueError, match="groups 7"):
        build_model(TrainConfig(**{**TINY, "groups": 7, "hid_T": 256}), *SHARD_SIZE)


def test_config_validation():
    with pytest.raises(ValueError, match="unknown config key.*hid_t"):
        TrainConfig.from_dict({"hid_t": 64})
    with pytest.raises(ValueError, match="loss is 'l1'; valid: mse, ce, weighted_ce"):
        TrainConfig(loss="l1")
    with pytest.raises(ValueError, match="last_frame_weight is 0"):
        TrainConfig(last_frame_weight=0)
    with pytest.raises(ValueError, match="train_inputs"):
        TrainConfig(train_inputs="both")


def test_copy_last_frame_baseline(tiny_shards):
    scores = copy_last_frame(ShardSet.open(tiny_shards))
    assert set(scores) == {"unet", "true"} and 0 <= scores["unet"] <= 1 and 0 < scores["true"] < 1


def test_cli_runs_resumes_and_rejects_bad_config(tiny_shards, tmp_path):
    args = ["-m", "vidseg.train", "--shards", str(tiny_shards), "--epochs", "1", "--N-S", "2", "--N-T", "2",
            "--hid-S", "8", "--hid-T", "16", "--groups", "2", "--batch-size", "4", "--out", str(tmp_path / "run")]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "copy-last-frame val IoU" in result.stdout and "final val IoU" in result.stdout
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    bad = run_cli(*args[:4], "--loss", "l1")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: loss is 'l1'; valid: mse, ce, weighted_ce"
    bad = run_cli(*args[:4], "--groups", "7", "--hid-T", "256")
    assert bad.returncode == 2 and bad.stderr.startswith("error: groups 7") and "Traceback" not in bad.stderr
