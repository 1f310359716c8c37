"""What the compute device can do fast, and the settings that follow, decided per device by measurement.

``fast_defaults(device)`` gives the speed settings a trial uses where its config leaves them unset
(``None``). Each entry cites the benchmark that decided it; an unmeasured device keeps PyTorch's
own defaults. ``tests/bench/device_suite.py`` prints the table to put here for a GPU.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["cpu_has_bf16", "bf16_dtype", "fast_defaults", "FAST_DEFAULTS"]


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX512-BF16), where autocast pays off.

    Measured on a 2-core Xeon with AMX, UNet width 16 on 96x128 crops: 29 ms a frame in fp32,
    14.5 ms in bf16 with channels_last. SimVP 2/4/16/64 ``ce`` at 40x60: see FAST_DEFAULTS.
    """
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private torch.cpu helpers (2.x)
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def bf16_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """``torch.bfloat16`` where autocast is asked for and the hardware has it (CUDA, or a CPU with
    native bf16); ``None`` for plain fp32."""
    if amp and (device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())):
        return torch.bfloat16
    return None


# Speed settings by device type, used where a TrainConfig leaves them None. Only a measurement
# turns one on (see the README's Performance table for the figures).
FAST_DEFAULTS: dict[str, dict[str, bool]] = {
    # 2-core AMD EPYC with AVX512-BF16, SimVP 2/4/16/64 ce at 40x60, batch 8 (tests/bench/bench_speed.py
    # --config small --size 40x60 --batch-size 8): fp32 817 ms, bf16 405 ms, bf16 + channels_last 428 ms.
    # torch.compile: 0.83x on the paper's CE model (bench_speed.py). TF32 does not exist on CPUs.
    "cpu": {"channels_last": False, "compile": False, "tf32": False},
    # No GPU has run the suite yet: PyTorch's defaults until tests/bench/device_suite.py measures them.
    "cuda": {"channels_last": False, "compile": False, "tf32": False},
}


def fast_defaults(device: torch.device) -> dict[str, bool]:
    return dict(FAST_DEFAULTS.get(device.type, FAST_DEFAULTS["cpu"]))
