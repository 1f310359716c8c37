"""One SimVP trial's configuration: a frozen dataclass, built once from a flat dict."""

from __future__ import annotations

import re

from dataclasses import asdict, dataclass, field
from typing import Any

from vidseg.config import from_dict, validate
from vidseg.task import NUM_CLASSES
from vidseg.models.simvp import TRANSLATOR_KINDS, group_problem
from vidseg.task import INPUT_FRAMES

__all__ = ["TrainConfig", "LOSSES", "DECODES", "TRAIN_INPUTS", "ENCODINGS", "ROLLOUTS", "SAMPLINGS"]

LOSSES = ("mse", "ce", "weighted_ce")
RUNTIME_FIELDS = ("amp", "channels_last", "compile", "tf32", "device", "micro_batch_size", "data_on_device",
                  "memory_budget_gb")
TRAIN_INPUTS = ("true", "unet", "mix")
ENCODINGS = ("onehot", "embed")
ROLLOUTS = ("direct", "autoregressive")
SAMPLINGS = ("none", "linear", "exponential")
TRANSLATORS = tuple(TRANSLATOR_KINDS)  # vidseg.models.simvp: each translator named once, there
MSE_ROUNDINGS = ("floor", "round")
DECODES = ("plain", "known", "known+regions")  # how the target frame's output becomes a mask: vidseg.train.decoding


