"""Counting host reads: the calls in the project's own code that make the host wait for a tensor's value."""

from __future__ import annotations

import sys
from pathlib import Path

from torch.overrides import TorchFunctionMode


class HostReads(TorchFunctionMode):
    """Inside ``with HostReads() as reads:``, ``reads.where`` lists ``file:line`` of every ``.item()``,
    ``bool()``, ``float()``, ``int()``, ``tolist()`` on a tensor made from vidseg's code. Reads inside
    torch are not counted (its CPU optimizers read their step counters on the host: no device sync)."""

    READS = {"item", "__bool__", "__float__", "__int__", "__index__", "tolist"}
    MACHINERY = ("torch/overrides.py", "torch/_tensor.py", "torch/utils/_python_dispatch.py")

    def __init__(self) -> None:
        super().__init__()
        self.where: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in self.READS:
            frame = sys._getframe(1)  # skip the dispatch machinery up to the code that asked for the value
            while frame is not None and frame.f_code.co_filename.endswith(self.MACHINERY):
                frame = frame.f_back
            if frame is not None and "vidseg" in frame.f_code.co_filename:
                self.where.append(f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}")
        return func(*args, **(kwargs or {}))
