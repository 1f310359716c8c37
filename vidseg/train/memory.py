"""How much GPU memory a trial needs, and how a trial is packed onto a GPU.

``estimate_peak_bytes`` is the memory model: an analytic formula (fast enough to run over a whole
search space), calibrated against ``probe_activation_bytes``, which traces the real model's
forward pass on fake tensors (no memory, no GPU) and adds up every tensor autograd keeps for
the backward pass. ``tests/bench/device_suite.py`` checks both against measured CUDA peaks.

``plan_trial`` turns the model into a packing decision for one GPU of a given size: the share
of the GPU in eighths (Ray's fractional ``num_gpus``), the micro-batch that makes the trial fit
(gradient accumulation keeps the effective batch), and whether its masks ride on the GPU.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import torch

from vidseg.models.simvp import TRANSLATOR_KINDS, strides
from vidseg.task import FRAME_SIZE, INPUT_FRAMES, OUTPUT_FRAMES, TOTAL_FRAMES
from vidseg.train.config import TrainConfig
from vidseg.train.counted import Counted

__all__ = ["GIB", "CUDA_CONTEXT_BYTES", "activation_bytes", "data_bytes", "estimate_peak_bytes", "probe_activation_bytes", "TrialPlan", "plan_trial",
           "parameter_count", "traced_shape", "TRACED"]

GIB = 1024 ** 3
CUDA_CONTEXT_BYTES = int(0.75 * GIB)  # per process, outside the caching allocator (CUDA context, cuBLAS/cuDNN)
# The cap applies to reserved memory: room for the allocator's fragmentation over the modelled peak
# (1.1), times the model's worst measured shortfall: on an H100 (device_suite.py, 12 configurations of the
# full space) the estimate was 0.77-0.99 of the measured peak (0.77: 2/8/64/128 ce at batch 4), so 1.1 / 0.77.
HEADROOM = 1.43


def parameter_count(config: TrainConfig, resolution: tuple[int, int] | None = None) -> int:
    """Parameters of the trial's model, counted on the model built on the ``meta`` device (no memory,
    no compute). Every translator's middle blocks are alike, so the count is linear in ``N_T`` from 2:
    the models at N_T 2 and 3 are built, each once a machine per model shape (``vidseg.train.counted``;
    a build takes about 0.05 s), and every depth follows (``tests/search/space/test_space.py`` holds it
    to the built model). The resolution does not matter."""
    shape = traced_shape(config)
    known = _PARAMETERS.known(_parameters_key(shape))  # counted on the model a memory trace built
    if known is not None:
        return int(known)
    at = {depth: _built_parameters(dataclasses.replace(shape, N_T=depth), resolution or FRAME_SIZE) for depth in (2, 3)}
    return at[2] + (shape.N_T - 2) * (at[3] - at[2])


def _parameters_key(shape: TrainConfig) -> str:
    return json.dumps([getattr(shape, name) for name in TRACED])


def _built_parameters(shape: TrainConfig, resolution: tuple[int, int]) -> int:
    return int(_PARAMETERS.get(_parameters_key(shape), lambda: _count_parameters(shape, resolution)))


def _count_parameters(config: TrainConfig, resolution: tuple[int, int]) -> int:
    from vidseg.train.model import build_model

    with torch.device("meta"):
        model = build_model(config, *resolution)
    return sum(p.numel() for p in model.parameters())


_PARAMETERS = Counted("parameters")


def plain_simvp(config: TrainConfig) -> bool:
    """Whether the trial's model is SimVP as the paper fed it, trained on the paper's losses (the analytic
    count's case; TAU's divergence term keeps more of the loss)."""
    return (config.input_encoding == "onehot" and config.stem_stride == 1 and config.rollout == "direct"
            and config.divergence_weight == 0)


def activation_bytes(config: TrainConfig, resolution: tuple[int, int], batch: int, device_type: str = "cuda") -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one step at ``batch`` clips,
    counted layer by layer the way ``probe_activation_bytes`` traces them.

    Under bf16 autocast convs keep bf16 inputs; CUDA autocast runs GroupNorm in fp32 (so it keeps
    fp32 copies), CPU autocast in bf16. The bf16 copies of the weights count here too.

    A model with the top teams' ingredients (an embedding, a stride-2 stem, an autoregressive
    step) is traced with ``probe_activation_bytes`` instead (CPU autocast: it counts CUDA's fp32
    GroupNorm copies as bf16, and is slower, about a tenth of a second).
    """
    if not plain_simvp(config):
        return probe_activation_bytes(config, tuple(resolution), batch) + (2 * parameter_count(config) if config.amp else 0)
    h, w = resolution
    amp = config.amp
    a = 2 if amp else 4  # a conv's kept input
    n = 4 if (not amp or device_type == "cuda") else 2  # a GroupNorm's kept input and output
    # Where the norm's output has the conv's dtype, the next conv keeps that same tensor: count it once.
    chained = 0 if n == a else 1
    frames = INPUT_FRAMES * batch
    hid_s, hid_t, c = config.hid_S, config.hid_T, config.channels
    total = 0
    # encoder: ConvSC blocks, strides 1, 2, 1, 2, ...: the conv's input, the norm's input and output
    pixels, channels_in = h * w, c
    for i, stride in enumerate(strides(config.N_S)):
        out_pixels = pixels // (stride * stride)
        total += frames * (channels_in * pixels * a * (1 if i == 0 else chained) + 2 * hid_s * out_pixels * n)
        pixels, channels_in = out_pixels, hid_s
    latent = pixels  # per frame
    # translator, on (batch, T hid_S, h, w)
    t_in = INPUT_FRAMES * hid_s
    if TRANSLATOR_KINDS[config.translator].kept is None:  # IncepU: its U-Net of Inception modules
        mid = hid_t // 2

        def inception(cin: int, cout: int) -> int:  # 1x1 reduce keeps its input and output, 4 branches
            return batch * latent * (cin * a + mid * a + 4 * 2 * cout * n)
        depth = config.N_T
        for i in range(depth):
            total += inception(t_in if i == 0 else hid_t, hid_t)
        for i in range(depth):
            total += inception(hid_t if i == 0 else 2 * hid_t, t_in if i == depth - 1 else hid_t)
    else:  # what each block keeps per channel and pixel (the registry's, counted against the traced model)
        kind = TRANSLATOR_KINDS[config.translator]
        kept, per_pixel = kind.kept(a), kind.kept_per_pixel
        widths = [t_in] + [hid_t] * (config.N_T - 1) + [t_in]
        for dim, dim_out in zip(widths[:-1], widths[1:]):
            total += batch * latent * (dim * kept + per_pixel)
            if dim != dim_out:
                total += batch * latent * dim * a  # the 1x1 conv between widths
    # decoder: transposed ConvSC blocks back up, the last one on the skip's concatenation
    for i, stride in enumerate(strides(config.N_S)[::-1][:-1]):
        out_pixels = pixels * stride * stride
        total += frames * (hid_s * pixels * a * (1 if i == 0 else chained) + 2 * hid_s * out_pixels * n)
        pixels = out_pixels
    total += frames * (2 * hid_s * pixels * a + 2 * hid_s * pixels * n)
    readout = 4 if config.loss == "mse" else a  # mse's readout is fp32
    total += frames * hid_s * pixels * readout * (1 if readout != n else chained)
    # the loss: log-softmax in fp32 and the int64 targets (CE), or input and target in fp32 (mse)
    total += frames * pixels * (c * 4 + 8 if config.loss != "mse" else 8)
    if amp:
        total += 2 * parameter_count(config, resolution)  # the bf16 copies of the weights
    return int(total)


