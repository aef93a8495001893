"""Deletion and insertion (RISE, Petsiuk et al. 2018): how fast the class probability falls or rises.

As RISE's ``CausalMetric``: the class is the model's top-1 on the untouched image, scores are softmax
probabilities, pixels change in order of decreasing saliency, a fixed number per step (RISE: 224 per
step on 224 x 224 images, one row's worth; here the default is also one row: ``steps = H``). Deletion
replaces pixels with zeros of the *normalized* image (RISE's ``torch.zeros_like``), i.e. the
normalization mean colour; insertion starts from the image blurred by RISE's kernel (11 x 11,
sigma 5, made by ``scipy.ndimage.gaussian_filter`` of a delta, zero padding in normalized space) and
puts the original pixels back. The score is ``causal_auc`` of the curve: lower is better for deletion,
higher for insertion.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_xcnn.explain.metrics import causal_auc, causal_order, causal_plan
from edge_xcnn.models import forward_logits_heatmap

BLUR_SIZE, BLUR_SIGMA = 11, 5.0


def rise_kernel(size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """RISE's ``gkern``: a Gaussian made by filtering a delta (scipy, reflect mode), size x size."""
    from scipy.ndimage import gaussian_filter

    delta = np.zeros((size, size))
    delta[size // 2, size // 2] = 1
    return gaussian_filter(delta, sigma).astype(np.float32)


def substrates(x: torch.Tensor, mean: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(deletion substrate, insertion start) for images ``x`` in [0, 1] whose network subtracts ``mean``."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    deleted = m.expand_as(x).clone()
    channels = x.shape[1]
    kernel = torch.from_numpy(rise_kernel()).to(x.device, x.dtype)
    weight = kernel.expand(channels, 1, *kernel.shape).contiguous()
    # zero padding of the normalized image = padding with the mean colour; the std cancels out
    blurred = F.conv2d(x - m, weight, padding=BLUR_SIZE // 2, groups=channels) + m
    return deleted, blurred


def causal_curves(
    model: nn.Module, x: torch.Tensor, saliency: np.ndarray, mean: tuple[float, ...], steps: int
) -> dict[str, np.ndarray]:
    """Deletion and insertion curves for a batch.

    Args:
        model: XCNN or plain classifier (eval mode).
        x: N x C x H x W images in [0, 1] on the model's device.
        saliency: N x H x W maps (larger = more salient).
        mean: the model's normalization mean (the deletion colour).
        steps: pixel-changing steps; the curves have ``steps + 1`` points.

    Returns:
        ``{"deletion": (steps + 1) x N, "insertion": (steps + 1) x N}`` class probabilities.
    """
    n, channels, h, w = x.shape
    plan = causal_plan(h * w, steps)
    order = torch.from_numpy(np.stack([causal_order(s) for s in saliency])).to(x.device)
    deleted, blurred = substrates(x, mean)
    curves = {}
    with torch.inference_mode():
        target = forward_logits_heatmap(model, x)[0].argmax(1)
        rows = torch.arange(n, device=x.device)
        for mode, start, finish in (("deletion", x, deleted), ("insertion", blurred, x)):
            current = start.reshape(n, channels, h * w).clone()
            final = finish.reshape(n, channels, h * w)
            scores = []
            for i in range(len(plan) + 1):
                logits = forward_logits_heatmap(model, current.view(n, channels, h, w))[0]
                scores.append(torch.softmax(logits.float(), 1)[rows, target].cpu().numpy())
                if i < len(plan):
                    index = order[:, plan[i]].unsqueeze(1).expand(n, channels, -1)
                    current.scatter_(2, index, final.gather(2, index))
            curves[mode] = np.stack(scores)
    return curves


def causal_scores(
    model: nn.Module, x: torch.Tensor, saliency: np.ndarray, mean: tuple[float, ...], steps: int
) -> dict[str, np.ndarray]:
    """Per-image deletion and insertion AUCs (N,) for a batch; see ``causal_curves``."""
    return {mode: causal_auc(curve) for mode, curve in causal_curves(model, x, saliency, mean, steps).items()}
