"""The device suite: everything the GPU path needs measured, on one GPU, in one command (at most 8 minutes).

    python tests/bench/device_suite.py                          # on a CUDA machine: every part
    python tests/bench/device_suite.py --openstl third_party/OpenSTL   # plus OpenSTL's SimVP beside ours
    python tests/bench/device_suite.py --dry-run                # every part at toy size on the CPU (a test runs it)
    python tests/bench/device_suite.py --parts steps,memory     # some parts only
    python3 tests/bench/device_bundle.py install && \
        python3 tests/bench/device_suite.py --parts steps,search --variants "bf16,bf16 + compile" --deadline 520

It runs on a bare CUDA machine: it imports only ``vidseg`` (never Ray, Optuna or pybullet),
needs no install (it puts the repository on ``sys.path``; ``pip install --no-deps -e .`` works
too), and draws its own data: masks of moving rectangles and discs in the competition's shape,
written as a real Arrow shard set, and for the UNet their frames as PNGs in the competition's
layout. OpenSTL is never part of this repository: ``--openstl PATH`` points at a copy of the
public repository in a git-ignored folder (``third_party/``), loaded without its package
``__init__`` files, so that only torch is needed.

Parts (all at 160x240 on a GPU):
- ``steps``: the trial step of a small config (2/4/16/64), the paper's CE config (4/8/64/256 g1)
  and a gSTA config (4/8/64/256), in fp32, fp32 + TF32, bf16 and bf16 + channels_last, and the
  small one also in bf16 + compile (a cold compile costs about a minute a config): ms per step,
  samples/s, peak GPU memory. It ends with the ``FAST_DEFAULTS["cuda"]`` entry these figures
  call for (``vidseg.accel``).
- ``busy``: two epochs of ``vidseg.train.loop.fit`` on the small config, with the masks on the GPU and
  with the pinned prefetch: the share of the epoch's wall time the GPU is busy (CUDA events around
  each step), samples/s, peak memory.
- ``packing``: 1, 2, 4 and 8 processes each running ``fit`` on the small config on one GPU, each
  capped at its share of the memory as Ray's fractional GPUs would give it: aggregate samples/s
  and trials/hour.
- ``memory``: the memory model (``vidseg.train.memory.estimate_peak_bytes``) against the measured
  peak of a training step, and the traced activations (``probe_activation_bytes``), for 12
  configurations across the ``full`` space.
- ``openstl`` (with ``--openstl``): our SimVP step against OpenSTL's on the same configs, device
  and precision, with both parameter counts.
- ``unet``: the UNet stage at width 64: frames/s of training and the GPU busy share.
- ``search`` (only when named; it needs a call of its own): ``search/run_search.py --profile full``
  on this GPU, in processes of its own with Ray and Optuna from the bundle that
  ``tests/bench/device_bundle.py`` makes and installs (this process still never imports them):
  16 trials of up to 6 epochs, 8 at a time as their memory shares allow, on 96 drawn train videos,
  FIFO by default (``--search-scheduler``) so that it also writes the learning-curve table
  (``curves-160x240.parquet`` beside the JSON, for ``python -m search.replay``). Trials/hour, the
  GPU's busy share while trials ran (NVML, twice a second), each trial's modelled peak against its
  measured one, OOM errors, and whether the report was written. Past 6 minutes, or earlier where
  ``--deadline`` calls for it, the search is stopped with SIGTERM (it saves; the figures are of the
  trials so far) and its learning-curve table is rebuilt from its trial folders
  (``python -m search.curves``).

It checks, first, this Python against the bundle's wheels, the GPU and its memory, free disk and
whether the bundle's folder can run Ray's programs (one line each, ``checks`` in the JSON). It
writes one JSON (``--out``; default ``$OUT/device_suite.json`` where ``$OUT`` is set, else
``results/device_suite.json``) after the checks, after every part and on SIGTERM (exit 143), and
prints a short table per part. ``--deadline`` seconds (450) is when the suite ends: past it the
remaining variants and parts are skipped, and the search part's cut-off leaves room before it to
stop the search and rebuild its table, so one call fits a device lease with time to spare.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vidseg.accel import autocast, bf16_dtype, cpu_has_bf16  # noqa: E402
from vidseg.data.shards import sha256_file, write_manifest, write_shard  # noqa: E402
from vidseg.train.config import TrainConfig  # noqa: E402
from vidseg.task import INPUT_FRAMES  # noqa: E402
from vidseg.train.loop import build_model, fit  # noqa: E402
from vidseg.train.model import compile_core  # noqa: E402
from vidseg.train.losses import compute_loss  # noqa: E402
from vidseg.train.memory import GIB, estimate_peak_bytes, parameter_count, probe_activation_bytes  # noqa: E402

BUNDLE = REPO / ".device-wheels"  # tests/bench/device_bundle.py's folder: bundle.json, installed.json
# The search part's stop, within the suite's deadline: SIGTERM's grace for the search to save and
# shut Ray down, then the curves rebuilt from its trial folders and the JSON (device, dry run)
STOP_GRACE_S = {"cuda": 60.0, "cpu": 20.0}
AFTER_STOP_S = {"cuda": 45.0, "cpu": 15.0}
MIN_SEARCH_S = {"cuda": 120.0, "cpu": 10.0}  # less time than this before the cut-off: the search is not started


class SuiteStopped(BaseException):
    """SIGTERM reached the suite (a device call at its limit): the JSON is written at once, then the parts unwind."""


PARTS = ("steps", "busy", "packing", "memory", "openstl", "unet", "search")
DEFAULT_PARTS = PARTS[:-1]  # search needs Ray and Optuna (tests/bench/device_bundle.py) and a call of its own
FRAMES = 22

# name: TrainConfig fields; the three step configs of the issue
STEP_CONFIGS = {
    "small 2/4/16/64 g2": dict(N_S=2, N_T=4, hid_S=16, hid_T=64, groups=2, loss="ce"),
    "paper ce 4/8/64/256 g1": dict(N_S=4, N_T=8, hid_S=64, hid_T=256, groups=1, loss="ce"),
    "gsta 4/8/64/256": dict(N_S=4, N_T=8, hid_S=64, hid_T=256, translator="gsta", loss="ce"),
}
# (name, amp, channels_last, compile, tf32)
VARIANTS = (
    ("fp32", False, False, False, False),
    ("fp32 + tf32", False, False, False, True),
    ("bf16", True, False, False, False),
    ("bf16 + channels_last", True, True, False, False),
    ("bf16 + compile", True, False, True, False),
)
# configurations across the full space for the memory model (batch in the dict)
MEMORY_CONFIGS = (
    dict(N_S=2, N_T=4, hid_S=16, hid_T=64, groups=2, loss="ce", batch_size=16),
    dict(N_S=2, N_T=4, hid_S=4, hid_T=32, groups=1, loss="mse", batch_size=32),
    dict(N_S=4, N_T=8, hid_S=64, hid_T=256, groups=1, loss="ce", batch_size=8),
    dict(N_S=4, N_T=8, hid_S=64, hid_T=256, groups=4, loss="mse", batch_size=16),
    dict(N_S=4, N_T=8, hid_S=16, hid_T=64, groups=4, loss="mse", batch_size=16),
    dict(N_S=8, N_T=16, hid_S=64, hid_T=512, groups=8, loss="mse", batch_size=8),
    dict(N_S=4, N_T=8, hid_S=64, hid_T=512, translator="gsta", loss="ce", batch_size=8),
    dict(N_S=2, N_T=4, hid_S=32, hid_T=128, translator="gsta", loss="weighted_ce", batch_size=16),
    dict(N_S=8, N_T=4, hid_S=32, hid_T=256, groups=2, loss="weighted_ce", batch_size=16),
    dict(N_S=4, N_T=16, hid_S=8, hid_T=128, groups=4, loss="ce", batch_size=32),
    dict(N_S=2, N_T=8, hid_S=64, hid_T=128, groups=1, loss="ce", batch_size=4, amp=False),
    dict(N_S=4, N_T=4, hid_S=16, hid_T=256, translator="gsta", loss="mse", batch_size=16, amp=False),
)


# ----------------------------------------------------------------------------------------------
# data, drawn on the spot


def draw_videos(count: int, size: tuple[int, int], seed: int) -> np.ndarray:
    """(count, 22, H, W) uint8 masks: 2-5 rectangles and discs of distinct classes per video, some at
    rest and some moving in straight lines, drawn back to front."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    masks = np.zeros((count, FRAMES, h, w), dtype=np.uint8)
    for v in range(count):
        for cls in rng.choice(np.arange(1, 49), size=rng.integers(2, 6), replace=False):
            radius = rng.uniform(0.04, 0.1) * h
            y, x = rng.uniform(radius, h - radius), rng.uniform(radius, w - radius)
            vy, vx = (rng.uniform(-1.5, 1.5, 2) * h / 160) if rng.random() < 0.6 else (0.0, 0.0)
            disc = rng.random() < 0.5
            for t in range(FRAMES):
                cy, cx = y + vy * t, x + vx * t
                inside = ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2) if disc else \
                    (np.abs(yy - cy) <= radius) & (np.abs(xx - cx) <= radius)
                masks[v, t][inside] = cls
    return masks


