"""The XCNN generator: I(x) = tanh(Decode(Encode(x))), a one-channel heatmap at input resolution."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# Training only: instance norm through torch.compile (``compile_instance_norm``). Eager group norm on
# channels-last activations is what makes IBN slow on a CPU; compiled, the norm costs almost nothing.
_compiled_instance_norm: Callable[..., torch.Tensor] | None = None


def compile_instance_norm(enabled: bool) -> None:
    """Route IBN's instance norm through ``torch.compile`` while gradients are on (training steps).

    Measured on this 2-core CPU, bf16, batch 128 (session 13): a ``context-ibn`` training step took
    180 ms eager, 137 ms with the whole model compiled and 114 ms with only this norm compiled, against
    111 ms for the ``context`` generator (eager). Validation, export and inference (no gradients)
    stay eager. The training loop switches it on for recipes with ``compile`` and off when done.
    """
    global _compiled_instance_norm
    _compiled_instance_norm = torch.compile(F.group_norm, dynamic=False) if enabled else None


class _GradInInputLayout(torch.autograd.Function):
    """Identity whose backward hands on its gradient in the memory layout of its input.

    Why: the decoder's upsampled map is concatenated with the skip, and the gradient that comes back
    through the concatenation is a channel slice of a channels-last tensor, which is not dense; on it
    PyTorch's CPU bilinear-upsample backward takes a slow path (16 ms against 4 ms for the 16->32
    upsample of a batch of 128, measured). Making it dense first gives bitwise the same gradient
    (tested) and a training step about 10% faster here. Training only: export and inference never
    see it.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        ctx.layout = torch.channels_last if channels_last else torch.contiguous_format
        return x.view_as(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=ctx.layout)


def _dense_grad(x: torch.Tensor) -> torch.Tensor:
    """``x``, with :class:`_GradInInputLayout` in the graph while training (gradients on, not tracing)."""
    if torch.is_grad_enabled() and x.requires_grad and not torch.jit.is_tracing():
        return _GradInInputLayout.apply(x)
    return x


class Generator(nn.Module):
    """Encoder-decoder that turns an image into a one-channel map in [-1, 1].

    With ``levels=1`` this is the authors' public code: conv 3x3 -> ReLU -> avg-pool 2 ->
    bilinear upsample x2 -> conv 3x3 -> tanh, no normalization. Average pooling (not max) is the
    paper's choice, to keep location. More levels double the width at each level and widen the
    receptive field; the decoder mirrors them and upsamples back to the exact input size, so odd
    sizes work too.
    """

    def __init__(self, in_channels: int, width: int = 32, levels: int = 1) -> None:
        super().__init__()
        widths = [width * 2**level for level in range(levels)]
        self.encoder = nn.ModuleList()
        channels = in_channels
        for w in widths:
            self.encoder.append(nn.Sequential(nn.Conv2d(channels, w, 3, padding=1), nn.ReLU(inplace=True)))
            channels = w
        self.decoder = nn.ModuleList()
        outs = [*widths[:-1][::-1], 1]
        for out in outs:
            self.decoder.append(nn.Conv2d(channels, out, 3, padding=1))
            channels = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = []
        for block in self.encoder:
            x = block(x)
            sizes.append(x.shape[-2:])
            x = F.avg_pool2d(x, 2)
        for i, conv in enumerate(self.decoder):
            # align_corners=True is what the authors' nn.UpsamplingBilinear2d does.
            x = F.interpolate(x, size=sizes[-1 - i], mode="bilinear", align_corners=True)
            x = conv(x)
            x = torch.tanh(x) if i == len(self.decoder) - 1 else F.relu(x)
        return x


