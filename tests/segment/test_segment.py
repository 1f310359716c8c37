"""The segmentation stage: UNet training that resumes, pre-segmentation that resumes, and the CLI."""

import json
import logging
import shutil

import numpy as np
import pytest
import torch

from tests.conftest import SEGMENT_ARGS, SHARD_SIZE, files_under, run_cli, run_main
from tests.host_reads import HostReads
from vidseg.data.layout import Dataset
from vidseg.data.shards import MANIFEST, ShardSet
from vidseg.segment import UNetConfig, load_unet, train_unet
from vidseg.segment.presegment import presegment, segment_video

SMALL = dict(width=4, size=(32, 48), batch_size=8, num_workers=0, val_frame_stride=7)


def test_training_learns_resumes_and_refuses_other_settings(tiny_dataset, tmp_path):
    out = tmp_path / "unet"
    first = train_unet(tiny_dataset, out, UNetConfig(epochs=1, **SMALL), progress=False)
    assert first.epochs_done == 1 and (out / "unet_best.pt").is_file()
    record = first.history[0]
    assert record["frames"] == 4 * 22 and record["frames_per_second"] > 0 and record["gpu_busy_fraction"] is None
    cache = {p.name: p.stat().st_mtime_ns for p in (out / "frame_cache").iterdir()}
    assert sorted(cache) == [f"{split}-32x48{part}" for split in ("train", "val")
                             for part in ("-images.npy", "-masks.npy", ".json")]
    resumed = train_unet(tiny_dataset, out, UNetConfig(epochs=3, **SMALL), progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "frame_cache").iterdir()} == cache  # decoded once
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert resumed.history[0] == first.history[0]  # epoch 1 was kept, not redone
    assert resumed.history[2]["train_loss"] < resumed.history[0]["train_loss"]
    again = train_unet(tiny_dataset, out, UNetConfig(epochs=3, **SMALL), progress=False)
    assert again.history == resumed.history  # finished: reused
    model, state = load_unet(out / "unet_best.pt")
    assert state["config"]["width"] == 4 and state["val_iou"] == max(r["val_iou"] for r in resumed.history)
    with pytest.raises(ValueError, match="other settings"):
        train_unet(tiny_dataset, out, UNetConfig(epochs=3, **{**SMALL, "width": 8}), progress=False)


def test_a_checkpoint_from_before_new_settings_still_resumes(tiny_dataset, tmp_path):
    from vidseg.segment.train import settings_key

    out = tmp_path / "unet"
    first = train_unet(tiny_dataset, out, UNetConfig(epochs=1, **SMALL), progress=False)
    state = torch.load(out / "unet_last.pt")
    for key in ("crop", "foreground_crops"):  # added in session 3, absent from older checkpoints
        del state["config"][key]
    torch.save(state, out / "unet_last.pt")
    again = train_unet(tiny_dataset, out, UNetConfig(epochs=1, **SMALL), progress=False)
    assert again.history == first.history
    keys = {settings_key(UNetConfig(epochs=e, **SMALL)) for e in (1, 5)}
    assert len(keys) == 1 and settings_key(UNetConfig(crop=(16, 16), **SMALL)) not in keys


def test_same_seed_same_unet(tiny_dataset, tmp_path):
    runs = [train_unet(tiny_dataset, tmp_path / name, UNetConfig(epochs=1, **SMALL), progress=False)
            for name in ("a", "b")]
    strip = [{k: v for k, v in r.history[0].items() if k not in ("seconds", "frames_per_second")} for r in runs]
    assert strip[0] == strip[1]


def test_a_loss_that_is_not_finite_stops_training(tiny_dataset, tmp_path):
    out = tmp_path / "unet"
    train_unet(tiny_dataset, out, UNetConfig(epochs=1, **SMALL), progress=False)
    state = torch.load(out / "unet_last.pt")
    state["model"] = {k: v.fill_(float("nan")) if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, out / "unet_last.pt")
    with pytest.raises(FloatingPointError, match="UNet loss became nan at epoch 2"):
        train_unet(tiny_dataset, out, UNetConfig(epochs=2, **SMALL), progress=False)


