"""The top teams' ingredients: a learned input embedding, a stride-2 stem, autoregressive rollout
with scheduled sampling, and a soft-Jaccard loss term."""

import dataclasses
import math

import pytest
import torch

from tests.conftest import SHARD_SIZE, run_main
from vidseg.train import TrainConfig, build_model, fit
from vidseg.train.loop import self_fed_share
from vidseg.train.codec import predict_masks
from vidseg.train.losses import soft_jaccard_loss
from vidseg.train.memory import estimate_peak_bytes, parameter_count, probe_activation_bytes

TINY = dict(N_S=2, N_T=2, hid_S=8, hid_T=16, groups=2, batch_size=2, device="cpu", seed=0)
ALL = dict(loss="ce", input_encoding="embed", embed_dim=8, stem_stride=2, rollout="autoregressive", sampling="linear",
           iou_loss_weight=1.0, flip_augment=True)
INGREDIENTS = [
    dict(loss="weighted_ce", train_inputs="mix"),  # no ingredient: the plain loop, on UNet and true inputs
    dict(loss="ce", input_encoding="embed", embed_dim=8),
    dict(loss="weighted_ce", stem_stride=2, last_frame_skip=True),
    dict(loss="mse", stem_stride=2),
    dict(loss="ce", rollout="autoregressive", sampling="exponential"),
    dict(loss="weighted_ce", iou_loss_weight=4.0),
    dict(loss="ce", flip_augment=True, last_frame_skip=True),
    ALL,
]


def test_cli_trains_validates_checkpoints_and_resumes_with_every_ingredient(tiny_shards, tmp_path, capsys):
    from vidseg.train.__main__ import main

    args = ["--shards", str(tiny_shards), "--epochs", "2", "--N-S", "2", "--N-T", "2",
            "--hid-S", "8", "--hid-T", "16", "--groups", "2", "--batch-size", "2", "--out", str(tmp_path / "run"),
            "--input-encoding", "embed", "--embed-dim", "8", "--stem-stride", "2", "--rollout", "autoregressive",
            "--sampling", "linear", "--iou-loss-weight", "1", "--loss", "ce", "--flip-augment", "true"]
    result = run_main(main, *args, capsys=capsys)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "final val IoU" in result.stdout
    state = torch.load(tmp_path / "run" / "checkpoint.pt")
    assert state["epoch"] == 2 and state["config"]["rollout"] == "autoregressive"
    assert state["config"]["flip_augment"] is True and state["config"]["stem_stride"] == 2
    again = run_main(main, *args, capsys=capsys)  # resumes from the finished checkpoint: nothing left to train
    assert again.returncode == 0 and "final val IoU" in again.stdout
    bad = run_main(main, *args[:2], "--loss", "mse", "--input-encoding", "embed", capsys=capsys)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: input_encoding embed needs a CE loss (mse feeds class ids)"


