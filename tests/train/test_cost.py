"""A trial's cost (``vidseg.train.cost``): torch's FLOP counter as multiply-adds, checked against a
count by hand; the meta device counting what a real device runs; and ``--budget``'s durations."""


import pytest
import torch
from torch import nn

from vidseg.task import INPUT_FRAMES
from vidseg.train.config import TrainConfig
from vidseg.train.cost import inference_cost, model_macs
from vidseg.train.model import build_model


class TwoConvs(nn.Module):
    """Integer masks in, as a trial's model takes them: one 3x3 conv, then a 1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(INPUT_FRAMES, 6, 3, padding=1)
        self.second = nn.Conv2d(6, 4, 1)

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(masks.float()))


def test_multiply_adds_are_what_a_count_by_hand_gives():
    h, w = 8, 12
    by_hand = h * w * 6 * INPUT_FRAMES * 3 * 3 + h * w * 4 * 6  # output pixels x inputs per output
    assert model_macs(TwoConvs(), h, w) == by_hand
    with torch.device("meta"):
        counted = TwoConvs()
    assert model_macs(counted, h, w) == by_hand  # counted, never run


@pytest.mark.parametrize("config", [TrainConfig(N_S=2, N_T=2, hid_S=4, hid_T=16, loss="ce", last_frame_skip=True),
                                    TrainConfig(N_S=2, N_T=2, hid_S=4, hid_T=16, loss="mse", translator="gsta"),
                                    TrainConfig(N_S=2, N_T=2, hid_S=4, hid_T=16, loss="ce", rollout="autoregressive",
                                                stem_stride=2)])
def test_the_meta_device_counts_what_the_model_runs_on_a_cpu(config):
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(config, 16, 24).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:  # the whole forward, as at test time
        model(torch.zeros((1, INPUT_FRAMES, 16, 24), dtype=torch.long))
    with torch.device("meta"):
        on_meta = build_model(config, 16, 24)
    assert model_macs(on_meta, 16, 24) == model_macs(model, 16, 24) == counter.get_total_flops() // 2 > 0


def test_inference_cost_counts_parameters_and_times_a_clip():
    model = TwoConvs()
    cost = inference_cost(model, 8, 12, repeats=3)
    assert cost["params"] == 11 * 6 * 9 + 6 + 6 * 4 + 4
    assert cost["macs"] == model_macs(model, 8, 12) and cost["ms_per_clip"] > 0
    assert model.training  # left as it was