def test_host_reads_per_epoch_do_not_grow_with_the_steps(tiny_dataset, tmp_path):
    reads = {}
    for videos in (1, 4):  # 6 against 22 steps an epoch
        config = UNetConfig(epochs=1, max_train_videos=videos, crop=(16, 24), foreground_crops=0.5,
                            **{**SMALL, "batch_size": 4})
        with HostReads() as counter:
            train_unet(tiny_dataset, tmp_path / str(videos), config, progress=False)
        reads[videos] = sorted(counter.where)
    assert reads[1] == reads[4] and any(place.startswith("train.py") for place in reads[1]), reads


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="unknown UNet config key.*lerning_rate"):
        UNetConfig.from_dict({"lerning_rate": 1e-3})
    with pytest.raises(ValueError, match="background_weight is 0"):
        UNetConfig(background_weight=0)
    with pytest.raises(ValueError, match="foreground_crops is 0.5, but must be"):
        UNetConfig(foreground_crops=0.5)
    with pytest.raises(ValueError, match=r"crop is \(16, 16\), but needs augment"):
        UNetConfig(crop=(16, 16), augment=False)


def test_training_on_crops(tiny_dataset, tmp_path):
    out = tmp_path / "unet"
    result = train_unet(tiny_dataset, out, UNetConfig(epochs=1, crop=(16, 24), foreground_crops=0.5, **SMALL),
                        progress=False)
    _, state = load_unet(result.checkpoint)
    assert state["config"]["crop"] == [16, 24] and 0 <= result.val_iou <= 1
    assert UNetConfig.from_dict(state["config"]).crop == (16, 24)
    with pytest.raises(ValueError, match="other settings"):
        train_unet(tiny_dataset, out, UNetConfig(epochs=2, crop=(32, 32), **SMALL), progress=False)
    with pytest.raises(ValueError, match=r"crop is \(40, 24\), but must be"):
        UNetConfig(crop=(40, 24), **SMALL)


def test_amp_uses_bf16_on_cpus_that_have_it():
    from vidseg.segment.train import _autocast, cpu_has_bf16

    conv = torch.nn.Conv2d(3, 4, 3)
    with _autocast(torch.device("cpu"), True):
        out = conv(torch.rand(1, 3, 8, 8))
    assert out.dtype == (torch.bfloat16 if cpu_has_bf16() else torch.float32)
    with _autocast(torch.device("cpu"), False):
        assert conv(torch.rand(1, 3, 8, 8)).dtype == torch.float32


def test_prior_correction_undoes_the_background_weight():
    from vidseg.models import UNet
    from vidseg.segment.train import predict, prior_correction

    torch.manual_seed(0)
    model = UNet(3, 49, width=2).eval()
    with torch.no_grad():  # constant logits: class 5 beats background by 1.0 < log(1 / 0.1)
        model.outc.conv.weight.zero_()
        model.outc.conv.bias.zero_()
        model.outc.conv.bias[5] = 1.0
    images = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        assert (predict(model, images, prior_correction(1.0)) == 5).all()  # weight 1: no change
        assert (predict(model, images, prior_correction(0.1)) == 0).all()  # log 10 = 2.3 > 1.0
        assert (predict(model, images, prior_correction(0.5)) == 5).all()  # log 2 = 0.69 < 1.0


def test_shards_hold_what_the_unet_predicts(tiny_shards, tiny_dataset):
    model, state = load_unet(tiny_shards / "unet" / "unet_best.pt")
    video = Dataset.open(tiny_dataset).videos("hidden")[1]
    unet, true = segment_video(model, video, (80, 120), SHARD_SIZE, torch.device("cpu"),
                               background_weight=state["config"]["background_weight"])
    assert true is None
    assert np.array_equal(ShardSet.open(tiny_shards).split("hidden").unet[1], unet)
    # a labeled video: the UNet's masks of its input frames only, the very ones of all its frames
    video = Dataset.open(tiny_dataset).videos("val")[1]
    every, true = segment_video(model, video, (80, 120), SHARD_SIZE, torch.device("cpu"),
                                background_weight=state["config"]["background_weight"])
    assert every.shape[0] == 22 and true.shape[0] == 22
    assert np.array_equal(ShardSet.open(tiny_shards).split("val").unet[1], every[:11])


