"""One trial: it learns, reports what ASHA needs, resumes exactly, and fails loudly on NaN."""

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import SHARD_SIZE, run_cli, run_main
from tests.host_reads import HostReads
from vidseg.baselines import copy_last_frame
from vidseg.data.shards import ShardSet
from vidseg.metrics import jaccard_index
from vidseg.train import TrainConfig, TrialDiverged, build_model, fit
from vidseg.accel import bf16_dtype, cpu_has_bf16, finite_check_steps
from vidseg.train.loop import MaskTable, _set_up, _train_arrays
from vidseg.train.memory import data_bytes
from vidseg.train.cost import COST_FIELDS

TINY = dict(N_S=2, N_T=2, hid_S=8, hid_T=16, groups=2, batch_size=4, device="cpu")
METRICS = {"epoch", "val_iou", "val_iou_true_inputs", "val_soft_iou", "train_loss", "val_loss", "lr", "epoch_seconds",
           "samples_per_second", "data_fraction", "train_seconds", "val_seconds", "device_share", *COST_FIELDS,
           "val_iou_plain", "val_iou_known", "val_iou_known_regions"}


@pytest.mark.parametrize("loss", ["mse", "ce", "weighted_ce"])
@pytest.mark.parametrize("translator", ["incep", "gsta"])
def test_one_epoch_reports_every_metric(tiny_shards, loss, translator):
    reports = []
    config = TrainConfig(loss=loss, translator=translator, epochs=1, **TINY)
    result = fit(config, tiny_shards, reports.append)
    assert len(reports) == 1 and set(reports[0]) == METRICS
    assert reports[0]["epoch"] == 1 and 0.0 <= reports[0]["val_iou"] <= 1.0
    assert reports[0]["val_iou"] == reports[0]["val_iou_plain"]  # the default decoding
    assert 0.0 < reports[0]["val_soft_iou"] <= 1.0
    assert all(math.isfinite(v) for v in reports[0].values())
    assert result.history == reports
    first = reports[0]  # device time: one CPU (fit's default share) x the wall seconds since fit started
    assert 0 < first["train_seconds"] + first["val_seconds"] <= first["epoch_seconds"] < first["device_seconds"]
    assert first["train_device_seconds"] == first["train_seconds"] and first["val_device_seconds"] == first["val_seconds"]


def test_loss_falls_and_iou_rises_on_a_tiny_overfit_set(overfit_shards):
    reports = []  # one clip per step, so that 240 steps leave the all-background plateau
    config = TrainConfig(loss="weighted_ce", epochs=60, lr=1e-2, **{**TINY, "hid_S": 16, "hid_T": 32, "batch_size": 1})
    fit(config, overfit_shards, reports.append)
    assert reports[-1]["train_loss"] < 0.5 * reports[0]["train_loss"]
    assert reports[-1]["val_iou"] > reports[0]["val_iou"] + 0.2
    assert reports[-1]["val_soft_iou"] > reports[0]["val_soft_iou"] + 0.2  # the tie score follows what is learnt


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


def test_config_rejects_wrong_types_and_devices():
    for bad in ({"pseudo_labels": "false"}, {"epochs": "5"}, {"hid_S": 16.5}, {"compile": 1}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))}=.* is not of type"):
            TrainConfig.from_dict(bad)
    assert TrainConfig.from_dict({"lr": 1, "max_train_videos": None}).lr == 1
    with pytest.raises(ValueError, match="device is 'gpu'"):
        TrainConfig(device="gpu")


def test_pseudo_labels_need_an_unlabeled_split(overfit_shards):
    with pytest.raises(ValueError, match="pseudo_labels needs an unlabeled split"):
        fit(TrainConfig(pseudo_labels=True, epochs=1, **TINY), overfit_shards, lambda m: None)


