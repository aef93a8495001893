"""XCNN (generator + classifier) and the plain classifier the paper compares it with."""

from __future__ import annotations

import torch
from torch import nn

from edge_xcnn.meta import ModelMeta
from edge_xcnn.models.classifiers import CLASSIFIER_TYPES
from edge_xcnn.models.generator import build_generator


class Normalize(nn.Module):
    """Mean/std normalization inside the network, so every runtime only resizes and divides by 255."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class XCNN(nn.Module):
    """The paper's explainable CNN: the classifier sees only the generator's one-channel map.

    ``forward(x)`` takes images in [0, 1] (N x C x H x W) and returns ``(logits, heatmap)``, the
    heatmap N x 1 x H x W in [-1, 1] (the raw tanh; the model file's polarity says which sign is
    evidence).

    With ``fig7_channels=C`` (the paper's Fig. 7 variant, as the authors' code builds it) a 1x1
    conv maps the image to C tanh channels that are concatenated with the heatmap: better
    accuracy, a less faithful heatmap, since the classifier no longer depends on the map alone.
    """

    def __init__(self, meta: ModelMeta) -> None:
        super().__init__()
        arch = meta.arch
        self.normalize = Normalize(meta.mean, meta.std)
        self.generator = build_generator(arch.generator, arch.in_channels, arch.generator_width, arch.generator_levels)
        extra = arch.fig7_channels or 0
        self.fig7 = nn.Conv2d(arch.in_channels, extra, 1) if extra else None
        self.classifier = CLASSIFIER_TYPES[arch.classifier](1 + extra, meta.num_classes, meta.input_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.normalize(x)
        heatmap = self.generator(x)
        features = heatmap if self.fig7 is None else torch.cat([heatmap, torch.tanh(self.fig7(x))], 1)
        return self.classifier(features), heatmap


class PlainClassifier(nn.Module):
    """The baseline: the same classifier on the raw image, no generator; returns logits only."""

    def __init__(self, meta: ModelMeta) -> None:
        super().__init__()
        self.normalize = Normalize(meta.mean, meta.std)
        self.classifier = CLASSIFIER_TYPES[meta.arch.classifier](
            meta.arch.in_channels, meta.num_classes, meta.input_size
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.normalize(x))