def test_interrupted_presegmentation_resumes(shards_copy, tiny_dataset):
    reference = {p.name: p.read_bytes() for p in shards_copy.glob("*.arrow")}
    kept = shards_copy / "train-00000.arrow"
    stamp = kept.stat().st_mtime_ns
    # What a killed run leaves: no manifest, some shards not yet written, one left as a temp file.
    (shards_copy / MANIFEST).unlink()
    (shards_copy / "val-00000.arrow").unlink()
    half = shards_copy / "hidden-00000.arrow"
    half.rename(shards_copy / ".hidden-00000.arrow.tmp999")
    presegment(tiny_dataset, shards_copy, shards_copy / "unet" / "unet_best.pt", out_size=SHARD_SIZE,
               videos_per_shard=3, use_ray=False, progress=False)
    assert kept.stat().st_mtime_ns == stamp  # a complete, valid shard is not redone
    assert not list(shards_copy.glob(".*"))  # the temp file is swept
    assert {p.name: p.read_bytes() for p in shards_copy.glob("*.arrow")} == reference
    ShardSet.open(shards_copy)


def test_a_damaged_shard_is_redone(shards_copy, tiny_dataset):
    path = shards_copy / "unlabeled-00000.arrow"
    original = path.read_bytes()
    path.write_bytes(original[:100])
    presegment(tiny_dataset, shards_copy, shards_copy / "unet" / "unet_best.pt", out_size=SHARD_SIZE,
               videos_per_shard=3, use_ray=False, progress=False)
    assert path.read_bytes() == original


def test_other_unet_means_new_shards(shards_copy, tiny_dataset, tmp_path):
    other = train_unet(tiny_dataset, tmp_path / "other", UNetConfig(epochs=1, **{**SMALL, "seed": 3}),
                       progress=False)
    manifest = json.loads(presegment(tiny_dataset, shards_copy, other.checkpoint, out_size=SHARD_SIZE,
                                     videos_per_shard=3, use_ray=False, progress=False).read_text())
    shards = ShardSet.open(shards_copy)
    assert manifest["unet"]["checkpoint"] == str(other.checkpoint.resolve())
    assert shards.split("val").unet.shape == (2, 11, *SHARD_SIZE)  # the input frames, what trials read


def test_cli_bad_input_is_one_line_exit_2(tmp_path, tiny_dataset, capsys):
    from vidseg.segment.__main__ import main

    result = run_cli("-m", "vidseg.segment", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "Traceback" not in result.stderr  # in a real process
    assert result.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'nope'}: no such dataset folder"
    result = run_main(main, "--data", str(tiny_dataset), "--out", str(tmp_path / "o"), "--size", "big", capsys=capsys)
    assert result.returncode == 2 and "'big' is not HxW" in result.stderr
    result = run_main(main, "--data", str(tiny_dataset), "--out", str(tmp_path / "o"), "--epochs", "0", capsys=capsys)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == (
        "error: epochs is 0, but must be >= 1")
    assert not (tmp_path / "o").exists()


def test_cli_reuses_finished_work(tiny_shards, tiny_dataset, tmp_path, caplog, capsys):
    from vidseg.segment.__main__ import main

    caplog.set_level(logging.INFO)
    copy = tmp_path / "again"
    shutil.copytree(tiny_shards, copy)
    before = {k: v for k, v in files_under(copy).items() if k != "manifest.json"}
    result = run_main(main, "--data", str(tiny_dataset), "--out", str(copy), *SEGMENT_ARGS, capsys=capsys)
    assert result.returncode == 0, result.stderr
    logged = caplog.text
    assert "UNet already trained" in logged and "reusing 5 finished shard(s); 0 to make" in logged
    after = files_under(copy)
    assert {k: v for k, v in after.items() if k != "manifest.json"} == before  # no shard nor UNet redone
    assert json.loads(after["manifest.json"])["unet"]["checkpoint"] == str(copy / "unet" / "unet_best.pt")


def test_a_rerun_that_reuses_the_val_shards_keeps_their_score(shards_copy, tiny_dataset):
    """The UNet's val Jaccard, scored while the val shards were made, is kept in their manifest
    entries, so a rerun that reuses them (here: only a train shard is redone) reports the same."""
    before = json.loads((shards_copy / "manifest.json").read_text())
    assert all(entry["unet_confusion"] for entry in before["splits"]["val"]["shards"])
    assert all("unet_confusion" not in entry for entry in before["splits"]["train"]["shards"])
    (shards_copy / "train-00000.arrow").unlink()
    after = json.loads(presegment(tiny_dataset, shards_copy, shards_copy / "unet" / "unet_best.pt", out_size=SHARD_SIZE,
                                  videos_per_shard=3, use_ray=False, progress=False).read_text())
    assert after["unet"]["val_iou"] == before["unet"]["val_iou"] and 0 < after["unet"]["val_iou"] < 1
    assert after["splits"]["val"] == before["splits"]["val"]
