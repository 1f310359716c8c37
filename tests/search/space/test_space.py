"""The search space: profiles build, groups are always valid, the paper's points are right."""

import dataclasses
import itertools
import json

import optuna
import pytest
import torch

from search.space import (PROFILES, TOP_TEAM, SearchSpace, correct_groups, enqueue, paper_configs, points_to_evaluate,
                          train_config)
from search.run.trainable import trial_plan, trial_resources
from vidseg.models.simvp import valid_groups
from vidseg.train.config import TrainConfig
from vidseg.train.loop import build_model
from vidseg.train.memory import CUDA_CONTEXT_BYTES, GIB, HEADROOM, data_bytes, estimate_peak_bytes, parameter_count


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
    full = points_to_evaluate(PROFILES["full"])
    assert len(full) == 7 and set(paper_configs()) < set(full)
    top = full[TOP_TEAM]  # maskpredformer's recipe at its own widths
    assert (top["N_S"], top["N_T"], top["hid_S"], top["hid_T"], top["translator"]) == (4, 8, 64, 512, "gsta")
    assert (top["input_encoding"], top["stem_stride"], top["rollout"], top["pseudo_labels"]) == ("embed", 2,
                                                                                                 "autoregressive", True)
    demo = points_to_evaluate(PROFILES["demo"])
    assert set(demo) == {"paper-mse-4_8_16_64_4", "paper-mse-2_4_4_32_1", TOP_TEAM}
    assert (demo[TOP_TEAM]["N_S"], demo[TOP_TEAM]["N_T"], demo[TOP_TEAM]["hid_T"]) == (4, 8, 64)  # the largest
    # its own settings, though the demo fixes the skip on and the rollout direct
    assert (demo[TOP_TEAM]["last_frame_skip"], demo[TOP_TEAM]["rollout"]) == (False, "autoregressive")
    for point in demo.values():
        assert PROFILES["demo"].dim("lr").holds(point["lr"]) and point["batch_size"] == 8


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_sampled_config_builds_a_valid_model(name):
    profile = PROFILES[name]
    space = SearchSpace(profile, max_epochs=5, seed=3)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=10), direction="maximize")
    for point in points_to_evaluate(profile).values():
        enqueue(study, point)
    seen_losses, seen_groups, sampled = set(), set(), set()
    for i in range(40):
        trial = study.ask()
        config = {**trial.params, **space(trial)}  # Ray merges the returned values over the raw suggestions
        sampled |= set(trial.params)
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
    assert seen_losses == set(profile.choices("loss"))
    assert len(seen_groups) > 1
    assert sampled == {dim.name for dim in profile.space}  # every dimension of the table, conditional ones too


def test_profile_check_refuses_a_resolution_the_widths_cannot_use():
    bad = PROFILES["demo"].narrowed(N_S=(8,))
    with pytest.raises(ValueError, match="N_S=8 needs H and W divisible by 16"):
        bad.check()


def test_fit_to_shards_leaves_out_what_the_shards_cannot_run_and_resume_rebuilds_it():
    from search.space import fit_to_shards, limits_of, narrowed
    from vidseg.errors import InputError

    counts = {"train": 4, "val": 2, "hidden": 2}
    fitted, notes = fit_to_shards(PROFILES["full"], (40, 60), counts)
    assert fitted.choices("N_S") == (2, 4) and fitted.choices("pseudo_labels") == (False,)
    assert fitted.resolution == (40, 60)
    assert notes == ["N_S=8 left out of the space: 40x60 shards are not divisible by 16",
                     "pseudo_labels=True left out of the space: the shard set has no unlabeled videos"]
    assert narrowed(PROFILES["full"], json.loads(json.dumps(limits_of(fitted)))) == fitted  # as search.json keeps it
    assert points_to_evaluate(fitted) and all(p["N_S"] != 8 for p in points_to_evaluate(fitted).values())
    assert points_to_evaluate(fitted)[TOP_TEAM]["pseudo_labels"] is False  # it would fail with no unlabeled videos
    assert fit_to_shards(PROFILES["full"], (160, 240), {**counts, "unlabeled": 3}) == (PROFILES["full"], [])
    with pytest.raises(InputError, match="no val videos"):
        fit_to_shards(PROFILES["smoke"], (40, 60), {"train": 4, "val": 0})
    with pytest.raises(InputError, match="the shards are 41x61, which no N_S of profile smoke can run"):
        fit_to_shards(PROFILES["smoke"], (41, 61), counts)


