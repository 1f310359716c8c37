"""What the compute device can do fast, and the settings that follow, decided per device by measurement.

``fast_defaults(device)`` gives the speed settings a trial uses where its config leaves them unset
(``None``). Each entry cites the benchmark that decided it; an unmeasured device keeps PyTorch's
own defaults. ``tests/bench/device_suite.py`` prints the table to put here for a GPU.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from vidseg.config import check_device

__all__ = ["cpu_has_bf16", "bf16_dtype", "autocast", "pick_device", "fast_defaults", "FAST_DEFAULTS", "step_timer",
           "finite_check_steps", "keep_freed_memory", "inductor_cache_per_capability"]


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX512-BF16), where autocast pays off.

    Measured on a 2-core Xeon with AMX, UNet width 16 on 96x128 crops: 29 ms a frame in fp32,
    14.5 ms in bf16 with channels_last. SimVP 2/4/16/64 ``ce`` at 40x60: see FAST_DEFAULTS.
    ATen held to AVX2 or below (``ATEN_CPU_CAPABILITY=avx2``, or a CPU without AVX512) has no bf16
    kernels, so that counts as none: ``ATEN_CPU_CAPABILITY=avx2`` imitates a CPU without bf16 whole.
    """
    if torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "NO AVX", "AVX2"):
        return False
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private torch.cpu helpers (2.x)
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def inductor_cache_per_capability() -> str:
    """Inductor's cache folder, one per ATen CPU capability: ``TORCHINDUCTOR_CACHE_DIR`` where the
    user set it to a folder of their own, else PyTorch's default folder suffixed with the capability
    (``..._avx512``; importing Inductor sets the variable to its default), set before the first compile. Inductor's cache keys leave ``ATEN_CPU_CAPABILITY`` out: SimVP
    compiled with ``ATEN_CPU_CAPABILITY=avx2`` (the imitation of a CPU without bf16) and then run
    without it, from the same cache, ends the process in a segmentation fault or an abort (torch
    2.14.1, a Zen 4). Returns the folder."""
    import os

    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    default, chosen = default_cache_dir(), os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if chosen is None or os.path.abspath(chosen) == os.path.abspath(default):
        chosen = f"{default}_{torch.backends.cpu.get_cpu_capability().lower().replace(' ', '_')}"
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = chosen
    return chosen


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc keep the memory that tensors free, for the tensors of the next step.

    By default glibc serves a block above its mmap threshold (at most 32 MiB) with a fresh ``mmap``
    and unmaps it when it is freed, and trims its heap's free top: every training step's large
    activations (a batch of 8 one-hot clips at 40x60 is 41 MiB) are mapped again, and each page
    faults on its first touch. On a 2-core AMD EPYC without bf16 that was 130,000 page faults a
    second per trial and 45% of its CPU time in the kernel; with no mmap and a 1 GiB trim
    threshold a gSTA 4/2/16/32 stem-2 step went from 115.6 to 55.2 ms a sample (2.1x), a gSTA
    2/8/16/32 one from 210 to 185 ms (docs/performance.md). The process keeps its peak heap
    instead. Once per process; False where the C library is not glibc (nothing to change)."""
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # malloc.h
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))


def bf16_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """``torch.bfloat16`` where autocast is asked for and the hardware has it (CUDA, or a CPU with
    native bf16); ``None`` for plain fp32."""
    if amp and (device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())):
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """bf16 autocast on ``device`` where ``dtype`` (from ``bf16_dtype``) says so, else a disabled one."""
    if dtype is not None:
        return torch.autocast(device.type, dtype=dtype)
    return torch.autocast(device.type, enabled=False)


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` (CUDA where there is one), ``cpu``, ``cuda`` or ``cuda:N``; a CUDA device always
    carries its index (the allocator's calls want one)."""
    check_device(device)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(device)


def step_timer(device: torch.device) -> tuple[Callable[[], None], Callable[[float], float | None]]:
    """``mark()`` at the start and at the end of each step, then ``busy(wall_seconds)``: the share of
    the wall time the GPU's stream spent between each pair of marks (CUDA events; gaps between
    kernels inside a step count as busy). None on other devices."""
    if device.type != "cuda":
        return (lambda: None), (lambda wall: None)
    events: list[torch.cuda.Event] = []

    def mark() -> None:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        events.append(event)

    def busy(wall: float) -> float | None:
        torch.cuda.synchronize(device)
        milliseconds = sum(start.elapsed_time(end) for start, end in zip(events[::2], events[1::2]))
        return milliseconds / 1000 / wall if wall > 0 else None

    return mark, busy


def finite_check_steps(steps: int, checks: int = 4, spacing: int = 32) -> set[int]:
    """After which steps (0-based) of an epoch a training loop reads its loss back to check that it
    is finite (each read waits for the device): at most ``checks`` times an epoch, at least
    ``spacing`` steps apart, and always after the last step."""
    count = max(1, min(checks, steps // spacing))
    return {round(steps * (k + 1) / count) - 1 for k in range(count)}


# Speed settings by device type, used where a TrainConfig leaves them None. Only a measurement
# turns one on (docs/performance.md has the figures).
FAST_DEFAULTS: dict[str, dict[str, bool]] = {
    # 2-core AMD EPYC with AVX512-BF16, SimVP 2/4/16/64 ce at 40x60, batch 8 (tests/bench/bench_speed.py
    # --config small --size 40x60 --batch-size 8): fp32 817 ms, bf16 405 ms, bf16 + channels_last 428 ms.
    # torch.compile: 0.83x on the paper's CE model (bench_speed.py). TF32 does not exist on CPUs.
    "cpu": {"channels_last": False, "compile": False, "tf32": False},
    # One H100 80GB (tests/bench/device_suite.py, 2026-11-26, torch 2.11.0+cu130 on the device), batch 8 at
    # the full frame size, ms per step: small 2/4/16/64 g2 fp32 98.7, fp32+TF32 59.8, bf16 52.7, bf16+channels_last 63.6;
    # paper CE 4/8/64/256 fp32 490, TF32 184, bf16 136, channels_last 172; gSTA 4/8/64/256 fp32 226, TF32 118,
    # bf16 104, channels_last 117. TF32 wins everywhere (it speeds what autocast leaves in fp32);
    # channels_last loses everywhere; torch.compile of the whole model failed in Inductor's backward
    # (convolution_backward given the int64 input), so it stays off until the device suite measures the
    # compile fit now does (SimVP alone, the integer encoding eager: vidseg.train.model.compile_core).
    "cuda": {"channels_last": False, "compile": False, "tf32": True},
}


def fast_defaults(device: torch.device) -> dict[str, bool]:
    return dict(FAST_DEFAULTS.get(device.type, FAST_DEFAULTS["cpu"]))