def write_shard_set(out: Path, size: tuple[int, int], counts: dict[str, int], seed: int = 0) -> Path:
    """A real shard set of drawn masks (the UNet's masks are the true ones: cost does not depend on them)."""
    out.mkdir(parents=True, exist_ok=True)
    splits, first = {}, 0
    for i, (split, n) in enumerate(counts.items()):
        masks = draw_videos(n, size, seed + i)
        ids = np.arange(first, first + n)
        first += n
        path = out / f"{split}-00000.arrow"
        labeled = split != "unlabeled"
        write_shard(path, split, ids, masks, masks if labeled else None, "drawn")
        splits[split] = {"frames": FRAMES, "labeled": labeled, "num_videos": n, "shards": [
            {"file": path.name, "video_ids": ids.tolist(), "num_videos": n, "bytes": path.stat().st_size,
             "sha256": sha256_file(path)}]}
    write_manifest(out, {"resolution": {"height": size[0], "width": size[1]}, "unet": {"sha256": "drawn"},
                         "splits": splits})
    return out


def write_frame_dataset(out: Path, size: tuple[int, int], counts: dict[str, int], seed: int = 0) -> Path:
    """Drawn videos in the competition's layout: PNG frames (the class palette, with noise) and mask.npy."""
    from PIL import Image

    from vidseg.data.classes import PALETTE

    rng = np.random.default_rng(seed)
    video_id = 0
    for i, (split, n) in enumerate(counts.items()):
        for masks in draw_videos(n, size, seed + 10 + i):
            folder = out / split / f"video_{video_id:05d}"
            folder.mkdir(parents=True, exist_ok=True)
            for t in range(FRAMES):
                image = PALETTE[masks[t]].astype(np.int16) + rng.integers(-12, 13, (*size, 3))
                Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"image_{t}.png")
            np.save(folder / "mask.npy", masks.astype(np.int64))
            video_id += 1
    return out


# ----------------------------------------------------------------------------------------------
# helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _set_tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def time_steps(model: torch.nn.Module, config: TrainConfig, size: tuple[int, int], batch: int, device: torch.device,
               amp: bool, channels_last: bool, compile_model: bool, warmup: int, steps: int) -> dict[str, Any]:
    """Median ms of fit's step (encode, forward, loss, backward, Adam) on drawn masks, and the peak memory."""
    torch.backends.cudnn.benchmark = True  # as in fit; the warm-up steps absorb its algorithm search
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    step_model = compile_core(model) if compile_model else model  # as fit compiles it
    masks = torch.from_numpy(draw_videos(batch, size, 1)).to(device)
    dtype = bf16_dtype(device, amp)
    model.train()
    times, first = [], None
    _free(device)
    for i in range(warmup + steps):
        _sync(device)
        started = time.perf_counter()
        with autocast(device, dtype):
            output = step_model(masks[:, :INPUT_FRAMES])
            loss = compute_loss(output, masks[:, INPUT_FRAMES:], config.loss, config.last_frame_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(device)
        elapsed = time.perf_counter() - started
        if i == 0:
            first = elapsed
        if i >= warmup:
            times.append(elapsed)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    median = statistics.median(times)
    del model, step_model, optimizer, output, loss, masks
    if compile_model:
        torch._dynamo.reset()
    _free(device)
    return {"ms_per_step": 1e3 * median, "samples_per_s": batch / median, "first_step_s": first,
            "peak_gib": None if peak is None else peak / GIB}


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


# ----------------------------------------------------------------------------------------------
# the parts


def part_steps(ctx: dict) -> dict:
    device, size, batch = ctx["device"], ctx["size"], ctx["batch"]
    rows = []
    for name, fields in ctx["step_configs"].items():
        config = TrainConfig(**fields, batch_size=batch)
        for variant, amp, channels_last, compile_model, tf32 in VARIANTS:
            if variant not in ctx["variants"]:
                continue
            if amp and bf16_dtype(device, True) is None:
                continue  # no native bf16 on this CPU
            if tf32 and device.type != "cuda":
                continue
            if compile_model and name not in ctx["compile"]:
                continue  # a cold compile costs about a minute a config: the small one stands for all
            if time.perf_counter() > ctx["deadline"]:
                rows.append({"config": name, "variant": variant, "skipped": "past the suite's deadline"})
                continue
            _set_tf32(tf32)
            torch.manual_seed(0)
            try:
                result = time_steps(build_model(config, *size), config, size, batch, device, amp, channels_last,
                                    compile_model, ctx["warmup"], ctx["steps"])
            except Exception as err:  # one variant's failure (out of memory, a compiler missing) costs only its row
                result = {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]}
                torch._dynamo.reset()
                _free(device)
            finally:
                _set_tf32(False)
            rows.append({"config": name, "variant": variant, "batch": batch,
                         "parameters": parameter_count(config), **result})
            print(f"  {name:<24} {variant:<22} {_fmt(result.get('ms_per_step')):>9} ms  "
                  f"{_fmt(result.get('samples_per_s')):>8} samples/s  peak {_fmt(result.get('peak_gib'), '.2f')} GiB",
                  flush=True)
    return {"rows": rows, "recommended_defaults": recommend(rows)}