def test_copy_last_frame_baseline(tiny_shards):
    shards = ShardSet.open(tiny_shards)
    scores = copy_last_frame(shards)
    val = shards.split("val")
    target = torch.from_numpy(val.true.take(range(len(val)))[:, 21])
    for kind in ("unet", "true"):
        frame_11 = torch.from_numpy(getattr(val, kind).take(range(len(val)))[:, 10])
        assert scores[kind] == pytest.approx(float(jaccard_index(frame_11, target)))


def test_cli_runs_resumes_and_rejects_bad_config(tiny_shards, tmp_path, capsys):
    from vidseg.train.__main__ import main

    args = ["--shards", str(tiny_shards), "--epochs", "1", "--N-S", "2", "--N-T", "2",
            "--hid-S", "8", "--hid-T", "16", "--groups", "2", "--batch-size", "4", "--out", str(tmp_path / "run")]
    result = run_cli("-m", "vidseg.train", *args)  # in a real process
    assert result.returncode == 0, result.stderr
    assert "copy-last-frame val IoU" in result.stdout and "final val IoU" in result.stdout
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    again = run_main(main, *args, capsys=capsys)  # resumes from the finished checkpoint: nothing left to train
    assert again.returncode == 0, again.stderr
    assert not [line for line in again.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert "final val IoU" in again.stdout
    other = run_main(main, *[("3" if a == "1" and args[i - 1] == "--epochs" else a) for i, a in enumerate(args)],
                     capsys=capsys)
    assert other.returncode == 2 and "differs in epochs" in other.stderr
    bad = run_main(main, *args[:2], "--loss", "l1", capsys=capsys)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: loss is 'l1'; valid: mse, ce, weighted_ce"
    bad = run_main(main, *args[:2], "--groups", "7", "--hid-T", "256", capsys=capsys)
    assert bad.returncode == 2 and bad.stderr.startswith("error: groups 7")


@pytest.mark.parametrize("loss, at_least", [("ce", 0.95), ("mse", 0.5)])  # raw ids make mse's start noisier
def test_last_frame_skip_starts_at_copy_last_frame(tiny_shards, loss, at_least):
    from vidseg.train.codec import predict_masks

    config = TrainConfig(loss=loss, last_frame_skip=True, **TINY)
    torch.manual_seed(0)
    model = build_model(config, *SHARD_SIZE).eval()
    assert any(name.endswith("scale") for name, _ in model.named_parameters())  # learnable
    masks = torch.from_numpy(ShardSet.open(tiny_shards).split("val").true.take(range(2))[:, :11])
    with torch.no_grad():
        predicted = predict_masks(model(masks), loss, "round")
    objects = (masks[:, -1:] > 0).expand_as(predicted)  # object pixels: background alone would say little
    same = (predicted == masks[:, -1:])[objects].float().mean().item()  # every output frame repeats the last input
    plain = build_model(TrainConfig(loss=loss, **TINY), *SHARD_SIZE).eval()
    with torch.no_grad():
        plain_predicted = predict_masks(plain(masks), loss, "round")
    plain_same = (plain_predicted == masks[:, -1:])[objects].float().mean().item()
    assert same > at_least and same > plain_same + 0.3


def test_host_reads_per_epoch_do_not_grow_with_the_steps(tiny_shards):
    reads = {}
    for videos, pseudo in ((1, False), (4, True)):  # 1 step against 6 steps an epoch
        config = TrainConfig(epochs=1, max_train_videos=videos, pseudo_labels=pseudo, **{**TINY, "batch_size": 1})
        with HostReads() as counter:
            fit(config, tiny_shards, lambda m: None)
        reads[videos] = sorted(counter.where)
    assert reads[1] == reads[4] and any(place.startswith("loop.py") for place in reads[1])


def test_finite_checks_are_few_spaced_and_end_the_epoch():
    for steps in (1, 5, 31, 64, 125, 1000):
        checks = sorted(finite_check_steps(steps))
        assert checks[-1] == steps - 1 and 1 <= len(checks) <= 4
        assert all(b - a >= 32 for a, b in zip(checks, checks[1:]))
    assert len(finite_check_steps(1000)) == 4


def test_divergence_names_the_epoch(tiny_shards):
    with pytest.raises(TrialDiverged, match="at epoch 1"):
        fit(TrainConfig(loss="ce", lr=1e30, epochs=2, **TINY), tiny_shards, lambda m: None)


def test_micro_batches_give_the_full_batch_step(tiny_shards):
    """Gradient accumulation: 4 clips as 2 x 2 train the same weights as 4 at once (GroupNorm only)."""
    weights = []
    for micro in (None, 2):
        config = TrainConfig(epochs=1, amp=False, micro_batch_size=micro, **TINY)
        with tempfile.TemporaryDirectory() as folder:
            fit(config, tiny_shards, lambda m: None, checkpoint_dir=folder)
            weights.append(torch.load(Path(folder) / "checkpoint.pt")["model"])
    assert all(torch.allclose(weights[0][k], weights[1][k], atol=1e-5) for k in weights[0])
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # really two code paths


def test_masks_on_the_device_train_exactly_as_from_the_shards(tiny_shards):
    histories = []
    for on_device in (False, True):  # on a CPU "the device" is host memory: the same gather code runs
        config = TrainConfig(epochs=1, data_on_device=on_device, train_inputs="mix", pseudo_labels=True, **TINY)
        histories.append(fit(config, tiny_shards, lambda m: None).history)
    keys = ("train_loss", "val_loss", "val_iou", "val_iou_true_inputs")
    assert [histories[0][0][k] for k in keys] == [histories[1][0][k] for k in keys]


@pytest.mark.parametrize("inputs, pseudo", [("true", False), ("unet", False), ("mix", True)])
def test_the_packing_plan_counts_the_masks_fit_holds(tiny_shards, inputs, pseudo):
    shards = ShardSet.open(tiny_shards)
    config = TrainConfig(train_inputs=inputs, pseudo_labels=pseudo, **TINY)
    val = shards.split("val")
    tables = [MaskTable(list(_train_arrays(shards, config).values()), torch.device("cpu"), False),
              MaskTable([val.true, val.unet], torch.device("cpu"), False)]
    counts = {split: len(shards.split(split)) for split in shards.splits}
    assert sum(t.nbytes for t in tables) == data_bytes(config, counts, SHARD_SIZE) > 0


def test_mask_table_gathers_the_shards_frames(tiny_shards):
    shards = ShardSet.open(tiny_shards)
    train, unlabeled = shards.split("train"), shards.split("unlabeled")
    for on_device in (False, True):
        table = MaskTable([train.true, unlabeled.unet], torch.device("cpu"), on_device)
        rows = np.array([table.row(1, 1), table.row(0, 3), table.row(0, 0)])
        batch = table.gather(table.rows_for(rows), slice(11, None))
        assert batch.dtype == torch.uint8 and batch.shape == (3, 11, *SHARD_SIZE)
        assert np.array_equal(batch.numpy(), np.stack([unlabeled.unet[1][11:], train.true[3][11:], train.true[0][11:]]))


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16")
@pytest.mark.parametrize("loss, dtype", [("ce", torch.bfloat16), ("mse", torch.float32)])
def test_bf16_on_a_cpu_that_has_it_and_mse_reads_out_in_fp32(loss, dtype):
    config = TrainConfig(loss=loss, **TINY)
    model = build_model(config, *SHARD_SIZE)
    masks = torch.randint(0, 49, (1, 11, *SHARD_SIZE), dtype=torch.uint8)
    compute = bf16_dtype(torch.device("cpu"), config.amp)
    assert compute == torch.bfloat16
    with torch.autocast("cpu", dtype=compute):
        output = model(masks)
    assert output.dtype == dtype


def test_aten_held_to_avx2_is_a_cpu_without_bf16():
    """``ATEN_CPU_CAPABILITY=avx2`` imitates a CPU without bf16 whole: fp32 kernels of AVX2 width, and
    no autocast (on this CPU too, where it has bf16)."""
    import os
    import subprocess
    import sys

    from vidseg.accel import inductor_cache_per_capability

    code = ("import torch; from vidseg.accel import bf16_dtype, cpu_has_bf16, inductor_cache_per_capability as cache; "
            "print(torch.backends.cpu.get_cpu_capability(), cpu_has_bf16(), bf16_dtype(torch.device('cpu'), True), "
            "cache())")
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"} | {"ATEN_CPU_CAPABILITY": "avx2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    capability, bf16, dtype, cache = out.split()
    assert [capability, bf16, dtype] == ["AVX2", "False", "None"]
    # its compiled kernels in a cache of their own: Inductor's keys leave the capability out, and kernels
    # compiled at AVX2 width crashed a process run without the variable from the same cache
    assert cache.endswith("_avx2")
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        here = torch.backends.cpu.get_cpu_capability().lower()
        assert inductor_cache_per_capability().endswith(f"_{here}")


def test_help_gives_every_flag_a_sentence_and_every_choice_flag_its_choices(capsys):
    """The flags come from TrainConfig's fields, with the help and choices each field carries."""
    import dataclasses

    from vidseg.train.__main__ import build_parser

    parser = build_parser()
    flags = {a.dest: a for a in parser._actions}
    for f in dataclasses.fields(TrainConfig):
        action = flags[f.name]
        assert len(action.help.split()) >= 4, (f.name, action.help)  # a sentence, not just "default X"
        if f.metadata["choices"]:
            assert action.metavar == "{" + ",".join(map(str, f.metadata["choices"])) + "}"
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = capsys.readouterr().out
    assert "--loss {mse,ce,weighted_ce}" in text and "--rollout {direct,autoregressive}" in text
    assert "--translator {incep,gsta,tau,convnext,convmixer}" in text and "--channels-last {true,false,none}" in text
    args = parser.parse_args(["--shards", "S", "--channels-last", "none", "--stem-stride", "2", "--loss", "ce"])
    assert (args.channels_last, args.stem_stride, args.loss) == (None, 2, "ce")  # "none" is the field's None


def test_compile_runs_simvp_compiled_as_eager_and_keeps_checkpoint_keys(tiny_shards):
    """``compile``: SimVP, the float core, runs under torch.compile, in place (the integer masks'
    encoding stays eager): the same outputs and gradients as eager, the same state_dict keys (so an
    uncompiled model loads its checkpoints), and fit's model is compiled so."""
    import copy

    import torch._dynamo

    from vidseg.train.model import compile_core

    config = TrainConfig(epochs=1, amp=False, compile=True, **TINY)
    torch.manual_seed(0)
    eager = build_model(config, *SHARD_SIZE)
    compiled = compile_core(copy.deepcopy(eager))
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    masks = torch.randint(0, 49, (2, 11, *SHARD_SIZE))
    torch._dynamo.utils.counters.clear()
    outputs = []
    for model in (eager, compiled):
        output = model(masks)
        output.float().square().mean().backward()
        outputs.append((output.detach(), {k: p.grad for k, p in model.named_parameters()}))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # dynamo really compiled SimVP
    assert torch.allclose(outputs[0][0], outputs[1][0], atol=1e-5)
    assert all(torch.allclose(outputs[0][1][k], outputs[1][1][k], atol=1e-5, rtol=1e-4) for k in outputs[0][1])
    run = _set_up(config, ShardSet.open(tiny_shards))  # fit's model: SimVP compiled in place (compiling is lazy)
    assert run.step_model is run.model and run.model.simvp._compiled_call_impl is not None
    assert _set_up(TrainConfig(compile=False, **TINY), ShardSet.open(tiny_shards)).model.simvp._compiled_call_impl is None