class InstanceBatchNorm(nn.Module):
    """Instance norm on the first half of the channels, batch norm on the rest (IBN).

    After Pan et al., ECCV 2018, "Two at Once: Enhancing Learning and Generalization Capacities via
    IBN-Net". Why: instance norm removes each image's own contrast and colour statistics from those
    channels, the "style" that differs between footage, while the batch-normed half keeps what tells a
    digit from clutter. IBN-Net puts it in the shallow layers only, where style lives. Cost: the
    default recipe's epochs take 95 s with it in two levels in eager PyTorch, 77-80 s with the norm
    compiled (``compile_instance_norm``), against 62-70 s without IBN (2 CPU cores, bf16).
    Exports to ONNX as Split, InstanceNormalization, BatchNormalization and Concat.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.half = channels // 2
        self.weight = nn.Parameter(torch.ones(self.half))
        self.bias = nn.Parameter(torch.zeros(self.half))
        self.batch = nn.BatchNorm2d(channels - self.half)
        self.eps = 1e-5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        # Instance norm as group norm with one channel per group: one standard ONNX op
        # (InstanceNormalization, which TensorRT runs). nn.InstanceNorm2d copies channels-last tensors to
        # contiguous and back; the statistics written out by hand trained faster here (83 against 95 s
        # per epoch, session 12) but export as a dozen elementwise ops.
        norm = (
            _compiled_instance_norm if _compiled_instance_norm is not None and torch.is_grad_enabled() else F.group_norm
        )
        return torch.cat([norm(a, self.half, self.weight, self.bias, self.eps), self.batch(b)], 1)


def _conv_bn_relu(cin: int, cout: int, instance: bool = False) -> nn.Sequential:
    norm = InstanceBatchNorm(cout) if instance else nn.BatchNorm2d(cout)
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), norm, nn.ReLU(inplace=True))


def context_widths(width: int, levels: int) -> list[int]:
    """Channels per level: ``width`` doubling each level, capped at 8x ``width``."""
    return [width * min(2**level, 8) for level in range(levels)]


def receptive_field(levels: int) -> int:
    """Receptive field in input pixels of ``ContextGenerator``'s output with ``levels`` levels.

    The input is average-pooled once; then one conv on the first level, two on each lower one, and
    one decoder conv per level on the way up (3x3 convs, 2x average pools).
    """
    rf, jump = 2, 2  # the 2x2 input pool
    for level in range(levels):
        if level:
            rf += jump  # 2x2 average pool
            jump *= 2
        rf += 2 * jump * (1 if level == 0 else 2)
    for _ in range(levels - 1):  # decoder convs, from the bottom up
        jump //= 2
        rf += 2 * jump
    return rf


class ContextGenerator(nn.Module):
    """A multi-level encoder-decoder (U-Net shape) whose map sees the whole object.

    Why: the authors' one-level block sees about 8 px, so on digits of random colour the only cue it
    has is "an unusual colour" (measured: its evidence follows background saturation, Spearman 0.80).
    This one keeps the paper's choices (average pooling down, to keep location; bilinear up; one tanh
    channel out) and adds what a filter needs to tell a whole digit from clutter: ``levels`` levels
    (3 give a receptive field of 72 px; the largest digit at 64x64 is 38 px), batch norm, and skip
    connections so the map keeps its edges.

    It works at half the input resolution (one 2x2 average pool first) and upsamples its one-channel
    map bilinearly to the input size: the same receptive field at full resolution cost 1.3-1.5x the
    training time on 2 CPU cores (measured), and a 2-pixel grid is fine for boxes of 16-38 px.
    Ops: Conv, BatchNormalization (folded on export), Relu, AveragePool, Resize (bilinear), Concat,
    Tanh: all run in TensorRT and quantize to Q/DQ.
    """

    #: Encoder levels whose blocks use :class:`InstanceBatchNorm` (0: batch norm everywhere).
    ibn_levels = 0

    def __init__(self, in_channels: int, width: int = 16, levels: int = 3) -> None:
        super().__init__()
        widths = context_widths(width, levels)
        self.encoder = nn.ModuleList()
        channels = in_channels
        for level, w in enumerate(widths):
            ibn = level < self.ibn_levels
            blocks = [_conv_bn_relu(channels, w, ibn)] + ([_conv_bn_relu(w, w, ibn)] if level else [])
            self.encoder.append(nn.Sequential(*blocks))
            channels = w
        self.decoder = nn.ModuleList()
        for w in widths[:-1][::-1]:
            self.decoder.append(_conv_bn_relu(channels + w, w))
            channels = w
        self.head = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x = F.avg_pool2d(x, 2)
        skips = []
        for level, block in enumerate(self.encoder):
            if level:
                x = F.avg_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for conv, skip in zip(self.decoder, skips[-2::-1], strict=True):
            x = _dense_grad(F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False))
            x = conv(torch.cat([x, skip], 1))
        x = F.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)
        return torch.tanh(x)


class ContextIBNGenerator(ContextGenerator):
    """:class:`ContextGenerator` with IBN (half instance norm) in its first two encoder levels.

    Why: the default model's GT-known loc falls from 82% on validation (training footage) to 71% on
    footage it never saw; the misses are background blobs lit up. Instance norm in the shallow layers
    is IBN-Net's answer to a change of appearance between training and test images.
    """

    ibn_levels = 2


GENERATOR_TYPES: dict[str, type[nn.Module]] = {
    "paper": Generator,
    "context": ContextGenerator,
    "context-ibn": ContextIBNGenerator,
}


def build_generator(kind: str, in_channels: int, width: int, levels: int) -> nn.Module:
    """The generator ``kind`` (``paper``: the authors' block; ``context``: the multi-level one)."""
    return GENERATOR_TYPES[kind](in_channels, width, levels)
