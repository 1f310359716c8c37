"""The demo's shipped UNet: what it is, its version check, its export, and the demo using it."""

import dataclasses
import shutil

import pytest
import torch

from tests.conftest import run_cli, run_main
from vidseg.checkpoint import save_checkpoint
from vidseg.task import NUM_CLASSES
from vidseg.data.synth import GENERATOR_VERSION
from vidseg.errors import InputError
from vidseg.models import UNet
from vidseg.segment.pretrained import RECIPE, SHIPPED, check_shipped, export, main, val_jaccard
from vidseg.segment.train import UNetConfig, load_unet


def test_the_shipped_checkpoint_is_small_current_and_good():
    """It fails when the generator's version moves on without a rebuilt checkpoint."""
    assert SHIPPED.is_file() and SHIPPED.stat().st_size <= 10_000_000
    state = check_shipped()
    assert state["generator_version"] == GENERATOR_VERSION
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in state["recipe"].items()} == RECIPE
    assert state["val_iou"] >= 0.90 and state["command"] == "python -m vidseg.segment.pretrained"
    model, _ = load_unet(SHIPPED)
    assert model(torch.zeros(1, 3, 160, 240)).shape == (1, NUM_CLASSES, 160, 240)


def _recipe_checkpoint(path, version=GENERATOR_VERSION, **changes):
    config = UNetConfig(**{**RECIPE, **changes})
    model = UNet(3, NUM_CLASSES, bilinear=False, width=config.width)
    save_checkpoint({"config": config.to_dict(), "model": model.state_dict(), "epoch": 3, "val_iou": 0.5,
                     "best_val_iou": 0.5, "history": []}, path)
    return model


def test_export_halves_the_weights_and_records_the_recipe_and_version(tmp_path):
    model = _recipe_checkpoint(tmp_path / "unet_best.pt")
    out = export(tmp_path / "unet_best.pt", tmp_path / "shipped.pt")
    state = check_shipped(out)
    assert state["model"]["inc.double_conv.0.weight"].dtype == torch.float16
    assert out.stat().st_size < 0.6 * (tmp_path / "unet_best.pt").stat().st_size
    loaded, _ = load_unet(out)
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value.half().to(value.dtype) if value.is_floating_point() else value)
    with pytest.raises(InputError, match="not trained by the recipe.*width 8"):
        _recipe_checkpoint(tmp_path / "other.pt", width=8)
        export(tmp_path / "other.pt", tmp_path / "shipped2.pt")


def test_another_generator_version_is_refused_in_one_line(tmp_path, capsys):
    _recipe_checkpoint(tmp_path / "unet_best.pt")
    out = export(tmp_path / "unet_best.pt", tmp_path / "shipped.pt")
    state = torch.load(out, weights_only=True)
    save_checkpoint({**state, "generator_version": "0.9"}, tmp_path / "old.pt")
    with pytest.raises(InputError, match=rf"old.pt: trained on the synthetic generator version 0.9, but this generator "
                                         rf"is version {GENERATOR_VERSION}.*--train-unet"):
        check_shipped(tmp_path / "old.pt")
    result = run_cli("-m", "vidseg.segment.pretrained", "--check", "--out", str(tmp_path / "old.pt"))  # a real process
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {tmp_path / 'old.pt'}: trained on the synthetic generator version 0.9")
    missing = run_main(main, "--check", "--out", str(tmp_path / "none.pt"), capsys=capsys)
    assert missing.returncode == 2 and "no shipped UNet checkpoint" in missing.stderr
    assert missing.stderr.count("\n") == 1 and not (tmp_path / "none.pt").exists()
    shipped = run_main(main, "--check", capsys=capsys)
    assert shipped.returncode == 0 and f"generator {GENERATOR_VERSION}" in shipped.stdout


def test_the_demo_segments_with_the_shipped_unet_unless_told_to_train(tiny_dataset, tmp_path):
    """prepare_shards with a profile that ships its UNet: the shards come from the shipped weights
    (made in this process: the smoke search makes them on Ray tasks), and the manifest records its
    val Jaccard on this dataset; --train-unet trains one instead."""
    from search.run.prepare import DataSource, prepare_shards
    from search.space import PROFILES
    from vidseg.data.shards import ShardSet

    profile = dataclasses.replace(PROFILES["smoke"], unet_shipped=True)
    root = shutil.copytree(tiny_dataset, tmp_path / "shipped" / "tiny")  # the shards are cached beside it
    shards = ShardSet.open(prepare_shards(DataSource(), profile, 0, root, use_ray=False))
    unet = shards.manifest["unet"]
    assert unet["width"] == RECIPE["width"] and tuple(unet["size"]) == RECIPE["size"]
    # scored as the val videos were segmented, on the frames the trials read (a labeled video's input
    # frames), as val_jaccard scores them; the checkpoint's own figure kept beside
    assert unet["val_iou"] == pytest.approx(val_jaccard(tiny_dataset, SHIPPED, frames=11), abs=1e-6)
    assert unet["val_iou"] != pytest.approx(val_jaccard(tiny_dataset, SHIPPED), abs=1e-6)
    recipe = check_shipped(SHIPPED)["val_iou"]
    assert unet["val_iou_checkpoint"] == pytest.approx(recipe) and recipe != pytest.approx(unet["val_iou"])
    assert unet["val_iou"] > 0.5  # the shipped weights, not a fresh UNet (which scores about 0.02)
    root = shutil.copytree(tiny_dataset, tmp_path / "trained" / "tiny")
    trained = ShardSet.open(prepare_shards(DataSource(train_unet=True), profile, 0, root, use_ray=False))
    assert trained.manifest["unet"]["width"] == profile.unet_width and trained.manifest["unet"]["sha256"] != unet["sha256"]
    assert trained.manifest["unet"]["val_iou"] < unet["val_iou"]
