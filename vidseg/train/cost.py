"""What a trial's model costs: its parameters, its multiply-adds for one clip, and its milliseconds
for one clip on a device; and device time, written and read as durations.

``model_macs`` counts with torch's own FLOP counter (``torch.utils.flop_counter.FlopCounterMode``,
which counts a multiply-add as two FLOPs), on the ``meta`` device where no device is given, so
that the largest configuration of a GPU profile is counted on a CPU in milliseconds, without
memory or compute. ``inference_cost`` adds the parameters and the measured time on the trial's
own device.

Device time is what a trial holds: its share of a GPU times wall seconds on GPUs, its CPUs times
wall seconds on CPUs (``vidseg.train.loop.fit`` reports it every epoch). ``parse_duration`` reads
``--budget``'s ``20h``, ``45m``, ``1h30m`` or ``90s``; ``duration_text`` writes one back.
"""

from __future__ import annotations

import math
import re
import time

import torch

from vidseg.errors import InputError
from vidseg.task import INPUT_FRAMES, OUTPUT_FRAMES

__all__ = ["model_macs", "inference_cost", "parse_duration", "duration_text", "COST_FIELDS"]

# what every epoch's report carries about cost (the first three cumulative over the trial)
COST_FIELDS = ("device_seconds", "train_device_seconds", "val_device_seconds", "params", "macs", "ms_per_clip")

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]+)")


def _clip(height: int, width: int, device: torch.device | str) -> torch.Tensor:
    return torch.zeros((1, INPUT_FRAMES, height, width), dtype=torch.long, device=device)


def model_macs(model: torch.nn.Module, height: int, width: int) -> int:
    """Multiply-adds of one forward pass over one clip (the input frames of one video), as the model
    predicts at test time. The model is counted where it is; a model on the meta device costs nothing to count."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    # an autoregressive model's forward is its one step, rolled out once per output frame: counted once
    steps = OUTPUT_FRAMES if getattr(model, "autoregressive", False) and hasattr(model, "step") else 1
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            (model.step if steps > 1 else model)(_clip(height, width, device))
    finally:
        model.train(was_training)
    return steps * int(counter.get_total_flops()) // 2


def inference_cost(model: torch.nn.Module, height: int, width: int, repeats: int = 5) -> dict[str, float]:
    """``params``, ``macs`` (one clip) and ``ms_per_clip``: the median of ``repeats`` timed forward passes
    over one clip on the model's device, after one untimed pass."""
    device = next(model.parameters()).device
    macs = model_macs(model, height, width)
    clip = _clip(height, width, device)
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.no_grad():
            for i in range(repeats + 1):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                started = time.perf_counter()
                model(clip)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if i:
                    times.append(time.perf_counter() - started)
    finally:
        model.train(was_training)
    times.sort()
    return {"params": float(sum(p.numel() for p in model.parameters())), "macs": float(macs),
            "ms_per_clip": 1000.0 * times[len(times) // 2]}


def parse_duration(text: str, flag: str = "--budget") -> float:
    """Seconds in ``20h``, ``45m``, ``1h30m``, ``90s`` or ``1.5d``; raises InputError, naming
    ``flag``, for anything else, zero or a negative duration."""
    spoken = str(text).strip().lower()
    if spoken.startswith("-"):
        raise InputError(f"{flag} {text} is negative: give a duration of device time such as 20h, 45m or 1h30m")
    try:
        bare = float(spoken)
    except ValueError:
        bare = None
    if bare is not None:
        if not bare > 0:
            raise InputError(f"{flag} {text} is no time at all: give a duration of device time above zero")
        raise InputError(f"{flag} {text} has no unit: give one of s, m, h or d, such as {text}h or {text}m")
    parts = _PART.findall(spoken)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != spoken.replace(" ", ""):
        raise InputError(f"{flag} {text!r} is not a duration: give a number and a unit (s, m, h or d), "
                         "such as 20h, 45m or 1h30m")
    unknown = [unit for _, unit in parts if unit not in _UNITS]
    if unknown:
        raise InputError(f"{flag} {text}: no unit {unknown[0]!r}; the units are s, m, h and d (20h, 45m, 1h30m)")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise InputError(f"{flag} {text} is no time at all: give a duration of device time above zero")
    return seconds


def duration_text(seconds: float) -> str:
    """``1h 05m``, ``12m 30s`` or ``42.0s``."""
    if not math.isfinite(seconds):
        return "?"
    if seconds >= 3600:
        hours, rest = divmod(round(seconds / 60), 60)
        return f"{hours}h {rest:02d}m"
    if seconds >= 60:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes}m {rest:02d}s"
    return f"{seconds:.1f}s"