def recommend(rows: list[dict]) -> dict[str, bool | None]:
    """A speed setting becomes the device's default only where it is faster on every config measured;
    None where it was not measured against its base (``--variants`` left one out)."""
    def ms(config: str, variant: str) -> float | None:
        return next((r.get("ms_per_step") for r in rows if r["config"] == config and r["variant"] == variant), None)

    configs = sorted({r["config"] for r in rows})

    def faster(variant: str, base: str) -> bool | None:
        pairs = [(ms(c, variant), ms(c, base)) for c in configs]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        return all(a < b for a, b in pairs) if pairs else None

    return {"channels_last": faster("bf16 + channels_last", "bf16"), "compile": faster("bf16 + compile", "bf16"),
            "tf32": faster("fp32 + tf32", "fp32")}


def part_busy(ctx: dict) -> dict:
    rows = []
    for on_device in (True, False):
        config = TrainConfig(**ctx["step_configs"][ctx["small"]], batch_size=ctx["batch"], epochs=2,
                             data_on_device=on_device, device=str(ctx["device"]))
        reports: list[dict] = []
        fit(config, ctx["shards"], reports.append)
        last = reports[-1]
        row = {"data_on_device": on_device, "samples_per_s": last["samples_per_second"],
               "epoch_s": last["epoch_seconds"], "gpu_busy_fraction": last.get("gpu_busy_fraction"),
               "peak_gib": last.get("peak_memory_gb"), "data_fraction": last["data_fraction"]}
        rows.append(row)
        print(f"  masks {'on the GPU' if on_device else 'pinned prefetch':<16} {row['samples_per_s']:>8.1f} samples/s  "
              f"GPU busy {_fmt(row['gpu_busy_fraction'], '.1%')}  epoch {row['epoch_s']:.2f} s", flush=True)
    return {"rows": rows}


def _packed_trial(args: tuple) -> dict:
    """One trial process, as Ray would start it on a fractional GPU: fit with its memory share."""
    shards, fields, budget_gb, epochs, device = args
    try:
        config = TrainConfig(**fields, epochs=epochs, device=device, memory_budget_gb=budget_gb)
        started = time.time()
        reports: list[dict] = []
        fit(config, shards, reports.append)
        return {"start": started, "end": time.time(), "epochs": len(reports)}
    except Exception:  # reported back to the parent, which prints it
        return {"error": traceback.format_exc(limit=3)}


def part_packing(ctx: dict) -> dict:
    device = ctx["device"]
    total_gb = torch.cuda.get_device_properties(device).total_memory / GIB if device.type == "cuda" else None
    fields = {**ctx["step_configs"][ctx["small"]], "batch_size": ctx["batch"]}
    rows, base = [], None
    _free(device)  # the parent's cached blocks would take from the children's shares
    spawn = mp.get_context("spawn")
    for processes in ctx["packing"]:
        if time.perf_counter() > ctx["deadline"]:
            rows.append({"processes": processes, "skipped": "past the suite's deadline"})
            continue
        budget = None if total_gb is None else (total_gb - 1.0) / processes  # 1 GiB left to the parent
        jobs = [(str(ctx["shards"]), fields, budget, ctx["packing_epochs"], str(device))] * processes
        with spawn.Pool(processes) as pool:  # a child that dies hard must not hang the suite
            try:
                results = pool.map_async(_packed_trial, jobs).get(timeout=ctx["packing_timeout"])
            except mp.TimeoutError:
                results = [{"error": f"no answer within {ctx['packing_timeout']} s (a process died?)"}]
        errors = [r["error"] for r in results if "error" in r]
        if errors:
            print(f"  {processes} processes: failed\n{errors[0]}", flush=True)
            rows.append({"processes": processes, "error": errors[0].strip().splitlines()[-1]})
            continue
        wall = max(r["end"] for r in results) - min(r["start"] for r in results)
        trial_s = statistics.mean(r["end"] - r["start"] for r in results)
        samples = sum(r["epochs"] for r in results) * ctx["shard_counts"]["train"]
        row = {"processes": processes, "memory_share_gb": budget, "wall_s": wall,
               "aggregate_samples_per_s": samples / wall,
               "trials_per_hour": processes * 3600 / wall, "mean_trial_s": trial_s}
        if processes == 1:
            base = row["trials_per_hour"]
        row["speedup"] = row["trials_per_hour"] / base if base else None
        rows.append(row)
        print(f"  {processes} processes: {row['aggregate_samples_per_s']:>8.1f} samples/s, "
              f"{row['trials_per_hour']:>7.1f} trials/h ({_fmt(row['speedup'], '.2f')}x one)", flush=True)
    return {"rows": rows, "epochs_per_trial": ctx["packing_epochs"]}


