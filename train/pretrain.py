"""Stage 1 of the default recipe: teach XCNN's classifier what a digit looks like *as a map*.

Why: XCNN's classifier sees only the generator's one-channel map, and at the start that map is a
random function of the image, so neither part can learn from the other. Measured on 2 CPU cores:
from scratch, the paper's recipe and ours both stayed at chance for 600+ steps (~10 minutes), which
is most of the 20-minute budget; the issue's probes that started from a trained classifier moved in
250 steps. So the recipe first trains the classifier, alone, on *digit canvases*: the mnist5k
training digits (labels only; the same digits the scenes use) drawn as ``+1`` strokes on a ``-1``
field, 0-3 per canvas at the scenes' scales and places, with mild contrast and noise variation.
That is MNIST in the map's value range, the analogue of the ImageNet-pretrained backbone every WSOL
method starts from, and it uses no box and no scene pixel. The generator then learns to render each
scene as the clean digit map this classifier reads, which is exactly a localization map; the
classifier keeps training with it at a lower learning rate (``classifier_lr_scale``).
"""

from __future__ import annotations

import operator

import numpy as np
import torch
from rich.console import Console
from torch import nn

from edge_xcnn.train.datasets.base import default_processes, make_in_processes
from edge_xcnn.train.datasets.scenes import DIGIT_COUNT_P, SyntheticScenes
from edge_xcnn.train.datasets.synthetic import clip_patch, digit_bank

_CANVAS_CODE = 13


class DigitCanvases:
    """One-channel float canvases in [-1, 1]: 0-3 training digits as +1 strokes, with multi-hot targets."""

    def __init__(
        self, size: int, seed: int, length: int, count_p: tuple[float, ...] = DIGIT_COUNT_P, warp_glyphs: bool = True
    ) -> None:
        self.layout = SyntheticScenes(size, seed, length, count_p, warp_glyphs)
        self.size, self.seed, self.length = size, seed, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        i = operator.index(index)
        rng = np.random.default_rng([self.seed, _CANVAS_CODE, i])
        bank = digit_bank("train")
        count = int(rng.choice(len(self.layout.count_p), p=self.layout.count_p))
        alpha = np.zeros((self.size, self.size), np.float32)
        target = np.zeros(10, np.float32)
        for k, patch, _, _, (px, py) in self.layout.place_digits(rng, bank, count):
            part, rows, cols = clip_patch(patch, px, py, alpha.shape)
            alpha[rows, cols] = np.maximum(alpha[rows, cols], part / 255.0 * rng.uniform(0.6, 1.0))
            target[int(bank.labels[k])] = 1.0
        canvas = alpha * 2.0 - 1.0
        if rng.random() < 0.5:
            canvas += rng.standard_normal(canvas.shape).astype(np.float32) * rng.uniform(0.0, 0.3)
        return np.clip(canvas, -1.0, 1.0)[None], target


def pretrain_classifier(
    classifier: nn.Module,
    *,
    size: int,
    seed: int,
    images: int,
    epochs: int,
    lr: float,
    betas: tuple[float, float],
    batch_size: int,
    device: torch.device,
    console: Console,
    warp_glyphs: bool = True,
) -> list[float]:
    """Train ``classifier`` (one input channel) on digit canvases with a per-class sigmoid; mean loss per epoch."""
    data = DigitCanvases(size, seed, images, warp_glyphs=warp_glyphs)
    # Each canvas made once (they were made twice, once per stack: 56 s of 2-core time for 70,000), in
    # forked processes on every core; the same bytes either way.
    made = make_in_processes(data, range(len(data)), default_processes())
    canvases = np.stack([canvas for canvas, _ in made])
    targets = np.stack([target for _, target in made])
    del made
    x_all, y_all = torch.from_numpy(canvases), torch.from_numpy(targets)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr, betas=betas)
    criterion = nn.BCEWithLogitsLoss()
    classifier.train()
    losses = []
    generator = torch.Generator().manual_seed(seed * 1000 + 999)
    for epoch in range(epochs):
        order = torch.randperm(len(data), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x = x_all[idx].to(device, memory_format=torch.channels_last)
            loss = criterion(classifier(x), y_all[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(order))
        console.print(f"classifier pretraining on digit canvases {epoch + 1}/{epochs}  loss {losses[-1]:.4f}")
    return losses