def estimate_peak_bytes(config: TrainConfig, resolution: tuple[int, int], batch: int | None = None) -> int:
    """Modelled peak of ``torch.cuda.max_memory_allocated`` for one training step at ``batch``
    clips (default: the micro-batch, else the batch): the weights, their gradients and Adam's two
    moments in fp32, the activations autograd keeps (``activation_bytes``), the gradient of the
    logits at the start of the backward pass, and cuDNN's workspace. The CUDA context is not
    included (``CUDA_CONTEXT_BYTES``)."""
    batch = batch or config.micro_batch_size or config.batch_size
    h, w = resolution
    activations = activation_bytes(config, resolution, batch)  # first: a trace counts the parameters too
    states = 16 * parameter_count(config, resolution)
    frames_out = 1 if config.rollout == "autoregressive" else OUTPUT_FRAMES  # a training step's outputs
    logits_grad = frames_out * batch * config.channels * h * w * (4 + (2 if config.amp else 0))
    workspace = 64 * 1024 ** 2
    return int(states + activations + logits_grad + workspace)


# What a traced step's saved tensors depend on, beside the clips and the frame size: the model's
# shape, the loss, autocast, and whether each extra loss term is on (their weights scale values, not
# tensors). The rest of a TrainConfig trains the model and traces alike.
TRACED = ("N_S", "N_T", "hid_S", "hid_T", "groups", "translator", "last_frame_skip", "loss", "mse_rounding", "decode",
          "input_encoding", "embed_dim", "stem_stride", "rollout", "amp")


def traced_shape(config: TrainConfig) -> TrainConfig:
    """``config`` with every field outside ``TRACED`` at its default and the extra loss terms' weights
    at 1 where on: equal for every configuration whose traced step keeps the same tensors."""
    return TrainConfig(**{name: getattr(config, name) for name in TRACED},
                       iou_loss_weight=float(config.iou_loss_weight > 0),
                       divergence_weight=float(config.divergence_weight > 0))


def probe_activation_bytes(config: TrainConfig, resolution: tuple[int, int], batch: int) -> int:
    """Bytes of every tensor autograd saves in one forward pass plus the loss, at ``batch`` clips,
    traced on fake tensors (no memory is allocated) under CPU bf16 autocast when ``amp``. Traced once
    a machine per model shape (``traced_shape``), frame size and batch (``vidseg.train.counted``): a
    trace takes 0.1-0.5 s on a 2-core CPU, and the driver plans every trial a search starts."""
    shape = traced_shape(config)
    key = json.dumps([list(resolution), batch, *(getattr(shape, name) for name in TRACED),
                      shape.iou_loss_weight, shape.divergence_weight])
    return int(_TRACES.get(key, lambda: _trace(shape, tuple(resolution), batch)))