def part_memory(ctx: dict) -> dict:
    device, size = ctx["device"], ctx["size"]
    rows = []
    for fields in ctx["memory_configs"]:
        config = TrainConfig(**fields)
        batch = config.batch_size
        estimate = estimate_peak_bytes(config, size, batch)
        traced = probe_activation_bytes(config, size, batch)
        measured = None
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # as in fit; the first step's algorithm search is excluded
            model = build_model(config, *size).to(device)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            masks = torch.from_numpy(draw_videos(batch, size, 2)).to(device)
            dtype = bf16_dtype(device, config.amp)
            try:
                for step in range(2):
                    optimizer.zero_grad(set_to_none=True)  # as in fit: the last step's gradients are gone
                    if step == 1:
                        _sync(device)
                        torch.cuda.reset_peak_memory_stats(device)
                    with autocast(device, dtype):
                        output = model(masks[:, :INPUT_FRAMES])
                        loss = compute_loss(output, masks[:, INPUT_FRAMES:], config.loss, config.last_frame_weight)
                    loss.backward()
                    optimizer.step()
                    del output, loss
                _sync(device)
                measured = torch.cuda.max_memory_allocated(device) - masks.numel()
            except torch.cuda.OutOfMemoryError:
                measured = float("nan")
            del model, optimizer, masks
            _free(device)
        row = {**fields, "parameters": parameter_count(config), "estimate_gib": estimate / GIB,
               "traced_activations_gib": traced / GIB,
               "measured_gib": None if measured is None else measured / GIB,
               "reserved_gib": torch.cuda.max_memory_reserved(device) / GIB if device.type == "cuda" else None,
               "estimate_over_measured": None if not measured else estimate / measured}
        rows.append(row)
        label = "/".join(str(fields[k]) for k in ("N_S", "N_T", "hid_S", "hid_T"))
        print(f"  {label:<14} {fields.get('translator', 'incep'):<5} {fields['loss']:<11} b{batch:<3} "
              f"estimate {row['estimate_gib']:6.2f} GiB  measured {_fmt(row['measured_gib'], '6.2f')} GiB  "
              f"ratio {_fmt(row['estimate_over_measured'], '.2f')}", flush=True)
    ratios = [r["estimate_over_measured"] for r in rows if r["estimate_over_measured"]]
    return {"rows": rows, "worst_ratio": max(ratios, key=lambda r: abs(r - 1)) if ratios else None,
            "within_25_percent": all(0.75 <= r <= 1.25 for r in ratios) if ratios else None}


# OpenSTL, loaded from a checkout without its package __init__ files (they import much more than
# SimVP needs). This is our own loader; OpenSTL's code stays in the checkout.
def build_openstl_simvp(path: str, in_shape, hid_S: int, hid_T: int, N_S: int, N_T: int, model_type: str,
                        groups: int) -> torch.nn.Module:
    import importlib
    import types

    root = os.path.join(os.path.abspath(path), "openstl")
    if not os.path.isfile(os.path.join(root, "models", "simvp_model.py")):
        raise FileNotFoundError(f"no openstl/models/simvp_model.py under {path!r}")
    if "openstl.models.simvp_model" not in sys.modules:
        for name, sub in (("openstl", ""), ("openstl.modules", "modules"), ("openstl.models", "models")):
            package = types.ModuleType(name)
            package.__path__ = [os.path.join(root, sub) if sub else root]  # submodules load, __init__.py does not
            sys.modules[name] = package
        try:
            importlib.import_module("timm.layers")
        except ImportError:  # SimVP only calls timm's DropPath and trunc_normal_: lend stand-ins
            sys.modules.update(_timm_stand_ins())
        blocks = importlib.import_module("openstl.modules.simvp_modules")
        sys.modules["openstl.modules"].__dict__.update({k: v for k, v in vars(blocks).items() if not k.startswith("_")})
        importlib.import_module("openstl.models.simvp_model")
    simvp = sys.modules["openstl.models.simvp_model"]
    init = simvp.MidIncepNet.__init__  # SimVP_Model passes no groups: its IncepU always uses the default 8
    defaults = init.__defaults__
    init.__defaults__ = defaults[:-1] + (groups,)
    try:
        return simvp.SimVP_Model(tuple(in_shape), hid_S=hid_S, hid_T=hid_T, N_S=N_S, N_T=N_T, model_type=model_type,
                                 mlp_ratio=8.0, drop=0.0, drop_path=0.0, spatio_kernel_enc=3, spatio_kernel_dec=3)
    finally:
        init.__defaults__ = defaults


def _timm_stand_ins() -> dict:
    import types

    from torch import nn

    class DropPath(nn.Module):
        def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
            super().__init__()
            self.drop_prob = drop_prob

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.drop_prob == 0.0 or not self.training:
                return x
            keep = 1.0 - self.drop_prob
            return x * x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep).div_(keep)

    class Absent(nn.Module):
        def __init__(self, *args, **kwargs) -> None:
            raise ImportError("timm is not installed")

    layers = types.ModuleType("timm.layers")
    layers.DropPath, layers.trunc_normal_ = DropPath, nn.init.trunc_normal_
    layers.to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
    modules = {"timm": types.ModuleType("timm"), "timm.layers": layers, "timm.models": types.ModuleType("timm.models")}
    for name, attrs in {"convnext": ["ConvNeXtBlock"], "mlp_mixer": ["MixerBlock"], "vision_transformer": ["Block"],
                        "swin_transformer": ["SwinTransformerBlock", "window_partition", "window_reverse"]}.items():
        modules[f"timm.models.{name}"] = types.ModuleType(f"timm.models.{name}")
        for attr in attrs:
            setattr(modules[f"timm.models.{name}"], attr, Absent)
    return modules


def part_openstl(ctx: dict) -> dict:
    if not ctx["openstl"]:
        print("  skipped: no --openstl PATH", flush=True)
        return {"skipped": "no --openstl PATH"}
    device, size, batch = ctx["device"], ctx["size"], ctx["batch"]
    amp = bf16_dtype(device, True) is not None
    rows = []
    for name, fields in ctx["step_configs"].items():
        if name.startswith("paper"):
            continue  # its 120M-parameter IncepU at groups 1 adds little beside the small one
        config = TrainConfig(**fields, batch_size=batch)
        model_type = "gSTA" if config.translator == "gsta" else "IncepU"
        theirs = EncodedInputs(build_openstl_simvp(ctx["openstl"], (INPUT_FRAMES, config.channels, *size), config.hid_S,
                                                   config.hid_T, config.N_S, config.N_T, model_type, config.groups),
                               config.loss)
        for who, model in (("ours", build_model(config, *size)), ("OpenSTL", theirs)):
            params = sum(p.numel() for p in model.parameters())
            result = time_steps(model, config, size, batch, device, amp, False, False, ctx["warmup"], ctx["steps"])
            rows.append({"config": name, "model": who, "parameters": params, **result})
            print(f"  {name:<24} {who:<8} {params / 1e6:7.2f}M params  {result['ms_per_step']:>9.1f} ms  "
                  f"{result['samples_per_s']:>8.1f} samples/s  peak {_fmt(result['peak_gib'], '.2f')} GiB", flush=True)
    return {"rows": rows, "precision": "bf16" if amp else "fp32"}


