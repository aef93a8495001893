"""Which sign of the tanh map is evidence: decided from the trained model, not by hand.

The authors flipped the map's sign by hand per dataset. We ask the model: remove (grey out) the
pixels of the region each sign highlights and see which removal hurts the classifier's confidence
in its own prediction more, per unit of area removed. No labels are needed, so this works on any
dataset.

Why per unit of area: on a sparse map (a localization objective marks ~5% of the pixels) the other
sign's region is nearly the whole image, and greying out 95% of an image hurts the classifier more
than anything, whatever the map shows; the raw drops picked the wrong sign on such maps (measured).
Dividing each drop by the share of pixels removed asks which region holds the evidence *densely*.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_xcnn.models import forward_logits_heatmap


@torch.no_grad()
def region_mask(heatmap: torch.Tensor, sign: int, threshold: float = 0.5) -> torch.Tensor:
    """Per-image mask of ``sign * heatmap`` at ``>= threshold`` of its min-max range (N x 1 x H x W)."""
    heat = heatmap * sign
    flat = heat.flatten(1)
    lo = flat.min(1).values.view(-1, 1, 1, 1)
    hi = flat.max(1).values.view(-1, 1, 1, 1)
    return ((heat - lo) / (hi - lo).clamp_min(1e-12)) >= threshold


@torch.no_grad()
def confidence_drops(model: nn.Module, images: torch.Tensor, threshold: float = 0.5) -> dict[int, float]:
    """Mean drop of the predicted class's probability per share of pixels greyed out, for each sign's region.

    Args:
        model: an XCNN in eval mode.
        images: N x C x H x W in [0, 1], held-out data.
        threshold: the model's heatmap threshold.
    """
    logits, heatmap = forward_logits_heatmap(model, images)
    if heatmap is None:
        raise ValueError("polarity only exists for XCNN models (the plain classifier has no heatmap)")
    probs = logits.softmax(1)
    pred = probs.argmax(1, keepdim=True)
    base = probs.gather(1, pred).squeeze(1)
    fill = images.mean(dim=(2, 3), keepdim=True)  # each image's mean colour
    drops = {}
    for sign in (1, -1):
        region = region_mask(heatmap, sign, threshold)
        removed = torch.where(region, fill, images)
        after = forward_logits_heatmap(model, removed)[0].softmax(1).gather(1, pred).squeeze(1)
        area = region.float().mean(dim=(1, 2, 3)).clamp_min(1.0 / region[0].numel())
        drops[sign] = float(((base - after) / area).mean())
    return drops


def decide_polarity(model: nn.Module, images: torch.Tensor, threshold: float = 0.5) -> int:
    """+1 if the positive region carries the evidence the classifier uses, else -1."""
    was_training = model.training
    model.eval()
    try:
        drops = confidence_drops(model, images, threshold)
    finally:
        model.train(was_training)
    return 1 if drops[1] >= drops[-1] else -1