def _full_space():
    """Every configuration of the full profile that changes memory, with the profile's batch sizes."""
    p = PROFILES["full"]
    for n_s, n_t, hid_s, hid_t, translator, loss, batch, pseudo in itertools.product(
            *map(p.choices, ("N_S", "N_T", "hid_S", "hid_T", "translator")), ("mse", "ce"), p.choices("batch_size"),
            p.choices("pseudo_labels")):
        for groups in (valid_groups(hid_s, hid_t, p.choices("groups")) if translator == "incep" else [1]):
            yield TrainConfig(N_S=n_s, N_T=n_t, hid_S=hid_s, hid_T=hid_t, translator=translator, groups=groups,
                              loss=loss, batch_size=batch, pseudo_labels=pseudo, train_inputs="unet",
                              **PROFILES["full"].fixed)


def test_on_24_gb_gpus_no_full_trial_gets_a_share_smaller_than_its_modelled_peak():
    gpu_gb, counts = 24e9 / GIB, {"train": 1000, "val": 1000, "unlabeled": 13000}  # an A10G; the real data's splits
    resolution = PROFILES["full"].resolution
    checked = split = infeasible = 0
    for config in _full_space():
        plan = trial_plan(config, resolution, gpu_gb, counts)
        if plan.infeasible:  # not even one clip fits: recorded with the reason, never launched onto a share
            one_clip = HEADROOM * estimate_peak_bytes(config, resolution, 1) + CUDA_CONTEXT_BYTES
            assert one_clip > gpu_gb * GIB and "one clip needs" in plan.infeasible, (config, plan)
            infeasible += 1
            continue
        micro = dataclasses.replace(config, micro_batch_size=plan.micro_batch_size)
        peak = estimate_peak_bytes(micro, resolution)
        assert plan.peak_bytes >= peak  # the plan keeps headroom over the model
        if plan.data_on_device:
            peak += data_bytes(config, counts, resolution)
        assert peak + CUDA_CONTEXT_BYTES <= plan.share * gpu_gb * GIB, (config, plan)
        assert config.batch_size % plan.micro_batch_size == 0
        checked += 1
        split += plan.micro_batch_size < config.batch_size
    assert checked > 3000 and split > 0  # the big configurations do need micro-batches on 24 GB
    assert infeasible < 0.02 * checked  # only the largest Inception translators (hundreds of millions of weights)


def test_small_trials_pack_eight_to_a_gpu_and_big_ones_take_more():
    small = TrainConfig(N_S=2, N_T=4, hid_S=4, hid_T=32, groups=1, loss="ce", batch_size=4)
    big = TrainConfig(N_S=8, N_T=16, hid_S=64, hid_T=512, groups=8, loss="ce", batch_size=32)
    assert trial_plan(small, (160, 240), 80).share == 0.125
    assert 0.125 < trial_plan(big, (160, 240), 80).share <= 1.0
    assert trial_plan(big, (160, 240), 24).micro_batch_size < 32


def test_trial_resources_ask_for_the_planned_share_only_where_there_are_gpus():
    config = {**paper_configs()["paper-ce-4_8_64_256_1"], "batch_size": 16, "lr": 1e-3, "epochs": 3, "seed": 0}
    assert trial_resources(2, (160, 240), None)(config) == {"cpu": 2}
    on_24 = trial_resources(2, (160, 240), 24.0)(config)
    assert on_24["cpu"] == 2 and on_24["gpu"] == trial_plan(train_config(config), (160, 240), 24.0).share


def test_parameters_are_counted_as_built():
    for config in itertools.islice(_full_space(), 0, None, 389):  # 45 of the 17,280, every dimension varied
        with torch.device("meta"):
            built = sum(p.numel() for p in build_model(config, 160, 240).parameters())
        assert parameter_count(config) == built, config


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_trains_a_valid_unet(name):
    from vidseg.segment.train import UNetConfig

    p = PROFILES[name]
    config = UNetConfig(width=p.unet_width, size=p.unet_size, epochs=p.unet_epochs, crop=p.unet_crop,
                        train_frame_stride=p.unet_frame_stride, foreground_crops=p.unet_foreground_crops,
                        lr=p.unet_lr)
    assert config.crop is None or all(c < s for c, s in zip(config.crop, config.size))


def test_full_searches_every_translator_the_divergence_term_and_every_decoding():
    from vidseg.train.config import DECODES, TRANSLATORS

    full = PROFILES["full"]
    assert full.choices("translator") == TRANSLATORS and full.choices("decode") == DECODES
    assert full.choices("divergence_weight") == (0.0, 0.1)
    for point in points_to_evaluate(full).values():  # the references keep their own read-out and loss
        assert (point["decode"], point["divergence_weight"]) == ("plain", 0.0)
    space = SearchSpace(full, max_epochs=3, seed=0)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1), direction="maximize")
    seen = {"translator": set(), "decode": set()}
    for _ in range(60):
        trial = study.ask()
        config = train_config({**trial.params, **space(trial)})
        seen["translator"].add(config.translator)
        seen["decode"].add(config.decode)
        assert config.translator == "incep" or config.groups == 1
        study.tell(trial, 0.0)
    assert seen == {"translator": set(TRANSLATORS), "decode": set(DECODES)}