class EncodedInputs(torch.nn.Module):
    """OpenSTL's SimVP reads encoded frames; ours (``MaskPredictor``) reads integer masks and encodes
    them itself. This encodes them the same way (one-hot, or ids for mse, in the autocast dtype)."""

    def __init__(self, model: torch.nn.Module, loss: str) -> None:
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        from vidseg.train.codec import encode_inputs

        kind = masks.device.type
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else torch.float32
        return self.model(encode_inputs(masks, self.loss, dtype))


# ----------------------------------------------------------------------------------------------
# search: a real Ray Tune search with Optuna, in processes of its own (this one never imports Ray)

SEARCH_NAME = "device-search"
SUITE_KEEPS_GB = 1.5  # GiB of the GPU left to this process (its context) when the search packs the trials
PROBE = "import json, optuna, ray; print(json.dumps({'ray': ray.__version__, 'ray_path': ray.__file__, 'optuna': optuna.__version__}))"


class GpuSampler:
    """The GPU's utilisation (NVML's share of time a kernel ran) and memory in use, twice a second,
    in a thread; nothing where NVML is absent (the CPU dry run)."""

    def __init__(self, interval_s: float = 0.5) -> None:
        import threading

        self.samples: list[tuple[float, float, float]] = []  # (time, busy fraction, GiB in use)
        self.why_none: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)

    def _run(self, interval_s: float) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception as err:  # no NVML: the figure stays empty, with why
            self.why_none = f"no NVML ({type(err).__name__}: {err})"
            return
        while not self._stop.wait(interval_s):
            busy = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100
            used = pynvml.nvmlDeviceGetMemoryInfo(handle).used / GIB
            self.samples.append((time.time(), busy, used))

    def __enter__(self) -> "GpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def busy_share(self, start: float, end: float) -> float | None:
        inside = [busy for t, busy, _ in self.samples if start <= t <= end]
        return statistics.mean(inside) if inside else None

    def peak_used_gib(self) -> float | None:
        return max((used for _, _, used in self.samples), default=None)


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a stop
            pass
    return rows


def search_trials(experiment: Path) -> list[dict]:
    """Each trial folder's reports (Ray Tune's result.json) and error, reduced to what the part reports."""
    import csv

    board = {}
    if (experiment / "leaderboard.csv").is_file():
        with open(experiment / "leaderboard.csv", newline="") as f:
            board = {row["trial_id"]: row for row in csv.DictReader(f)}
    trials = []
    for result in sorted(experiment.glob("*/result.json")):
        reports = [r for r in _read_jsonl(result) if "epoch" in r]
        error_file = result.parent / "error.txt"  # Ray Tune's, for a trial that raised
        error = error_file.read_text(errors="replace") if error_file.is_file() else ""
        if not reports and not error:
            continue
        last = reports[-1] if reports else {}
        trial_id = last.get("trial_id") or result.parent.name
        peaks = [r["peak_memory_gb"] for r in reports if r.get("peak_memory_gb") is not None]
        planned = last.get("planned_peak_gb")
        start = last["timestamp"] - last["time_total_s"] if "time_total_s" in last else None
        trials.append({
            "trial": result.parent.name, "trial_id": trial_id, "status": board.get(trial_id, {}).get("status"),
            "epochs": sum(1 for r in reports if r.get("val_iou") == r.get("val_iou")),  # NaN: an end without an epoch
            "best_val_iou": max((r["val_iou"] for r in reports if r.get("val_iou") == r.get("val_iou")), default=None),
            "gpu_share": last.get("gpu_share"), "planned_peak_gib": planned, "budget_gib": last.get("memory_budget_gb"),
            "peak_gib": max(peaks) if peaks else None,
            "peak_over_planned": max(peaks) / planned if peaks and planned else None,
            "start": start, "end": last.get("timestamp"), "seconds": last.get("time_total_s"),
            "oom": "out of memory" in error.lower() or "outofmemoryerror" in error.lower(),
            "error": error.strip().splitlines()[-1][:300] if error.strip() else None,
        })
    return trials


def _wait_for_search(process, cut_off: float, experiment: Path, epochs: int | None) -> int:
    """The search's exit code; raises TimeoutExpired ("cut-off") past ``cut_off`` (monotonic), or
    ("epochs") once its trials have reported ``epochs`` epochs in all."""
    import subprocess

    while True:
        try:
            return process.wait(timeout=max(0.0, min(0.5, cut_off - time.monotonic())))
        except subprocess.TimeoutExpired:
            if time.monotonic() >= cut_off:
                raise subprocess.TimeoutExpired(process.args, 0, output="cut-off") from None
            if epochs is not None and sum(1 for result in experiment.glob("*/result.json") for r in _read_jsonl(result)
                                          if r.get("epoch", 0) >= 1) >= epochs:
                raise subprocess.TimeoutExpired(process.args, 0, output="epochs") from None