_TRACES = Counted("activations")


def _trace(config: TrainConfig, resolution: tuple[int, int], batch: int) -> int:
    from torch._subclasses.fake_tensor import FakeTensorMode

    from vidseg.train.losses import compute_loss
    from vidseg.train.model import build_model

    h, w = resolution
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        seen[id(tensor)] = tensor.numel() * tensor.element_size()  # a tensor saved twice counts once
        return tensor

    with torch.device("meta"):  # built without initialising a weight: a third of a fake build's time
        model = build_model(config, h, w)
    with FakeTensorMode():
        for module in model.modules():  # the weights as fake CPU tensors, so that CPU autocast applies
            for name, param in list(module.named_parameters(recurse=False)):
                setattr(module, name, torch.nn.Parameter(torch.empty(param.shape, dtype=param.dtype), param.requires_grad))
            for name, buffer in list(module.named_buffers(recurse=False)):
                setattr(module, name, torch.empty(buffer.shape, dtype=buffer.dtype))
        masks = torch.zeros((batch, TOTAL_FRAMES, h, w), dtype=torch.uint8)
        inputs, target = masks[:, :INPUT_FRAMES], masks[:, INPUT_FRAMES:]
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.amp):
                if config.rollout == "autoregressive":  # a training step predicts one frame
                    output, target = model.step(inputs), target[:, :1]
                else:
                    output = model(inputs)
                compute_loss(output, target, config.loss, config.last_frame_weight, config.iou_loss_weight,
                             config.divergence_weight)
    params = {id(p) for p in model.parameters()}
    _PARAMETERS.get(_parameters_key(config), lambda: sum(p.numel() for p in model.parameters()))  # counted here too
    return sum(b for i, b in seen.items() if i not in params)


def data_bytes(config: TrainConfig, counts: dict[str, int], resolution: tuple[int, int], frames: int = TOTAL_FRAMES) -> int:
    """Bytes of the uint8 masks a trial reads, from the shard set's videos per split: what ``fit``
    puts on the GPU (its ``MaskTable``s; a test holds the two together). The train split's true
    masks, its UNet masks if it trains on them, the val split's both, the unlabeled split's UNet
    masks with pseudo-labels."""
    videos = counts.get("train", 0) * (1 if config.train_inputs == "true" else 2) + 2 * counts.get("val", 0)
    if config.pseudo_labels:
        videos += counts.get("unlabeled", 0)
    return videos * frames * resolution[0] * resolution[1]


@dataclass(frozen=True)
class TrialPlan:
    """How one trial runs on one GPU of ``gpu_bytes``."""

    share: float  # of one GPU, in eighths: what the trial asks Ray for
    micro_batch_size: int  # the batch in micro-batches of this size (= batch_size: no accumulation)
    data_on_device: bool  # its masks ride on the GPU (else a pinned prefetch)
    peak_bytes: int  # modelled peak at that micro-batch with HEADROOM, data included when on the GPU, context excluded
    budget_gb: float  # the allocator's cap (share of the GPU less the CUDA context)
    infeasible: str | None = None  # why it cannot run on this GPU at all


def plan_trial(config: TrainConfig, resolution: tuple[int, int], gpu_bytes: int, data_bytes: int = 0,
               eighths: int = 8) -> TrialPlan:
    """The smallest share of a ``gpu_bytes`` GPU, in ``1/eighths`` steps, that holds the trial.

    If the batch does not fit one GPU, it is split into the largest micro-batches that do (a
    divisor of the batch, so every micro-batch is equal); if one clip does not fit, the plan says
    why (``infeasible``). Masks go on the GPU only where they fit in the share the model needs
    anyway: they never take a share from another trial.
    """
    batch = config.batch_size
    for micro in sorted((d for d in range(1, batch + 1) if batch % d == 0), reverse=True):
        peak = int(HEADROOM * estimate_peak_bytes(config, resolution, micro))
        if peak + CUDA_CONTEXT_BYTES <= gpu_bytes:
            break
    else:
        return TrialPlan(1.0, 1, False, peak, gpu_bytes / GIB,
                         infeasible=f"one clip needs {(peak + CUDA_CONTEXT_BYTES) / GIB:.2f} GiB with the CUDA "
                                    f"context, more than the GPU's {gpu_bytes / GIB:.2f} GiB")
    steps = math.ceil((peak + CUDA_CONTEXT_BYTES) / gpu_bytes * eighths)
    with_data = math.ceil((peak + data_bytes + CUDA_CONTEXT_BYTES) / gpu_bytes * eighths)
    on_device = data_bytes > 0 and with_data <= steps
    share = max(1, steps) / eighths
    return TrialPlan(share, micro, on_device, peak + (data_bytes if on_device else 0),
                     (share * gpu_bytes - CUDA_CONTEXT_BYTES) / GIB)
