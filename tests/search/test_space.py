"""The search space: profiles build, groups are always valid, the paper's points are right."""

import optuna
import pytest
import torch

from search.space import (PROFILES, SearchSpace, correct_groups, paper_configs, points_to_evaluate, train_config,
                          valid_groups)
from search.trainable import estimate_gpu_bytes, gpu_fraction
from vidseg.train.config import TrainConfig
from vidseg.train.fit import build_model


def test_valid_groups_divide_every_grouped_channel_count():
    assert valid_groups(4, 32) == [1, 2, 4]  # 11 * 4 = 44 is not divisible by 8
    assert valid_groups(64, 512) == [1, 2, 4, 8, 16]
    assert correct_groups(8, 4, 32) == 4
    assert correct_groups(7, 64, 256) == 4  # the largest valid count below 7


def test_paper_configs_match_the_paper_with_groups_corrected():
    papers = paper_configs()
    assert len(papers) == 6
    # the CE model was 4_8_64_256_7; 7 does not divide the 128-channel Inception branch, so groups=1 ran
    ce = papers["paper-ce-4_8_64_256_1"]
    assert (ce["N_S"], ce["N_T"], ce["hid_S"], ce["hid_T"], ce["groups"], ce["loss"]) == (4, 8, 64, 256, 1, "ce")
    table1 = [(8, 16, 64, 512, 8), (8, 16, 64, 256, 8), (4, 8, 64, 256, 4), (4, 8, 16, 64, 4), (2, 4, 4, 32, 1)]
    mse = [(p["N_S"], p["N_T"], p["hid_S"], p["hid_T"], p["groups"]) for p in papers.values() if p["loss"] == "mse"]
    assert mse == table1
    for point in papers.values():  # every paper model builds at full resolution
        with torch.device("meta"):
            build_model(TrainConfig.from_dict({**point, "loss": point["loss"]}), 160, 240)


def test_full_profile_seeds_all_paper_configs_and_demo_those_that_fit():
    assert len(points_to_evaluate(PROFILES["full"])) == 6
    demo = points_to_evaluate(PROFILES["demo"])
    assert set(demo) == {"paper-mse-4_8_16_64_4", "paper-mse-2_4_4_32_1"}
    for point in demo.values():
        assert PROFILES["demo"].lr_range[0] <= point["lr"] <= PROFILES["demo"].lr_range[1]


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_sampled_config_builds_a_valid_model(name):
    profile = PROFILES[name]
    space = SearchSpace(profile, max_epochs=5, seed=3)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=10), direction="maximize")
    for point in points_to_evaluate(profile).values():
        study.enqueue_trial(point)
    seen_losses, seen_groups = set(), set()
    for i in range(40):
        trial = study.ask()
        config = {**trial.params, **space(trial)}  # Ray merges the returned values over the raw suggestions
        train = train_config(config)
        assert train.epochs == 5 and train.seed == 3
        assert (train.loss == "weighted_ce") == ("last_frame_weight" in trial.params)
        if train.translator == "incep":
            assert train.groups in valid_groups(train.hid_S, train.hid_T)
        with torch.device("meta"):
            build_model(train, *profile.resolution)
        seen_losses.add(train.loss)
        seen_groups.add(train.groups)
        study.tell(trial, float(i % 7))
    assert seen_losses == set(profile.loss)
    assert len(seen_groups) > 1


def test_profile_check_refuses_a_resolution_the_widths_cannot_use():
    import dataclasses

    bad = dataclasses.replace(PROFILES["demo"], resolution=(40, 60), N_S=(8,))
    with pytest.raises(ValueError, match="N_S=8 needs H and W divisible by 16"):
        bad.check()


def test_gpu_fraction_packs_small_trials_and_gives_big_ones_more():
    small = TrainConfig(N_S=2, N_T=4, hid_S=4, hid_T=32, groups=1, loss="ce", batch_size=4)
    big = TrainConfig(N_S=8, N_T=16, hid_S=64, hid_T=512, groups=8, loss="ce", batch_size=32)
    assert estimate_gpu_bytes(big, (160, 240)) > 10 * estimate_gpu_bytes(small, (160, 240))
    assert gpu_fraction(small, (160, 240), 80) == 0.125
    assert 0.125 < gpu_fraction(big, (160, 240), 80) <= 1.0
    assert gpu_fraction(big, (160, 240), 8) == 1.0


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_trains_a_valid_unet(name):
    from vidseg.segment.train import UNetConfig

    p = PROFILES[name]
    config = UNetConfig(width=p.unet_width, size=p.unet_size, epochs=p.unet_epochs, crop=p.unet_crop,
                        train_frame_stride=p.unet_frame_stride, foreground_crops=p.unet_foreground_crops,
                        lr=p.unet_lr)
    assert config.crop is None or all(c < s for c, s in zip(config.crop, config.size))
