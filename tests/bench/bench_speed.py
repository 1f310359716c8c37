"""SimVP's train step time: fp32 eager against bf16, channels_last and torch.compile, per device.

    python tests/bench/bench_speed.py                      # CPU-sized: the paper's CE model, 40x60, batch 2
    python tests/bench/bench_speed.py --config small --size 40x60 --batch-size 8   # the demo's 2/4/16/64 ce
    python tests/bench/bench_speed.py --full               # the competition's 160x240, batch 8 (for a GPU)
    python tests/bench/bench_speed.py --no-compile         # skip the torch.compile variants

The model is the paper's final configuration (N_S 4, N_T 8, hid_S 64, hid_T 256, groups 1, loss ce;
``search.space.paper_configs``) or, with ``--config small``, 2/4/16/64 groups 2 ce, built with
``vidseg.train.loop.build_model``. One step is what ``fit``'s inner loop does: the model one-hot encodes
the random masks (``encode_inputs``, straight into the compute dtype), forward under ``fit``'s
autocast, ``compute_loss``, backward, Adam step; the host waits for the device once per step here
only to time it. The variants are what TrainConfig's speed flags do in ``fit``: channels_last,
``torch.compile``, and bf16 autocast (CUDA, and CPUs with native bf16; elsewhere its variants are
skipped). The results decide ``vidseg.accel.FAST_DEFAULTS``. Warm-up
steps are excluded; the median of the timed steps is reported, and the first step's extra time of a
compiled variant is reported separately as its compile time: from a fresh, empty Inductor cache
unless ``--warm-cache`` (a trial on a node that compiled the same model before gets the warm figure).
The variants run one after another, so a busy machine skews them unequally: compare min and max.
Not part of the tests.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import tempfile
import time

import torch

from search.space import paper_configs
from vidseg.accel import autocast, bf16_dtype
from vidseg.task import NUM_CLASSES
from vidseg.train.config import TrainConfig
from vidseg.task import INPUT_FRAMES
from vidseg.train.loop import build_model
from vidseg.train.losses import compute_loss

PAPER = "paper-ce-4_8_64_256_1"

SMALL = {"N_S": 2, "N_T": 4, "hid_S": 16, "hid_T": 64, "groups": 2, "loss": "ce"}

# (name, channels_last, compile, bf16 autocast); the bf16 variants need CUDA or a CPU with native bf16
VARIANTS = (
    ("eager fp32", False, False, False),
    ("eager + channels_last", True, False, False),
    ("compile fp32", False, True, False),
    ("bf16", False, False, True),
    ("bf16 + channels_last", True, False, True),
    ("bf16 + compile", False, True, True),
    ("bf16 + channels_last + compile", True, True, True),
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(config: TrainConfig, size: tuple[int, int], batch: int, device: torch.device, channels_last: bool,
            compile_model: bool, amp: bool, warmup: int, steps: int) -> dict:
    """Seconds of each step of one variant: the first, the other warm-up steps, and the timed ones."""
    torch.manual_seed(0)
    model = build_model(config, *size).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    step_model = torch.compile(model) if compile_model else model
    generator = torch.Generator().manual_seed(1)
    masks = torch.randint(0, NUM_CLASSES, (batch, INPUT_FRAMES, *size), generator=generator, dtype=torch.uint8).to(device)
    target = torch.randint(0, NUM_CLASSES, (batch, INPUT_FRAMES, *size), generator=generator).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    dtype = bf16_dtype(device, amp)
    times = []
    for _ in range(warmup + steps):
        _sync(device)
        started = time.perf_counter()
        with autocast(device, dtype):
            output = step_model(masks)
            loss = compute_loss(output, target, config.loss, config.last_frame_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(device)
        times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    del model, step_model, optimizer, output, loss
    if compile_model:
        torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    timed = times[warmup:]
    return {"first": times[0], "median": statistics.median(timed), "min": min(timed), "max": max(timed),
            "peak_bytes": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="160x240, batch 8, 20 timed steps (for a GPU)")
    parser.add_argument("--size", default=None, help="HxW (default 40x60; --full: 160x240)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 2; --full: 8")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 3; --full: 20)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first, the first included (default 1; --full: 5)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    parser.add_argument("--config", choices=("paper", "small"), default="paper",
                        help="paper: 4/8/64/256 groups 1 ce (default); small: 2/4/16/64 groups 2 ce")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    parser.add_argument("--warm-cache", action="store_true",
                        help="use the usual Inductor/Triton caches (default: a fresh empty one, so compile time is cold)")
    args = parser.parse_args()
    cache = None
    if not args.warm_cache:
        cache = tempfile.TemporaryDirectory(prefix="bench_speed_inductor_")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache.name
        os.environ["TRITON_CACHE_DIR"] = os.path.join(cache.name, "triton")
    size = tuple(int(v) for v in (args.size or ("160x240" if args.full else "40x60")).split("x"))
    batch = args.batch_size or (8 if args.full else 2)
    steps = args.steps or (20 if args.full else 3)
    warmup = args.warmup if args.warmup is not None else (5 if args.full else 1)
    if warmup < 1 or steps < 1:
        parser.error("--warmup and --steps must be >= 1 (the first step is never timed)")
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    point = paper_configs()[PAPER] if args.config == "paper" else SMALL
    config = TrainConfig.from_dict({**point, "batch_size": batch, "device": str(device)})
    params = sum(p.numel() for p in build_model(config, *size).parameters())

    if device.type == "cuda":
        machine = f"{torch.cuda.get_device_name(device)} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    else:
        machine = (f"CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
                   f"torch {torch.__version__})")
    print(f"device: {machine}")
    print(f"model: {PAPER if args.config == 'paper' else 'small'} (SimVP {point['N_S']}/{point['N_T']}/{point['hid_S']}/{point['hid_T']} groups "
          f"{point['groups']}, {NUM_CLASSES}-channel one-hot, {params / 1e6:.2f}M parameters); {size[0]}x{size[1]}, "
          f"batch {batch}; median of {steps} steps after {warmup} warm-up")

    rows = []
    for name, channels_last, compile_model, amp in VARIANTS:
        if amp and bf16_dtype(device, True) is None:
            continue  # no native bf16 here: fit runs fp32, so this variant equals its fp32 twin
        if compile_model and args.no_compile:
            continue
        print(f"  measuring {name} ...", flush=True)
        result = measure(config, size, batch, device, channels_last, compile_model, amp, warmup, steps)
        rows.append((name, compile_model, result))
    if cache is not None:
        print("  (compile times from an empty Inductor cache)")

    base = rows[0][2]["median"]
    gpu = device.type == "cuda"
    print()
    print(f"{'variant':<32} {'step ms':>9} {'min ms':>8} {'max ms':>8} {'samples/s':>10} {'speedup':>8} "
          f"{'compile s':>10}" + (f" {'peak GiB':>9}" if gpu else ""))
    for name, compiled, r in rows:
        compile_s = f"{r['first'] - r['median']:.1f}" if compiled else "-"
        print(f"{name:<32} {1e3 * r['median']:>9.1f} {1e3 * r['min']:>8.1f} {1e3 * r['max']:>8.1f} "
              f"{batch / r['median']:>10.2f} {base / r['median']:>7.2f}x {compile_s:>10}"
              + (f" {r['peak_bytes'] / 2**30:>9.2f}" if gpu else ""))
    best_name, _, best = min(rows, key=lambda row: row[2]["median"])
    print(f"summary: fastest is {best_name}, {1e3 * best['median']:.0f} ms per step of {batch} clips "
          f"({base / best['median']:.2f}x eager fp32's {1e3 * base:.0f} ms) on {machine.split(' (')[0]}")
    if cache is not None:
        cache.cleanup()


if __name__ == "__main__":
    main()