def _field(default: Any, help: str, choices: tuple = ()) -> Any:
    """A field with its help text and, where it has them, its choices: what ``python -m vidseg.train
    --help`` and the docs read."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class TrainConfig:
    """Everything one trial needs. Unknown keys and invalid values are refused."""

    # SimVP's scale (A4Bio/SimVP's names)
    N_S: int = _field(2, "ConvSC blocks in the encoder and in the decoder (every second one strides by 2)")
    N_T: int = _field(4, "translator blocks")
    hid_S: int = _field(16, "spatial hidden channels (even: the encoder normalises with GroupNorm(2))")
    hid_T: int = _field(64, "temporal hidden channels of the translator")
    groups: int = _field(2, "group convolutions in the Inception translator; must divide its channel counts")
    translator: str = _field("incep", "the translator: SimVP's Inception U-Net, SimVPv2's gated spatial attention, "
                                      "TAU's temporal attention, or ConvNeXt's or ConvMixer's blocks (OpenSTL's)",
                             TRANSLATORS)
    last_frame_skip: bool = _field(False, "add a learnable multiple of the last input frame to every output, so that "
                                          "the model starts near copy-last-frame and learns the motion")
    # loss, as in the paper
    loss: str = _field("weighted_ce", "mse regresses class ids (1 channel); ce and weighted_ce score logits over "
                                      "the classes; weighted_ce weighs the last frame by --last-frame-weight", LOSSES)
    last_frame_weight: float = _field(3.0, "weighted_ce: the last frame's loss is scaled by this, then normalised")
    mse_rounding: str = _field("floor", "mse: how the clamped output becomes a class id (floor: the paper's)",
                               MSE_ROUNDINGS)
    iou_loss_weight: float = _field(0.0, "CE losses: weight of a soft-Jaccard term on the last frame (0: off)")
    divergence_weight: float = _field(0.0, "weight of TAU's differential divergence term: KL between the softmaxed "
                                           "frame-to-frame differences of the output and of the truth (class "
                                           "probabilities for CE, the regressed ids for mse; 0: off, TAU's 0.1)")
    decode: str = _field("plain", "how the target frame's output becomes a mask: plain; known (only the classes the "
                                  "input frames show); known+regions (and the region repair); vidseg.train.decoding",
                         DECODES)
    # the top teams' ingredients (maskpredformer, tanmayy24): how masks go in and frames come out
    input_encoding: str = _field("onehot", "CE losses: masks in as one-hot channels, or a learned embedding (mse "
                                           "feeds class ids)", ENCODINGS)
    embed_dim: int = _field(16, "embed: width of the learned class embedding")
    stem_stride: int = _field(1, "2: a strided conv in, a transposed conv out, and SimVP at half resolution",
                              (1, 2))
    rollout: str = _field("direct", "direct: every output frame at once; autoregressive: one frame at a time, rolled "
                                    "out over the output frames", ROLLOUTS)
    sampling: str = _field("none", "autoregressive: scheduled sampling over epochs (none: teacher forcing; up to "
                                   "MAX_SELF_FED self-fed steps a clip)", SAMPLINGS)
    # data
    train_inputs: str = _field("true", "the training clips' input frames: true masks, the UNet's, or a mix",
                               TRAIN_INPUTS)
    unet_input_fraction: float = _field(0.5, "mix: share of training clips whose inputs are UNet masks")
    pseudo_labels: bool = _field(False, "also train on the unlabeled videos' UNet masks (inputs and targets)")
    max_train_videos: int | None = _field(None, "cap on the labeled train videos (none: all)")
    flip_augment: bool = _field(False, "mirror a random half of the training clips left-right (inputs and targets)")
    # optimisation
    epochs: int = _field(20, "epochs to train")
    batch_size: int = _field(8, "clips a step")
    lr: float = _field(2e-3, "Adam's learning rate, cosine-annealed over the epochs")
    weight_decay: float = _field(0.0, "Adam's weight decay")
    grad_clip: float | None = _field(None, "max gradient norm (none: no clipping)")
    # speed and memory: these do not change what is learned beyond rounding, so a resume may change them
    amp: bool = _field(True, "bf16 autocast on CUDA and on CPUs with native bf16 (mse keeps its readout and loss "
                             "in fp32)")
    channels_last: bool | None = _field(None, "channels-last memory layout (none: the device's measured default)")
    compile: bool | None = _field(None, "torch.compile the model (none: the device's measured default)")
    tf32: bool | None = _field(None, "TF32 matmuls and convs on CUDA (none: the device's measured default)")
    device: str = _field("auto", "auto, cpu, cuda or cuda:N")
    micro_batch_size: int | None = _field(None, "gradient accumulation in micro-batches of this size (none: none); "
                                                "the effective batch stays --batch-size")
    data_on_device: bool | None = _field(None, "keep the trial's masks on the GPU (none: where they fit the budget)")
    memory_budget_gb: float | None = _field(None, "this trial's share of its GPU in GiB, enforced on CUDA (none: "
                                                  "the whole GPU)")
    seed: int = _field(0, "seed of the initial weights and of each epoch's order")

    def __post_init__(self) -> None:
        checks = [
            (self.N_S >= 1, f"N_S is {self.N_S}, but must be >= 1"),
            (self.N_T >= 2, f"N_T is {self.N_T}, but must be >= 2"),
            (self.hid_S >= 2 and self.hid_S % 2 == 0, f"hid_S is {self.hid_S}, but must be even and >= 2 (GroupNorm(2))"),
            (self.hid_T >= 1, f"hid_T is {self.hid_T}, but must be >= 1"),
            (self.groups >= 1, f"groups is {self.groups}, but must be >= 1"),
            (not getattr(TRANSLATOR_KINDS.get(self.translator), "grouped", False) or self.groups < 1
             or self.hid_S < 2 or self.hid_T < 1
             or not group_problem(self.groups, INPUT_FRAMES * self.hid_S, self.hid_T),
             f"{group_problem(self.groups, INPUT_FRAMES * self.hid_S, self.hid_T) if self.groups >= 1 else ''}"),
            (self.translator in TRANSLATORS, f"translator is {self.translator!r}; valid: {', '.join(TRANSLATORS)}"),
            (self.loss in LOSSES, f"loss is {self.loss!r}; valid: {', '.join(LOSSES)}"),
            (self.last_frame_weight > 0, f"last_frame_weight is {self.last_frame_weight}, but must be > 0"),
            (self.mse_rounding in MSE_ROUNDINGS, f"mse_rounding is {self.mse_rounding!r}; valid: {', '.join(MSE_ROUNDINGS)}"),
            (self.iou_loss_weight >= 0, f"iou_loss_weight is {self.iou_loss_weight}, but must be >= 0"),
            (self.iou_loss_weight == 0 or self.loss != "mse", "iou_loss_weight needs a CE loss (mse has no class scores)"),
            (self.divergence_weight >= 0, f"divergence_weight is {self.divergence_weight}, but must be >= 0"),
            (self.decode in DECODES, f"decode is {self.decode!r}; valid: {', '.join(DECODES)}"),
            (self.input_encoding in ENCODINGS, f"input_encoding is {self.input_encoding!r}; valid: {', '.join(ENCODINGS)}"),
            (self.input_encoding == "onehot" or self.loss != "mse", "input_encoding embed needs a CE loss (mse feeds class ids)"),
            (self.embed_dim >= 1, f"embed_dim is {self.embed_dim}, but must be >= 1"),
            (self.stem_stride in (1, 2), f"stem_stride is {self.stem_stride}; valid: 1, 2"),
            (self.rollout in ROLLOUTS, f"rollout is {self.rollout!r}; valid: {', '.join(ROLLOUTS)}"),
            (self.sampling in SAMPLINGS, f"sampling is {self.sampling!r}; valid: {', '.join(SAMPLINGS)}"),
            (self.sampling == "none" or self.rollout == "autoregressive", "sampling needs rollout autoregressive"),
            (self.train_inputs in TRAIN_INPUTS, f"train_inputs is {self.train_inputs!r}; valid: {', '.join(TRAIN_INPUTS)}"),
            (0 <= self.unet_input_fraction <= 1, f"unet_input_fraction is {self.unet_input_fraction}, but must be in [0, 1]"),
            (self.max_train_videos is None or self.max_train_videos >= 1,
             f"max_train_videos is {self.max_train_videos}, but must be >= 1"),
            (self.epochs >= 1, f"epochs is {self.epochs}, but must be >= 1"),
            (self.batch_size >= 1, f"batch_size is {self.batch_size}, but must be >= 1"),
            (self.micro_batch_size is None or 1 <= self.micro_batch_size <= self.batch_size,
             f"micro_batch_size is {self.micro_batch_size}, but must be in 1..batch_size ({self.batch_size})"),
            (self.memory_budget_gb is None or self.memory_budget_gb > 0,
             f"memory_budget_gb is {self.memory_budget_gb}, but must be > 0"),
            (self.lr > 0, f"lr is {self.lr}, but must be > 0"),
            (self.weight_decay >= 0, f"weight_decay is {self.weight_decay}, but must be >= 0"),
            (self.grad_clip is None or self.grad_clip > 0, f"grad_clip is {self.grad_clip}, but must be > 0"),
            (re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None,
             f"device is {self.device!r}; valid: auto, cpu, cuda, cuda:N"),
        ]
        validate(checks)

    @property
    def channels(self) -> int:
        """Channels per frame in and out of SimVP: 1 for mse, one per class for the CE losses."""
        return 1 if self.loss == "mse" else NUM_CLASSES

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        return from_dict(cls, values, "config")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def result_fields(self) -> dict[str, Any]:
        """The fields that decide what a trial learns (a resume must keep them)."""
        return {k: v for k, v in asdict(self).items() if k not in RUNTIME_FIELDS}
