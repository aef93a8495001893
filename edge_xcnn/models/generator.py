"""The XCNN generator: I(x) = tanh(Decode(Encode(x))), a one-channel heatmap at input resolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