@pytest.mark.parametrize("ingredients", INGREDIENTS, ids=lambda d: "+".join(f"{k}={v}" for k, v in d.items()))
def test_one_epoch_then_resume_equals_two_epochs(tiny_shards, tmp_path, ingredients):
    config = TrainConfig(epochs=2, pseudo_labels=True, **{**TINY, **ingredients})

    class Killed(Exception):
        pass

    def die(metrics):
        raise Killed

    straight = fit(config, tiny_shards, lambda m: None, checkpoint_dir=tmp_path / "a")
    with pytest.raises(Killed):
        fit(config, tiny_shards, die, checkpoint_dir=tmp_path / "b")
    reports = []
    resumed = fit(config, tiny_shards, reports.append, checkpoint=tmp_path / "b", checkpoint_dir=tmp_path / "b")
    assert [r["epoch"] for r in reports] == [2]  # only the missing epoch ran
    keys = ("train_loss", "val_loss", "val_iou", "val_iou_true_inputs", "lr")
    assert [[r[k] for k in keys] for r in resumed.history] == [[r[k] for k in keys] for r in straight.history]
    assert all(math.isfinite(r[k]) for r in straight.history for k in keys)
    a = torch.load(tmp_path / "a" / "checkpoint.pt")["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_flip_augment_trains_on_mirrored_clips(tiny_shards):
    """With flips a step sees other clips than without (half are mirrored), and nothing else changes:
    validation, on unmirrored clips, scores the untrained model the same."""
    base = TrainConfig(epochs=1, loss="ce", **TINY)
    plain = fit(base, tiny_shards, lambda m: None).history[0]
    flipped = fit(dataclasses.replace(base, flip_augment=True), tiny_shards, lambda m: None).history[0]
    assert flipped["train_loss"] != plain["train_loss"] and math.isfinite(flipped["train_loss"])


def test_autoregressive_forward_is_a_full_rollout_of_single_steps():
    config = TrainConfig(**{**TINY, **ALL})
    torch.manual_seed(0)
    model = build_model(config, *SHARD_SIZE).eval()
    masks = torch.randint(0, 49, (2, 11, *SHARD_SIZE), dtype=torch.uint8)
    with torch.no_grad():
        rolled = model(masks)
        window, expected = masks, []
        for _ in range(11):  # by hand: each predicted frame is fed back as the newest input
            step = model.step(window)
            expected.append(step)
            window = torch.cat([window[:, 1:], predict_masks(step, "ce").to(torch.uint8)], 1)
    assert rolled.shape == (2, 11, 49, *SHARD_SIZE)
    assert torch.equal(rolled, torch.cat(expected, 1))
    with torch.no_grad():  # the rollout reads its own predictions: frame 13 changes when frame 12 would
        assert not torch.equal(model.step(masks), model.step(torch.roll(masks, 1, dims=1)))


@pytest.mark.parametrize("size", [(40, 60), (41, 61), (38, 58)])
def test_the_stem_runs_simvp_at_half_resolution_at_any_size(size):
    config = TrainConfig(**{**TINY, "N_S": 4, "stem_stride": 2, "loss": "ce"})
    model = build_model(config, *size)
    half = tuple(-(-s // 2) for s in size)
    assert model.simvp.in_shape[2:] == tuple(-(-s // 4) * 4 for s in half)  # padded to what N_S=4 divides
    with torch.no_grad():
        out = model(torch.randint(0, 49, (1, 11, *size), dtype=torch.uint8))
    assert out.shape == (1, 11, 49, *size)


@pytest.mark.parametrize("ingredients", INGREDIENTS, ids=lambda d: "+".join(f"{k}={v}" for k, v in d.items()))
def test_the_memory_model_counts_the_ingredients(ingredients):
    config = TrainConfig(**{**TINY, **ingredients})
    with torch.device("meta"):
        built = sum(p.numel() for p in build_model(config, *SHARD_SIZE).parameters())
    assert parameter_count(config) == built
    plain = TrainConfig(**{**TINY, "loss": ingredients["loss"]})
    activations = probe_activation_bytes(config, SHARD_SIZE, 2)
    assert activations > 0 and estimate_peak_bytes(config, SHARD_SIZE, 2) > activations
    if config.stem_stride == 2 and config.rollout == "direct":  # half resolution inside: fewer activations
        assert activations < probe_activation_bytes(plain, SHARD_SIZE, 2)
    if config.rollout == "autoregressive":  # a training step decodes one frame, not eleven
        assert estimate_peak_bytes(config, SHARD_SIZE, 2) < estimate_peak_bytes(
            TrainConfig(**{**TINY, **ingredients, "rollout": "direct", "sampling": "none"}), SHARD_SIZE, 2)


def test_soft_jaccard_is_the_metric_on_certain_predictions_and_differentiable():
    from vidseg.metrics import jaccard_index

    target = torch.randint(0, 5, (2, 8, 12))
    pred = torch.randint(0, 5, (2, 8, 12))
    certain = torch.nn.functional.one_hot(pred, 49).permute(0, 3, 1, 2).float() * 100  # softmax = one-hot
    loss = soft_jaccard_loss(certain, target)
    # the metric averages over classes in prediction or target; the loss over those in the target
    present = torch.unique(target)
    per_class = [((pred == c) & (target == c)).sum() / ((pred == c) | (target == c)).sum() for c in present]
    assert float(loss) == pytest.approx(1 - float(torch.stack(per_class).mean()), abs=1e-5)
    assert float(soft_jaccard_loss(torch.nn.functional.one_hot(target, 49).permute(0, 3, 1, 2).float() * 100,
                                   target)) == pytest.approx(0, abs=1e-5)
    assert float(jaccard_index(target, target)) == 1.0
    logits = torch.zeros(2, 49, 8, 12, requires_grad=True)
    soft_jaccard_loss(logits, target).backward()
    assert logits.grad.abs().sum() > 0


def test_scheduled_sampling_schedules():
    def shares(sampling):
        config = TrainConfig(**{**TINY, "loss": "ce", "rollout": "autoregressive", "sampling": sampling, "epochs": 5})
        return [self_fed_share(config, epoch) for epoch in range(5)]
    assert shares("none") == [0.0] * 5
    assert shares("linear") == [0.0, 0.25, 0.5, 0.75, 1.0]
    exponential = shares("exponential")
    assert exponential[0] == 0.0 and exponential[-1] == pytest.approx(0.95)
    assert all(e > lin for e, lin in zip(exponential[1:-1], shares("linear")[1:-1]))  # fast at first
    with pytest.raises(ValueError, match="sampling needs rollout autoregressive"):
        TrainConfig(**{**TINY, "sampling": "linear"})