def part_search(ctx: dict) -> dict:
    """``search/run_search.py`` on this machine's GPU: Ray Tune, Optuna's TPE, trials packed by their
    memory shares, the report; then its figures from the trial folders and the GPU's samples."""
    import shutil
    import signal
    import subprocess

    plan = ctx["search"]
    site = ctx.get("bundle_site")  # where device_bundle.py install put Ray and Optuna
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH"), site])])}
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    if probe.returncode:
        raise RuntimeError("Ray and Optuna do not import here: make the bundle with tests/bench/device_bundle.py, carry "
                           f".device-wheels, and run its install step first ({probe.stderr.strip().splitlines()[-1:]})")
    versions = json.loads(probe.stdout.strip().splitlines()[-1])
    print(f"  Ray {versions['ray']} ({versions['ray_path']}), Optuna {versions['optuna']}", flush=True)
    work = Path(ctx["tmp"]) / "search"
    shards = write_shard_set(work / "shards", ctx["size"], plan["counts"], seed=3)
    storage = work / "results"
    command = [sys.executable, str(REPO / "search" / "run_search.py"), "--shards", str(shards), "--storage", str(storage),
               "--name", SEARCH_NAME, "--profile", plan["profile"], "--scheduler", ctx["search_scheduler"],
               "--num-samples", str(plan["num_samples"]), "--max-epochs", str(plan["max_epochs"]),
               "--max-concurrent", str(plan["max_concurrent"]), "--seed", "0"]
    device = ctx["device"]
    if device.type == "cuda":  # this process keeps its CUDA context (and cuDNN's): the trials pack into the rest
        _free(device)
        total_gb = torch.cuda.get_device_properties(device).total_memory / GIB
        command += ["--gpu-memory-gb", f"{total_gb - SUITE_KEEPS_GB:.1f}"]
    print(f"  {' '.join(command[1:])}", flush=True)
    grace, after = STOP_GRACE_S[device.type], AFTER_STOP_S[device.type]
    # the cut-off leaves, before the suite's deadline, SIGTERM's grace and the time to rebuild the curves
    timeout = min(plan["timeout"], ctx["deadline"] - time.perf_counter() - grace - after)
    if timeout < MIN_SEARCH_S[device.type]:
        return {"skipped": f"{max(timeout, 0):.0f} s of search left before the deadline, under the "
                           f"{MIN_SEARCH_S[device.type]:.0f} s worth a start", "versions": versions}
    print(f"  cut-off after {timeout:.0f} s (then up to {grace:.0f} s to stop, {after:.0f} s for the curves)", flush=True)
    log_path = work / "search.log"
    started = time.time()
    cut = None
    with GpuSampler() as gpu, open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work,
                                   start_new_session=True)  # its Ray processes in its group, for a last resort
        try:
            code = _wait_for_search(process, time.monotonic() + timeout, storage / SEARCH_NAME, ctx["search_cut_epochs"])
        except (subprocess.TimeoutExpired, SuiteStopped) as err:  # stopped as SIGTERM stops it: saved, resumable
            why = ("the suite was terminated" if isinstance(err, SuiteStopped) else
                   "the cut-off" if getattr(err, "output", None) == "cut-off" else f"{ctx['search_cut_epochs']} epochs reported")
            cut = f"stopped by SIGTERM after {time.time() - started:.0f} s ({why})"
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=grace if not isinstance(err, SuiteStopped) else min(grace, 15))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                code = process.wait()
            terminated = isinstance(err, SuiteStopped)
        else:
            terminated = False
    wall = time.time() - started
    log_text = log_path.read_text(errors="replace")
    experiment = storage / SEARCH_NAME
    trials = search_trials(experiment)
    ran = [t for t in trials if t["epochs"] and t["start"] is not None]
    first = min((t["start"] for t in ran), default=started)
    last = max((t["end"] for t in ran), default=time.time())
    window = max(last - first, 1e-9)
    shares = [t for t in ran if t["peak_over_planned"] is not None]
    report = {
        "command": " ".join(command[1:]), "exit_code": code, "cut": cut, "versions": versions,
        "profile": plan["profile"], "scheduler": ctx["search_scheduler"], "counts": plan["counts"],
        "search_wall_s": wall, "trials_window_s": window if ran else None,
        "trials": len(trials), "trials_ran": len(ran), "epochs": sum(t["epochs"] for t in ran),
        "trials_per_hour": len(ran) * 3600 / window if ran else None,
        "epochs_per_hour": sum(t["epochs"] for t in ran) * 3600 / window if ran else None,
        "gpu_busy_share": gpu.busy_share(first, last), "gpu_busy_share_search": gpu.busy_share(started, time.time()),
        "gpu_peak_used_gib": gpu.peak_used_gib(), "gpu_samples": len(gpu.samples), "gpu_sampler": gpu.why_none,
        "max_concurrent_seen": max_overlap(ran),
        "max_peak_over_planned": max((t["peak_over_planned"] for t in shares), default=None),
        "over_plan": sum(1 for t in shares if t["peak_over_planned"] > 1),
        "oom": sum(1 for t in trials if t["oom"]), "errors": sorted({t["error"] for t in trials if t["error"]}),
        "report_written": (experiment / "report.md").is_file(), "leaderboard": (experiment / "leaderboard.csv").is_file(),
        "best_val_iou": max((t["best_val_iou"] for t in ran if t["best_val_iou"] is not None), default=None),
        "rows": trials, "log_tail": log_text[-3000:],
    }
    curves = experiment / "curves.parquet"
    if terminated:  # the figures so far, in the JSON the suite writes as it stops
        ctx["report"]["parts"]["search"] = report
        raise SuiteStopped()
    if not curves.is_file() and (experiment / "search.json").is_file():  # cut short: rebuilt from the trial folders
        # the reserve at least, and whatever the search left of the deadline (its imports alone took 6 s on an
        # idle 2-core CPU, over 10 s beside another test)
        left = max(10.0, after - 5, ctx["deadline"] - time.perf_counter() - 5)
        rebuilt = subprocess.run([sys.executable, "-m", "search.curves", str(experiment)], capture_output=True,
                                 text=True, env=env, cwd=REPO, timeout=left)
        report["curves_rebuilt"] = (rebuilt.stdout.strip() or rebuilt.stderr.strip()).splitlines()[-1:] or None
        print(f"  curves rebuilt with python -m search.curves: exit {rebuilt.returncode}", flush=True)
    if curves.is_file():  # the learning-curve table, for python -m search.replay (kept out of git)
        table = ctx["out"].parent / f"curves-{ctx['size'][0]}x{ctx['size'][1]}.parquet"
        table.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(curves, table.with_suffix(".tmp"))
        table.with_suffix(".tmp").replace(table)
        report["curves"] = str(table)
    print(f"  exit {code}{f' ({cut})' if cut else ''} after {wall:.0f} s; {len(ran)} trials ran "
          f"({report['epochs']} epochs, up to {report['max_concurrent_seen']} at once): "
          f"{_fmt(report['trials_per_hour'])} trials/h; GPU busy {_fmt(report['gpu_busy_share'], '.1%')}; "
          f"peak/planned up to {_fmt(report['max_peak_over_planned'], '.2f')} ({report['over_plan']} over); "
          f"{report['oom']} OOM; report.md {'written' if report['report_written'] else 'MISSING'}", flush=True)
    if code not in (0, 143) or (code == 0 and not report["report_written"]):
        report["error"] = (f"the search ended with exit {code}{', no report.md' if not report['report_written'] else ''}: "
                           + " | ".join(log_text.strip().splitlines()[-3:]))
    return report


