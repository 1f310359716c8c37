"""One trial's model: integer masks of the input frames in, the later frames out, as ``TrainConfig`` says.

``MaskPredictor`` wraps SimVP with the ways a trial may feed it and read it out:

- ``input_encoding``: ``onehot`` (a channel per class, the paper's CE input), or ``embed`` (a
  learned ``nn.Embedding(NUM_CLASSES, embed_dim)``, as maskpredformer did). ``mse`` feeds the class ids as one
  channel, as in the paper.
- ``stem_stride`` 2: a strided 3x3 conv in and a transposed conv plus a 1x1 readout out, so that
  SimVP runs at half resolution (maskpredformer's layout). Any H and W work: the half-resolution
  features are padded to what SimVP's encoder divides, and the outputs cropped back.
- ``rollout``: ``direct`` (SimVP's T output slots are the later frames, as in the paper), or
  ``autoregressive`` (the last slot is the next frame; ``forward`` rolls out T steps, feeding each
  predicted frame back as the newest input, as at test time; ``step`` is one step, for training).
- ``last_frame_skip``: a learnable multiple of the last input frame (its one-hot, or its ids for
  mse) added to every output, so that the model starts near copy-last-frame.

``forward`` takes integer masks (B, T, H, W) of the T input frames and returns (B, T, C, H, W):
logits over the K classes, or one channel of class ids for mse. Inputs are encoded inside, straight into the
autocast dtype when autocast is on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vidseg.task import INPUT_FRAMES, NUM_CLASSES, OUTPUT_FRAMES
from vidseg.models import SimVP
from vidseg.models.simvp import encoder_scale, without_autocast
from vidseg.train.config import TrainConfig
from vidseg.train.codec import encode_inputs, predict_masks
from vidseg.train.decoding import decode_frame, known_classes, known_probabilities

__all__ = ["MaskPredictor", "build_model", "compile_core", "SKIP_LOGIT"]

SKIP_LOGIT = 4.0  # the last-frame skip's initial logit margin for the CE losses


def _compute_dtype(device: torch.device) -> torch.dtype:
    """The dtype autocast computes in here, so that inputs are built in it (no fp32 copy)."""
    if device.type != "meta" and torch.is_autocast_enabled(device.type):  # meta: counted, not run (vidseg.train.cost)
        return torch.get_autocast_dtype(device.type)
    return torch.float32


class MaskPredictor(nn.Module):
    """SimVP for integer masks, with the trial's input encoding, stem, rollout and skip."""

    def __init__(self, config: TrainConfig, height: int, width: int) -> None:
        super().__init__()
        self.loss, self.encoding, self.rounding = config.loss, config.input_encoding, config.mse_rounding
        self.decoding = config.decode
        self.autoregressive = config.rollout == "autoregressive"
        self.size = (height, width)
        out = 1 if config.loss == "mse" else NUM_CLASSES
        self.embed = nn.Embedding(NUM_CLASSES, config.embed_dim) if config.input_encoding == "embed" else None
        channels = config.embed_dim if self.embed is not None else out
        self.stem = self.head = None
        inner = (height, width)
        if config.stem_stride == 2:
            width_stem = config.hid_S
            self.stem = nn.Sequential(nn.Conv2d(channels, width_stem, 3, stride=2, padding=1),
                                      nn.GroupNorm(2, width_stem), nn.LeakyReLU(0.2, inplace=True))
            self.head = nn.Sequential(nn.ConvTranspose2d(width_stem, width_stem, 3, stride=2, padding=1, output_padding=1),
                                      nn.GroupNorm(2, width_stem), nn.LeakyReLU(0.2, inplace=True),
                                      nn.Conv2d(width_stem, out, 1))
            scale = encoder_scale(config.N_S)
            half = (-(-height // 2), -(-width // 2))
            inner = tuple(-(-size // scale) * scale for size in half)  # padded to what the encoder divides
            self.half = half
            channels = simvp_out = width_stem
        else:
            simvp_out = out
        self.simvp = SimVP((INPUT_FRAMES, channels, *inner), hid_S=config.hid_S, hid_T=config.hid_T, N_S=config.N_S,
                           N_T=config.N_T, groups=config.groups, out_channels=simvp_out, translator=config.translator,
                           fp32_readout=config.loss == "mse" and self.head is None)
        self.skip_scale = None
        if config.last_frame_skip:
            self.skip_scale = nn.Parameter(torch.tensor(1.0 if config.loss == "mse" else SKIP_LOGIT))

    def encode(self, masks: torch.Tensor) -> torch.Tensor:
        """Integer masks (B, T, H, W) to SimVP's input (B, T, C, H, W)."""
        if self.embed is not None:
            return self.embed(masks.long()).permute(0, 1, 4, 2, 3)  # (B, T, E, H, W)
        return encode_inputs(masks, self.loss, _compute_dtype(masks.device))  # one-hot, or ids for mse

    def decode(self, output: torch.Tensor) -> torch.Tensor:
        """SimVP's output (B, T, C, H, W) to integer masks (B, T, H, W), as this trial's loss reads it."""
        return predict_masks(output, self.loss, self.rounding)

    def probabilities(self, output: torch.Tensor, masks: torch.Tensor | None = None,
                      known: torch.Tensor | None = None) -> torch.Tensor:
        """One frame of output (B, C, H, W) as class probabilities (B, classes, H, W), the same way for
        every loss (``vidseg.train.codec.class_probabilities``); with the input frames' ``masks`` (or
        their ``known`` classes) and a restricting decoding (``decode``), over the classes they show only."""
        if self.decoding == "plain" or (masks is None and known is None):
            known = None
        elif known is None:
            known = known_classes(masks)
        return known_probabilities(output, known, self.loss, self.rounding)

    def predict(self, output: torch.Tensor, masks: torch.Tensor, decode: str | None = None,
                known: torch.Tensor | None = None) -> torch.Tensor:
        """The target frame's mask (B, H, W) from the output (B, T, C, H, W) for the input frames'
        ``masks`` (B, T, H, W), decoded as the trial's ``decode`` says (or ``decode``:
        ``vidseg.train.decoding``; ``known``: the masks' known classes, where already counted). An
        autoregressive rollout feeds its own frames back plainly."""
        return decode_frame(output[:, -1], masks, self.loss, self.rounding, decode or self.decoding, known)

    def _frames(self, masks: torch.Tensor, last_only: bool) -> torch.Tensor:
        """SimVP's outputs for T input frames: every slot (B, T, C, H, W), or the last (B, 1, C, H, W)."""
        x = self.encode(masks)
        b, t = x.shape[:2]
        if self.stem is not None:
            x = self.stem(x.flatten(0, 1))
            pad_h, pad_w = (inner - size for inner, size in zip(self.simvp.in_shape[2:], self.half))
            x = F.pad(x, (0, pad_w, 0, pad_h)).unflatten(0, (b, t))
        y = self.simvp(x, last_only=last_only)  # (B, T', C, h, w)
        if self.head is not None:
            t_out = y.shape[1]
            y = y[..., :self.half[0], :self.half[1]].flatten(0, 1)
            if self.loss == "mse":  # class ids need fp32 precision in the readout
                with without_autocast(y.device.type):
                    y = self.head(y.float())
            else:
                y = self.head(y)
            y = y[..., :self.size[0], :self.size[1]].unflatten(0, (b, t_out))
        if self.skip_scale is not None:
            y = y + self.skip_scale * self._last_frame(masks[:, -1:], y.dtype)
        return y

    def _last_frame(self, last: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The last input frame as an output would show it: one-hot (CE) or ids (mse), (B, 1, C, H, W)."""
        if self.loss == "mse":
            return last.unsqueeze(2).to(dtype)
        return F.one_hot(last.long(), NUM_CLASSES).permute(0, 1, 4, 2, 3).to(dtype)

    def step(self, masks: torch.Tensor) -> torch.Tensor:
        """The next frame's output (B, 1, C, H, W) from the T frames before it (autoregressive)."""
        return self._frames(masks, last_only=True)

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        """The later frames (B, T, C, H, W) from the input frames (B, T, H, W) of integer masks."""
        if not self.autoregressive:
            return self._frames(masks, last_only=False)
        outputs = []
        window = masks
        for _ in range(OUTPUT_FRAMES):  # as at test time: each predicted frame becomes the newest input
            output = self.step(window)
            outputs.append(output)
            window = torch.cat([window[:, 1:], self.decode(output).to(window.dtype)], 1)
        return torch.cat(outputs, 1)


def build_model(config: TrainConfig, height: int, width: int) -> MaskPredictor:
    """The trial's model for masks of (height, width); raises ValueError where SimVP cannot be built."""
    return MaskPredictor(config, height, width)


def compile_core(model: MaskPredictor) -> MaskPredictor:
    """``torch.compile`` SimVP, the model's float core, in place, and return the model.

    The integer masks' encoding, the stem's padding and the last-frame skip stay eager: compiled
    whole, the model's backward under Inductor (the device's torch, CUDA) handed ``convolution_backward``
    the int64 masks and failed. Compiled in place, the model keeps its ``state_dict`` keys (its
    checkpoints load into a model that is not compiled), and the autoregressive ``step`` runs
    compiled too (``torch.compile(model)`` compiles ``forward`` only). Its kernels are cached per ATen
    CPU capability (``vidseg.accel.inductor_cache_per_capability``)."""
    from vidseg.accel import inductor_cache_per_capability

    inductor_cache_per_capability()
    model.simvp.compile()
    return model
