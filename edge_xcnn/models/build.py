"""Build a network from a model's metadata; one entry point for every caller."""

from __future__ import annotations

import torch
from torch import nn

from edge_xcnn.meta import ModelMeta
from edge_xcnn.models.xcnn import XCNN, PlainClassifier


def build_model(meta: ModelMeta) -> nn.Module:
    """Return an untrained XCNN or plain classifier as ``meta.arch`` describes."""
    return XCNN(meta) if meta.arch.kind == "xcnn" else PlainClassifier(meta)


def forward_logits_heatmap(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Call any of our models and get ``(logits, heatmap or None)``."""
    out = model(x)
    if isinstance(out, tuple):
        return out[0], out[1]
    return out, None