def max_overlap(trials: list[dict]) -> int:
    """The most trials whose runs overlapped in time."""
    events = sorted([(t["start"], 1) for t in trials] + [(t["end"], -1) for t in trials], key=lambda e: (e[0], e[1]))
    most = running = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def part_unet(ctx: dict) -> dict:
    from vidseg.segment.train import UNetConfig, train_unet

    device = ctx["device"]
    with tempfile.TemporaryDirectory(prefix="device_suite_unet_") as tmp:
        root = write_frame_dataset(Path(tmp) / "data", (160, 240), ctx["unet_counts"])
        config = UNetConfig(width=ctx["unet_width"], size=ctx["unet_size"], epochs=ctx["unet_epochs"],
                            batch_size=ctx["unet_batch"], crop=ctx["unet_crop"], foreground_crops=0.5 if ctx["unet_crop"] else 0.0,
                            num_workers=ctx["unet_workers"])
        result = train_unet(root, Path(tmp) / "unet", config, device=str(device), progress=False)
    rows = [{"epoch": r["epoch"], "seconds": r["seconds"], "frames_per_second": r.get("frames_per_second"),
             "gpu_busy_fraction": r.get("gpu_busy_fraction"), "val_iou": r["val_iou"]} for r in result.history]
    for row in rows:
        print(f"  epoch {row['epoch']}: {_fmt(row['frames_per_second'])} frames/s  GPU busy "
              f"{_fmt(row['gpu_busy_fraction'], '.1%')}  ({row['seconds']:.1f} s)", flush=True)
    return {"rows": rows, "width": ctx["unet_width"], "size": list(ctx["unet_size"]), "crop": ctx["unet_crop"]}


# ----------------------------------------------------------------------------------------------


def context(args: argparse.Namespace) -> dict:
    device = torch.device("cpu" if args.dry_run else "cuda")
    if args.dry_run:  # every part at toy size, on the CPU
        tiny = {"tiny 2/2/4/16 g1": dict(N_S=2, N_T=2, hid_S=4, hid_T=16, groups=1, loss="ce"),
                "tiny gsta 2/2/4/16": dict(N_S=2, N_T=2, hid_S=4, hid_T=16, translator="gsta", loss="ce")}
        return {"device": device, "size": (32, 48), "batch": 2, "warmup": 1, "steps": 2,
                "compile": {"tiny 2/2/4/16 g1"} if args.compile else set(), "packing_timeout": 300,
                "step_configs": tiny, "small": "tiny 2/2/4/16 g1",
                "memory_configs": [{**c, "batch_size": 2} for c in MEMORY_CONFIGS[:2]],
                "shard_counts": {"train": 4, "val": 2}, "packing": (1, 2), "packing_epochs": 1,
                "unet_counts": {"train": 2, "val": 1}, "unet_width": 4, "unet_size": (80, 120), "unet_epochs": 1,
                "unet_batch": 4, "unet_crop": (48, 64), "unet_workers": 0, "openstl": args.openstl,
                "search": {"profile": "smoke", "counts": {"train": 4, "val": 2, "hidden": 2}, "num_samples": 2,
                           "max_epochs": 2, "max_concurrent": 2, "timeout": 300}}
    return {"device": device, "size": (160, 240), "batch": 8, "warmup": 3, "steps": 10,
            "compile": {"small 2/4/16/64 g2"}, "packing_timeout": 240,
            "step_configs": STEP_CONFIGS, "small": "small 2/4/16/64 g2", "memory_configs": list(MEMORY_CONFIGS),
            "shard_counts": {"train": 96, "val": 32}, "packing": (1, 2, 4, 8), "packing_epochs": 2,
            "unet_counts": {"train": 24, "val": 4}, "unet_width": 64, "unet_size": (160, 240), "unet_epochs": 2,
            "unet_batch": 16, "unet_crop": (96, 128), "unet_workers": min(8, os.cpu_count() or 1),
            "openstl": args.openstl,
            # about 6 minutes: 16 trials of the full space, 8 at a time by their memory shares
            "search": {"profile": "full", "counts": {"train": 96, "val": 32, "hidden": 8}, "num_samples": 16,
                       "max_epochs": 6, "max_concurrent": 8, "timeout": 360}}


def _bundle_record(folder: Path, name: str) -> dict | None:
    try:
        return json.loads((folder / name).read_text())
    except (OSError, ValueError):
        return None


