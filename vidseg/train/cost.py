"""What a trial's model costs: its parameters, its multiply-adds for one clip, and its milliseconds
for one clip on a device.

``model_macs`` counts with torch's own FLOP counter (``torch.utils.flop_counter.FlopCounterMode``,
which counts a multiply-add as two FLOPs), on the ``meta`` device where no device is given, so
that the largest configuration of a GPU profile is counted on a CPU in milliseconds, without
memory or compute. ``inference_cost`` adds the parameters and the measured time on the trial's
own device.

Device time is what a trial holds: its share of a GPU times wall seconds on GPUs, its CPUs times
wall seconds on CPUs (``vidseg.train.loop.fit`` reports it every epoch); ``search.results.durations``
reads and writes it as a duration.
"""

from __future__ import annotations

import time

import torch

from vidseg.task import INPUT_FRAMES, OUTPUT_FRAMES

__all__ = ["model_macs", "inference_cost", "COST_FIELDS"]

# what every epoch's report carries about cost (the first three cumulative over the trial)
COST_FIELDS = ("device_seconds", "train_device_seconds", "val_device_seconds", "params", "macs", "ms_per_clip")



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



