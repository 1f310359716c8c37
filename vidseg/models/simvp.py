"""SimVP video prediction: the architecture of A4Bio/SimVP (``model.py``, ``modules.py``), which the paper used.

With ``translator="incep"`` it is that model layer for layer, with the same parameter count: a
strided-conv Encoder applied per frame, the Inception U-Net translator (``Mid_Xnet``) on the frames
stacked along channels, and a Decoder with a skip from the first encoder block. ``translator="gsta"``
swaps in the gated spatiotemporal attention translator of SimVPv2 (OpenSTL's ``MidMetaNet`` with
``model_type='gSTA'``), and ``"tau"``, ``"convnext"`` and ``"convmixer"`` the same ``MidMetaNet`` with
the blocks of OpenSTL's ``model_type`` of that name, each with OpenSTL's parameter count. Unlike
the reference, a group count that does not divide the channels it meets is an error, not a silent
fallback to one group.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from vidseg.task import INPUT_FRAMES


__all__ = ["group_problem", "valid_groups", "encoder_scale", "strides", "ConvSC", "Encoder", "Decoder", "Inception",
           "IncepTranslator", "GSTABlock", "TAUBlock", "ConvNeXtBlock", "ConvMixerBlock", "MetaTranslator",
           "TranslatorKind", "TRANSLATOR_KINDS", "SimVP"]

INCEPTION_KERNELS = (3, 5, 7, 11)
CONVMIXER_KERNEL = 11  # OpenSTL's MetaBlock gives its ConvMixer blocks this depthwise kernel


def strides(num_blocks: int) -> list[int]:
    """Encoder strides 1, 2, 1, 2, ... (the reference's ``stride_generator``)."""
    return [1 + i % 2 for i in range(num_blocks)]


class ConvSC(nn.Module):
    """3x3 conv (transposed when upsampling by 2) => GroupNorm(2) => LeakyReLU(0.2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, transpose: bool = False) -> None:
        super().__init__()
        if transpose and stride > 1:
            self.conv: nn.Module = nn.ConvTranspose2d(
                in_channels, out_channels, 3, stride=stride, padding=1, output_padding=stride // 2
            )
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.norm = nn.GroupNorm(2, out_channels)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class Encoder(nn.Module):
    """``num_blocks`` ConvSC with strides 1, 2, 1, 2, ...; returns the latent and the first block's output."""

    def __init__(self, in_channels: int, hid_channels: int, num_blocks: int) -> None:
        super().__init__()
        channels = [in_channels] + [hid_channels] * num_blocks
        self.blocks = nn.ModuleList(
            ConvSC(channels[i], hid_channels, stride=s) for i, s in enumerate(strides(num_blocks))
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.blocks[0](x)  # (N, hid_S, H, W)
        latent = skip
        for block in self.blocks[1:]:
            latent = block(latent)  # (N, hid_S, H / 2**(N_S // 2), W / 2**(N_S // 2)) at the end
        return latent, skip


def without_autocast(device_type: str):
    """Autocast off, for a readout in fp32; on the ``meta`` device, which has no autocast and where
    a model is only counted (``vidseg.train.cost``), nothing."""
    return contextlib.nullcontext() if device_type == "meta" else torch.autocast(device_type, enabled=False)


class Decoder(nn.Module):
    """Mirror of the Encoder (transposed convs), the skip concatenated before the last block, then a 1x1 readout."""

    def __init__(self, hid_channels: int, out_channels: int, num_blocks: int, fp32_readout: bool = False) -> None:
        super().__init__()
        self.fp32_readout = fp32_readout  # regression outputs (mse's class ids) need fp32 precision
        mirrored = strides(num_blocks)[::-1]
        self.blocks = nn.ModuleList(ConvSC(hid_channels, hid_channels, s, transpose=True) for s in mirrored[:-1])
        self.blocks.append(ConvSC(2 * hid_channels, hid_channels, mirrored[-1], transpose=True))
        self.readout = nn.Conv2d(hid_channels, out_channels, 1)

    def forward(self, latent: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        for block in self.blocks[:-1]:
            latent = block(latent)  # (N, hid_S, H, W) at the end
        y = self.blocks[-1](torch.cat([latent, skip], dim=1))  # (N, 2 hid_S, H, W) -> (N, hid_S, H, W)
        if self.fp32_readout:  # under bf16 autocast, ids near 48 would be rounded to steps of 0.25
            with without_autocast(y.device.type):
                return self.readout(y.float())  # (N, C_out, H, W) in fp32
        return self.readout(y)  # (N, C_out, H, W)


class GroupConv(nn.Module):
    """k x k group conv => GroupNorm(groups) => LeakyReLU(0.2): one branch of an Inception block."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, groups=groups)
        self.norm = nn.GroupNorm(groups, out_channels)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class Inception(nn.Module):
    """1x1 conv to ``mid_channels``, then the sum of GroupConv branches, one per kernel size in ``INCEPTION_KERNELS``."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, mid_channels, 1)
        self.branches = nn.ModuleList(GroupConv(mid_channels, out_channels, k, groups) for k in INCEPTION_KERNELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        return sum(branch(x) for branch in self.branches)


def group_problem(groups: int, in_channels: int, hid_channels: int) -> str | None:
    """Why the Inception translator cannot use ``groups`` (None: it can). Every GroupConv reads
    ``hid_channels // 2`` channels and writes ``hid_channels`` (or ``in_channels``, for the last)."""
    for count, what in ((hid_channels // 2, "channels of the translator's Inception branch (hid_T // 2)"),
                        (hid_channels, "output channels of the translator's Inception blocks (hid_T)"),
                        (in_channels, "output channels of the translator's last block (T * hid_S)")):
        if count % groups:
            return f"groups {groups} does not divide the {count} {what}"
    return None


def valid_groups(hid_S: int, hid_T: int, candidates=(1, 2, 4, 8, 16)) -> list[int]:
    """The group counts among ``candidates`` that the Inception translator accepts for these widths
    (``group_problem``, with the task's input frames stacked into the translator's channels)."""
    return [g for g in candidates if group_problem(g, INPUT_FRAMES * hid_S, hid_T) is None]


def encoder_scale(N_S: int) -> int:
    """What the encoder of ``N_S`` blocks divides H and W by (its strides, ``_strides``): H and W
    must be multiples of it."""
    return math.prod(strides(N_S))


class IncepTranslator(nn.Module):
    """SimVP's ``Mid_Xnet``: ``depth`` Inception blocks down, ``depth`` up, with U-Net-like skips."""

    def __init__(self, in_channels: int, hid_channels: int, depth: int, groups: int) -> None:
        super().__init__()
        mid = hid_channels // 2
        problem = group_problem(groups, in_channels, hid_channels)
        if problem:
            raise ValueError(problem)
        self.down = nn.ModuleList(
            Inception(in_channels if i == 0 else hid_channels, mid, hid_channels, groups) for i in range(depth)
        )
        self.up = nn.ModuleList(
            Inception(hid_channels if i == 0 else 2 * hid_channels, mid,
                      in_channels if i == depth - 1 else hid_channels, groups)
            for i in range(depth)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            z = block(z)  # (B, hid_T, h, w)
            if i < len(self.down) - 1:
                skips.append(z)
        z = self.up[0](z)
        for block, skip in zip(self.up[1:], reversed(skips)):
            z = block(torch.cat([z, skip], dim=1))  # (B, 2 hid_T, h, w) -> (B, hid_T or T hid_S, h, w)
        return z


class LargeKernelAttention(nn.Module):
    """Depthwise 5x5, depthwise 7x7 dilated by 3 (a 21x21 field), 1x1 to value and gate: sigmoid(gate) * value."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, 7, padding=9, groups=dim, dilation=3)
        self.conv1 = nn.Conv2d(dim, 2 * dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.conv1(self.conv_spatial(self.conv0(x))).chunk(2, dim=1)
        return torch.sigmoid(gate) * value


class SpatialAttention(nn.Module):
    """1x1 => GELU => LargeKernelAttention => 1x1, plus a shortcut."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.activation = nn.GELU()
        self.spatial_gating_unit = LargeKernelAttention(dim)
        self.proj_2 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(x))))


class ConvMlp(nn.Module):
    """1x1 => depthwise 3x3 => GELU => 1x1 (OpenSTL's MixMlp)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


def _openstl_init(module: nn.Module) -> None:
    """OpenSTL's init of its translator blocks: convs He-normal on fan-out with zero bias; norms 1 and 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class _AttentionMlpBlock(nn.Module):
    """OpenSTL's attention-and-MLP sub-block: BN => ``attention`` and BN => MLP, each a layer-scaled
    residual, OpenSTL's init; ``attention_at_defaults`` builds the attention after that init, at
    torch's defaults (TAU's)."""

    def __init__(self, dim: int, attention: Callable[[int], nn.Module], mlp_ratio: float, layer_scale_init: float,
                 attention_at_defaults: bool) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        if not attention_at_defaults:
            self.attn = attention(dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio))
        self.layer_scale_1 = nn.Parameter(torch.full((dim, 1, 1), layer_scale_init))
        self.layer_scale_2 = nn.Parameter(torch.full((dim, 1, 1), layer_scale_init))
        _openstl_init(self)
        if attention_at_defaults:
            self.attn = attention(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.layer_scale_1 * self.attn(self.norm1(x))
        return x + self.layer_scale_2 * self.mlp(self.norm2(x))


class GSTABlock(_AttentionMlpBlock):
    """gSTA block (OpenSTL's GASubBlock): its attention is ``SpatialAttention``."""

    def __init__(self, dim: int, mlp_ratio: float = 8.0, layer_scale_init: float = 1e-2) -> None:
        super().__init__(dim, SpatialAttention, mlp_ratio, layer_scale_init, attention_at_defaults=False)


class TemporalAttention(nn.Module):
    """TAU's attention: 1x1 => GELU => (the large-kernel attention's statical part, gated by a
    squeeze-and-excitation of the channels: its dynamical part) => 1x1, plus a shortcut."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.activation = nn.GELU()
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, 7, padding=9, groups=dim, dilation=3)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        squeezed = dim // max(dim // 16, 4)  # as TAU's code has it: dim // 16 for wide translators, at least 4 of them
        self.excite = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(dim, squeezed, bias=False),
                                    nn.ReLU(), nn.Linear(squeezed, dim, bias=False), nn.Sigmoid())
        self.proj_2 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.activation(self.proj_1(x))
        statical = self.conv1(self.conv_spatial(self.conv0(u)))
        dynamical = self.excite(u)[:, :, None, None]
        return x + self.proj_2(dynamical * statical * u)


class TAUBlock(_AttentionMlpBlock):
    """TAU block (OpenSTL's TAUSubBlock): a gSTA block whose attention is ``TemporalAttention``, left
    at torch's defaults by TAU's init."""

    def __init__(self, dim: int, mlp_ratio: float = 8.0, layer_scale_init: float = 1e-2) -> None:
        super().__init__(dim, TemporalAttention, mlp_ratio, layer_scale_init, attention_at_defaults=True)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block (OpenSTL's ConvNeXtSubBlock): depthwise 7x7 => channel LayerNorm => 1x1 =>
    GELU => 1x1, a residual scaled by ``gamma`` (1e-6 at first)."""

    def __init__(self, dim: int, mlp_ratio: float = 8.0, layer_scale_init: float = 1e-6) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = _ChannelNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.GELU(), nn.Conv2d(hidden, dim, 1))
        self.gamma = nn.Parameter(torch.full((dim, 1, 1), layer_scale_init))
        _openstl_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma * self.mlp(self.norm(self.conv_dw(x)))


class _ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of (B, C, H, W), at each pixel (timm's LayerNorm2d)."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvMixerBlock(nn.Module):
    """ConvMixer block (OpenSTL's ConvMixerSubBlock): a residual depthwise 11x11 => GELU => BN, then
    1x1 => GELU => BN."""

    def __init__(self, dim: int, mlp_ratio: float = 8.0) -> None:  # noqa: ARG002 - no MLP: the ratio does not apply
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, CONVMIXER_KERNEL, padding="same", groups=dim)
        self.norm_1 = nn.BatchNorm2d(dim)
        self.conv_pw = nn.Conv2d(dim, dim, 1)
        self.norm_2 = nn.BatchNorm2d(dim)
        self.activation = nn.GELU()
        _openstl_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.norm_1(self.activation(self.conv_dw(x)))
        return self.norm_2(self.activation(self.conv_pw(x)))


class MetaTranslator(nn.Module):
    """SimVPv2's ``MidMetaNet``: ``depth`` blocks of one kind, 1x1 convs into and out of
    ``hid_channels`` (the first block runs at the stacked frames' width, the rest at ``hid_channels``)."""

    def __init__(self, block: Callable[[int], nn.Module], in_channels: int, hid_channels: int, depth: int) -> None:
        super().__init__()
        widths = [in_channels] + [hid_channels] * (depth - 1) + [in_channels]
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers.append(block(width_in))
            if width_in != width_out:
                layers.append(nn.Conv2d(width_in, width_out, 1))
        self.blocks = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.blocks(z)  # (B, T hid_S, h, w) -> (B, hid_T, h, w) -> ... -> (B, T hid_S, h, w)


@dataclass(frozen=True)
class TranslatorKind:
    """One kind of translator, named once (``TRANSLATOR_KINDS``): ``block``, a ``MetaTranslator``'s
    block (None: IncepU, SimVP's own U-Net of Inception modules); whether the search's group count
    applies to it (``grouped``); and, for the memory model (``vidseg.train.memory``), the bytes a
    block keeps for the backward pass per channel and pixel given the bytes of a conv's kept input
    (``kept``), plus per pixel (``kept_per_pixel``), as counted against the traced model."""

    block: Callable[[int], nn.Module] | None
    grouped: bool = False
    kept: Callable[[int], int] | None = None
    kept_per_pixel: int = 0

    def build(self, in_channels: int, hid_channels: int, depth: int, groups: int) -> nn.Module:
        """The translator for (B, ``in_channels`` = T hid_S, h, w) codes, ``depth`` blocks wide ``hid_channels``."""
        if self.block is None:
            return IncepTranslator(in_channels, hid_channels, depth, groups)
        return MetaTranslator(self.block, in_channels, hid_channels, depth)


# the translator slot's kinds; what the search, the memory model and the trials' configs read
TRANSLATOR_KINDS: dict[str, TranslatorKind] = {
    "incep": TranslatorKind(None, grouped=True),  # SimVP's IncepU, the paper's (its U-Net counted apart)
    # BN, attention, BN, 8x MLP
    "gsta": TranslatorKind(GSTABlock, kept=lambda a: 12 * a + 4 + 3 * 8 * a),  # SimVPv2's gated spatial attention
    # the same layout; the excitation keeps one vector a channel
    "tau": TranslatorKind(TAUBlock, kept=lambda a: 12 * a + 4 + 3 * 8 * a),  # TAU's temporal attention
    # depthwise conv, LayerNorm (its fp32 mean and reciprocal std a pixel), 1x1 to 8x, GELU, 1x1 back, layer scale
    "convnext": TranslatorKind(ConvNeXtBlock, kept=lambda a: 20 * a, kept_per_pixel=8),  # OpenSTL's ConvNeXt blocks
    # depthwise conv, GELU, BN, twice
    "convmixer": TranslatorKind(ConvMixerBlock, kept=lambda a: 6 * a),  # OpenSTL's ConvMixer blocks
}


class SimVP(nn.Module):
    """``SimVP(in_shape=(T, C, H, W), ...)``: (B, T, C, H, W) frames -> (B, T, C_out, H, W) predicted frames.

    ``fp32_readout`` keeps the last 1x1 conv in fp32 under autocast (for regression outputs).
    """

    def __init__(
        self,
        in_shape: tuple[int, int, int, int],
        hid_S: int = 16,
        hid_T: int = 256,
        N_S: int = 4,
        N_T: int = 8,
        groups: int = 4,
        out_channels: int | None = None,
        translator: str = "incep",
        fp32_readout: bool = False,
    ) -> None:
        super().__init__()
        if translator not in TRANSLATOR_KINDS:
            raise ValueError(f"unknown translator {translator!r}; valid names are {sorted(TRANSLATOR_KINDS)}")
        if len(in_shape) != 4 or min(in_shape) < 1:
            raise ValueError(f"in_shape is {tuple(in_shape)}, but must be four positive sizes (T, C, H, W)")
        T, C, H, W = in_shape
        if N_S < 1:
            raise ValueError(f"N_S is {N_S}, but must be >= 1")
        if N_T < 2:
            raise ValueError(f"N_T is {N_T}, but must be >= 2")
        if hid_S < 2 or hid_S % 2:  # every ConvSC normalises with GroupNorm(2, hid_S)
            raise ValueError(f"hid_S is {hid_S}, but must be an even number >= 2")
        if hid_T < 2:  # the Inception branches see hid_T // 2 channels
            raise ValueError(f"hid_T is {hid_T}, but must be >= 2")
        if out_channels is not None and out_channels < 1:
            raise ValueError(f"out_channels is {out_channels}, but must be >= 1 or None")
        if TRANSLATOR_KINDS[translator].grouped and groups < 1:
            raise ValueError(f"groups is {groups}, but must be >= 1")
        scale = encoder_scale(N_S)
        if H % scale or W % scale:  # otherwise the upsampled latent misses the skip's size
            raise ValueError(f"H x W is {H} x {W}, but N_S={N_S} needs both divisible by {scale}")
        self.in_shape, self.out_channels, self.translator = (T, C, H, W), out_channels or C, translator
        self.enc = Encoder(C, hid_S, N_S)
        self.hid = TRANSLATOR_KINDS[translator].build(T * hid_S, hid_T, N_T, groups)
        self.dec = Decoder(hid_S, self.out_channels, N_S, fp32_readout)

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """(B, T, C, H, W) -> (B, T, C_out, H, W); with ``last_only``, only the last output slot is
        decoded (with the last input frame's skip): (B, 1, C_out, H, W), for next-frame prediction."""
        B, T, C, H, W = x.shape  # (B, T, C, H, W)
        latent, skip = self.enc(x.reshape(B * T, C, H, W))  # (B T, hid_S, h, w), (B T, hid_S, H, W)
        _, hid_S, h, w = latent.shape
        z = self.hid(latent.reshape(B, T * hid_S, h, w))  # frames stacked on channels: (B, T hid_S, h, w)
        if last_only:
            z, skip, T = z.reshape(B, T, hid_S, h, w)[:, -1:], skip.reshape(B, T, hid_S, H, W)[:, -1:], 1
        y = self.dec(z.reshape(B * T, hid_S, h, w), skip.reshape(B * T, hid_S, H, W))  # (B T, C_out, H, W)
        return y.reshape(B, T, -1, H, W)  # (B, T, C_out, H, W)