def startup_checks(ctx: dict, parts: list[str]) -> dict[str, str]:
    """One line each, before the first part: this Python against the bundle's wheels, the GPU and
    its memory, free disk, and whether the folder the bundle was installed into can run Ray's
    programs (a temporary folder may be mounted noexec: ``device_bundle.py install`` then falls
    back to the working tree, and this part finds it there). Sets ``ctx["bundle_site"]``."""
    import shutil
    import subprocess

    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    checks = {}
    folder = ctx["bundle"]
    bundle, installed = _bundle_record(folder, "bundle.json"), _bundle_record(folder, "installed.json")
    needed = "search" in parts
    if bundle is None:
        checks["python"] = f"CPython {platform.python_version()}; no bundle in {folder}" + (
            " (the search part needs one: python tests/bench/device_bundle.py)" if needed else " (not needed)")
    else:
        ok = bundle.get("python") == here
        checks["python"] = (f"CPython {platform.python_version()}; the bundle's wheels are for {bundle.get('python')}: "
                            + ("ok" if ok else "MISMATCH, the search part cannot import Ray"))
    device = ctx["device"]
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        checks["gpu"] = f"{torch.cuda.get_device_name(device)}: {total / GIB:.1f} GiB, {free / GIB:.1f} GiB free"
    else:
        checks["gpu"] = "none: a dry run on the CPU"
    disks = []
    for label, folder in (("temp", tempfile.gettempdir()), ("repository", str(REPO))):
        usage = shutil.disk_usage(folder)
        disks.append(f"{label} {folder}: {usage.free / GIB:.1f} GiB free of {usage.total / GIB:.1f}")
    checks["disk"] = "; ".join(disks)
    if installed is None:
        checks["bundle_site"] = ("not installed (python3 tests/bench/device_bundle.py install)" if needed
                                 else "not installed (not needed)")
    else:
        site = Path(installed["target"])
        probe = site / "ray" / "core" / "src" / "ray" / "gcs" / "gcs_server"
        if not probe.is_file():
            checks["bundle_site"] = f"{site}: no Ray there ({probe.name} missing)"
        else:
            try:  # Ray's GCS server, as Ray starts it: a noexec mount refuses it
                runs = subprocess.run([str(probe), "--help"], capture_output=True, timeout=60).returncode in (0, 1)
            except (OSError, subprocess.TimeoutExpired):
                runs = False
            checks["bundle_site"] = f"{site}: Ray {installed.get('ray')}, Optuna {installed.get('optuna')}; " + (
                "its programs run" if runs else "its programs cannot run there (noexec?)")
            ctx["bundle_site"] = str(site)
    for name, line in checks.items():
        print(f"  check {name}: {line}", flush=True)
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/bench/device_suite.py", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="every part at toy size on the CPU (no GPU needed)")
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS),
                        help=f"comma-separated, of {', '.join(PARTS)} (default: all but search)")
    parser.add_argument("--variants", default=",".join(v[0] for v in VARIANTS),
                        help=f"steps: comma-separated, of {', '.join(v[0] for v in VARIANTS)} (default: all)")
    parser.add_argument("--bundle", type=Path, default=BUNDLE,
                        help=f"search: the folder of tests/bench/device_bundle.py's wheels, whose installed.json "
                             f"says where its install step put Ray and Optuna (default {BUNDLE})")
    parser.add_argument("--search-epochs", type=int, default=None,
                        help="search: epochs per trial (default 6 on a GPU, 2 in a dry run); past its cut-off "
                             "within --deadline the search is stopped, and its curves rebuilt from its trial folders")
    parser.add_argument("--search-cut-at-epochs", type=int, default=None, metavar="N",
                        help="search: cut it as at its cut-off once its trials have reported N epochs in all "
                             "(default: only the cut-off)")
    parser.add_argument("--search-scheduler", choices=("fifo", "asha"), default="fifo",
                        help="search: fifo (the default) runs every trial to the end and so also writes the "
                             "learning-curve table for python -m search.replay; asha stops trials early")
    parser.add_argument("--openstl", default=None, help="a copy of github.com/chengtan9907/OpenSTL, for the openstl part")
    parser.add_argument("--compile", action="store_true", help="with --dry-run: also the torch.compile variant (slow on CPU)")
    parser.add_argument("--deadline", type=float, default=450.0,
                        help="seconds by which the suite ends (default 450): past it the remaining parts and "
                             "variants are skipped, and the search part is cut early enough to stop, rebuild its "
                             "curves and write the JSON before it")
    default_out = Path(os.environ["OUT"]) / "device_suite.json" if os.environ.get("OUT") else REPO / "results" / "device_suite.json"
    parser.add_argument("--out", type=Path, default=default_out, help=f"the JSON report (default {default_out})")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        print(f"error: unknown part(s) {', '.join(unknown)}; valid: {', '.join(PARTS)}", file=sys.stderr)
        return 2
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - {v[0] for v in VARIANTS})
    if unknown:
        print(f"error: unknown variant(s) {', '.join(unknown)}; valid: {', '.join(v[0] for v in VARIANTS)}", file=sys.stderr)
        return 2
    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA device here; --dry-run runs every part on the CPU at toy size", file=sys.stderr)
        return 2
    if args.openstl and not (Path(args.openstl) / "openstl" / "models" / "simvp_model.py").is_file():
        print(f"error: {args.openstl}: not a copy of OpenSTL (no openstl/models/simvp_model.py)", file=sys.stderr)
        return 2
    for flag in ("search_epochs", "search_cut_at_epochs"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            print(f"error: --{flag.replace('_', '-')} is {getattr(args, flag)}, but must be >= 1", file=sys.stderr)
            return 2
    ctx = context(args)
    if args.search_epochs is not None:
        ctx["search"]["max_epochs"] = args.search_epochs
    ctx["bundle"], ctx["search_cut_epochs"] = args.bundle, args.search_cut_at_epochs
    ctx["deadline"] = time.perf_counter() + args.deadline
    ctx["search_scheduler"], ctx["out"], ctx["variants"] = args.search_scheduler, args.out, set(variants)
    device = ctx["device"]
    machine = (f"{torch.cuda.get_device_name(device)}, {torch.cuda.get_device_properties(device).total_memory / GIB:.0f} GiB"
               if device.type == "cuda" else f"CPU ({platform.machine()}, {os.cpu_count()} cores, bf16 "
               f"{'native' if cpu_has_bf16() else 'absent'})")
    report: dict[str, Any] = {"device": machine, "torch": torch.__version__, "cuda": torch.version.cuda,
                              "dry_run": args.dry_run, "size": list(ctx["size"]), "parts": {}}
    print(f"device suite on {machine}, torch {torch.__version__}; {ctx['size'][0]}x{ctx['size'][1]}", flush=True)
    started = time.perf_counter()

    def write_report() -> None:  # atomically, after every part and on SIGTERM: a call cut short keeps its figures
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = args.out.with_suffix(".json.tmp")
        tmp_out.write_text(json.dumps(report, indent=1, default=str))
        tmp_out.replace(args.out)

    suite_pid = os.getpid()

    def on_sigterm(signum, frame) -> None:
        if os.getpid() != suite_pid:  # a forked child: its parent writes the report
            os._exit(128 + signum)
        report["stopped"] = f"SIGTERM after {time.perf_counter() - started:.0f} s"
        write_report()
        raise SuiteStopped()

    import signal

    signal.signal(signal.SIGTERM, on_sigterm)
    ctx["report"] = report
    failed = []
    try:
        report["checks"] = startup_checks(ctx, parts)
        write_report()
        run_parts(parts, ctx, report, failed, write_report)
    except SuiteStopped:
        report["seconds"] = time.perf_counter() - started
        write_report()
        print(f"stopped by SIGTERM after {report['seconds']:.0f} s; report: {args.out}", flush=True)
        return 143
    report["seconds"] = time.perf_counter() - started
    write_report()
    print(f"summary: {len(parts) - len(failed)} of {len(parts)} parts ran in {report['seconds']:.0f} s on {machine}"
          + (f"; failed: {', '.join(failed)}" if failed else "") + f"; report: {args.out}")
    return 1 if failed else 0


def run_parts(parts: list[str], ctx: dict, report: dict, failed: list[str], write_report) -> None:
    functions = {"steps": part_steps, "busy": part_busy, "packing": part_packing, "memory": part_memory,
                 "openstl": part_openstl, "unet": part_unet, "search": part_search}
    with tempfile.TemporaryDirectory(prefix="device_suite_") as tmp:
        ctx["tmp"] = tmp
        ctx["shards"] = write_shard_set(Path(tmp) / "shards", ctx["size"], ctx["shard_counts"])
        for part in parts:
            print(f"[{part}]", flush=True)
            if time.perf_counter() > ctx["deadline"]:
                print("  skipped: past the suite's deadline (--deadline)", flush=True)
                report["parts"][part] = {"skipped": "past the suite's deadline"}
                continue
            part_started = time.perf_counter()
            try:
                report["parts"][part] = functions[part](ctx)
                if "error" in report["parts"][part]:  # measured, but failed: the figures stay beside the error
                    failed.append(part)
            except Exception as err:  # one broken part must not cost the others their device time
                traceback.print_exc()
                report["parts"][part] = {"error": f"{type(err).__name__}: {err}"}
                failed.append(part)
            report["parts"][part]["seconds"] = time.perf_counter() - part_started
            write_report()  # after every part: a run cut short keeps what it measured


if __name__ == "__main__":
    raise SystemExit(main())
