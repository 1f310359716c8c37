"""The UNet's train step per frame: fp32 against bf16 autocast, NCHW against channels_last, and a
training window (``--crop``) against the whole frame.

    python tests/bench/bench_unet.py                    # width 16, 160x240 frames, 96x128 windows, batch 16
    python tests/bench/bench_unet.py --width 64 --batch-size 32 --device cuda

One step is what ``train_unet``'s inner loop does: forward under its autocast, class-weighted
cross-entropy, backward, Adam step. bf16 runs on CUDA, and on CPUs with native bf16 (AMX or
AVX512-BF16, ``vidseg.segment.train.cpu_has_bf16``); elsewhere its rows are skipped. The first step
is a warm-up; the median of the rest is reported. Not part of the tests.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from vidseg.task import NUM_CLASSES
from vidseg.models import UNet
from vidseg.segment.__main__ import _size  # the CLI's HxW parser, with its error message
from vidseg.segment.train import _autocast, cpu_has_bf16, pick_device


def step_ms(width: int, size: tuple[int, int], batch: int, bf16: bool, channels_last: bool,
            device: torch.device, steps: int) -> float:
    torch.manual_seed(0)
    model = UNet(3, NUM_CLASSES, bilinear=False, width=width).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.rand(batch, 3, *size, device=device)
    masks = torch.randint(0, NUM_CLASSES, (batch, *size), device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    weight = torch.ones(NUM_CLASSES, device=device)
    weight[0] = 0.1
    times = []
    for _ in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        with _autocast(device, bf16):
            loss = F.cross_entropy(model(images), masks, weight=weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:]) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--size", type=_size, default=(160, 240), help="whole frame, HxW (default 160x240)")
    parser.add_argument("--crop", type=_size, default=(96, 128), help="training window, HxW (default 96x128)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = pick_device(args.device)
    bf16_here = device.type == "cuda" or cpu_has_bf16()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, native bf16: {cpu_has_bf16()}")
    print(f"UNet width {args.width}, batch {args.batch_size}, on {where}")
    print(f"{'input':>10} {'bf16':>5} {'channels_last':>14} {'ms/step':>9} {'ms/frame':>9} {'x fp32 NCHW':>12}")
    figures = {}
    for size in (args.crop, args.size):
        base = None
        for bf16 in (False, True):
            if bf16 and not bf16_here:
                continue
            for channels_last in (False, True):
                ms = step_ms(args.width, size, args.batch_size, bf16, channels_last, device, args.steps)
                base = base or ms
                figures[size, bf16, channels_last] = ms / args.batch_size
                print(f"{size[0]:>4}x{size[1]:<5} {str(bf16):>5} {str(channels_last):>14} {ms:9.0f} "
                      f"{ms / args.batch_size:9.1f} {base / ms:12.2f}", flush=True)
    fast = (bf16_here, True)
    crop_ms, frame_ms = figures[(args.crop, *fast)], figures[(args.size, *fast)]
    slow = figures[(args.size, False, False)]
    print(f"summary: the training path (bf16={bf16_here}, channels_last) is {slow / frame_ms:.2f}x fp32 NCHW on "
          f"whole frames; a {args.crop[0]}x{args.crop[1]} window costs {crop_ms:.1f} ms against "
          f"{frame_ms:.1f} ms for a {args.size[0]}x{args.size[1]} frame ({crop_ms / frame_ms:.2f}x)")


if __name__ == "__main__":
    main()
