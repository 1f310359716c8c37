"""The memory model: the layer-by-layer count equals the traced one, and the packing plan fits."""

import pytest

from vidseg.train import TrainConfig
import dataclasses

from vidseg.train.memory import (CUDA_CONTEXT_BYTES, GIB, _trace, activation_bytes, estimate_peak_bytes, plan_trial,
                                 probe_activation_bytes, traced_shape)

SIZE = (160, 240)


@pytest.mark.parametrize("fields", [
    dict(N_S=4, N_T=8, hid_S=64, hid_T=256, groups=1, loss="ce", batch_size=16),  # the paper's CE model
    dict(N_S=2, N_T=4, hid_S=16, hid_T=64, groups=2, loss="weighted_ce"),
    dict(N_S=4, N_T=8, hid_S=32, hid_T=512, translator="gsta", loss="ce", batch_size=4),
    dict(N_S=8, N_T=16, hid_S=64, hid_T=512, groups=8, loss="mse", last_frame_skip=True),
    dict(N_S=2, N_T=4, hid_S=4, hid_T=32, groups=1, loss="mse", amp=False),
    dict(N_S=8, N_T=2, hid_S=32, hid_T=128, translator="gsta", loss="weighted_ce", amp=False),
    dict(N_S=4, N_T=8, hid_S=32, hid_T=256, translator="tau", loss="ce", batch_size=4),
    dict(N_S=2, N_T=4, hid_S=16, hid_T=64, translator="tau", loss="mse", amp=False),
    dict(N_S=4, N_T=8, hid_S=32, hid_T=256, translator="convnext", loss="weighted_ce", batch_size=4),
    dict(N_S=2, N_T=4, hid_S=16, hid_T=128, translator="convnext", loss="mse", amp=False),
    dict(N_S=4, N_T=8, hid_S=64, hid_T=512, translator="convmixer", loss="ce", batch_size=4),
    dict(N_S=2, N_T=16, hid_S=16, hid_T=64, translator="convmixer", loss="mse", amp=False),
])
def test_the_count_matches_what_autograd_keeps(fields):
    config = TrainConfig(**fields)
    traced = probe_activation_bytes(config, SIZE, config.batch_size)
    counted = activation_bytes(config, SIZE, config.batch_size, device_type="cpu")  # the probe runs CPU autocast
    assert counted == pytest.approx(traced, rel=0.05)
    assert activation_bytes(config, SIZE, config.batch_size) >= counted  # CUDA keeps fp32 norm copies


@pytest.mark.parametrize("fields", [
    dict(N_S=2, N_T=4, hid_S=8, hid_T=32, translator="gsta", input_encoding="embed", embed_dim=8, loss="weighted_ce",
         iou_loss_weight=4.0, divergence_weight=0.1),
    dict(N_S=2, N_T=2, hid_S=8, hid_T=32, groups=1, rollout="autoregressive", sampling="linear", stem_stride=2,
         loss="ce", divergence_weight=0.2),
])
def test_one_trace_serves_every_configuration_of_a_shape(fields):
    """The driver traces a model shape once (``traced_shape``): configurations that differ only where
    the shape does not (the optimiser, the data, the epochs, a loss term's weight) keep what their
    own uncached traces keep, and a loss term switched off is another shape."""
    first = TrainConfig(**fields)
    other = dataclasses.replace(first, lr=1e-4, weight_decay=0.05, epochs=3, seed=7, last_frame_weight=9.0,
                                iou_loss_weight=first.iou_loss_weight and 1.0, divergence_weight=first.divergence_weight * 3,
                                train_inputs="mix", flip_augment=True, batch_size=6, micro_batch_size=2, grad_clip=1.0)
    assert traced_shape(other) == traced_shape(first)
    cached = probe_activation_bytes(first, (32, 48), 2)
    assert probe_activation_bytes(other, (32, 48), 2) == cached == _trace(other, (32, 48), 2)
    off = dataclasses.replace(first, iou_loss_weight=0.0, divergence_weight=0.0)
    assert traced_shape(off) != traced_shape(first)
    assert probe_activation_bytes(off, (32, 48), 2) == _trace(off, (32, 48), 2)


def test_peak_grows_with_the_batch_and_the_model():
    small, big = TrainConfig(N_S=2, N_T=4, hid_S=16, hid_T=64), TrainConfig(N_S=4, N_T=8, hid_S=64, hid_T=256, groups=1)
    assert estimate_peak_bytes(small, SIZE, 8) > estimate_peak_bytes(small, SIZE, 4)
    assert estimate_peak_bytes(big, SIZE, 4) > 3 * estimate_peak_bytes(small, SIZE, 4)


def test_plan_packs_small_trials_splits_big_ones_and_refuses_what_cannot_fit():
    small = TrainConfig(N_S=2, N_T=4, hid_S=16, hid_T=64, batch_size=4)
    big = TrainConfig(N_S=4, N_T=8, hid_S=64, hid_T=256, groups=1, loss="ce", batch_size=16)
    gpu = 24 * GIB
    plan = plan_trial(small, SIZE, gpu)
    assert plan.share <= 0.25 and plan.micro_batch_size == 4 and plan.infeasible is None
    plan = plan_trial(big, SIZE, gpu)
    assert plan.micro_batch_size < 16 and 16 % plan.micro_batch_size == 0
    assert plan.peak_bytes + CUDA_CONTEXT_BYTES <= plan.share * gpu
    assert plan_trial(big, SIZE, 80 * GIB).micro_batch_size == 16
    tiny_gpu = plan_trial(big, SIZE, 1 * GIB)
    assert tiny_gpu.infeasible and "GiB" in tiny_gpu.infeasible


def test_masks_ride_on_the_gpu_only_inside_the_share_the_model_needs():
    small = TrainConfig(N_S=2, N_T=4, hid_S=16, hid_T=64, batch_size=4)
    alone = plan_trial(small, SIZE, 80 * GIB)
    assert plan_trial(small, SIZE, 80 * GIB, data_bytes=1 * GIB).data_on_device
    crowded = plan_trial(small, SIZE, 80 * GIB, data_bytes=40 * GIB)
    assert not crowded.data_on_device and crowded.share == alone.share
