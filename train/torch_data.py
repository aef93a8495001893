"""Datasets as torch tensors, preprocessed exactly as at run time (edge_xcnn.preprocess)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from edge_xcnn.meta import ModelMeta
from edge_xcnn.preprocess import preprocess
from edge_xcnn.train.augment import Augment
from edge_xcnn.train.datasets.base import LabelledImages


class TensorImages(Dataset):
    """``(image float32 C x H x W in [0, 1], label)`` pairs, optionally augmented.

    Augmentation randomness comes from torch's generator, which DataLoader seeds per worker from
    the training seed, so runs are reproducible.
    """

    def __init__(
        self, images: LabelledImages, meta: ModelMeta, augment: Augment | None = None, multilabel: bool = False
    ) -> None:
        self.images = images
        self.meta = meta
        self.augment = augment if augment is not None and augment.active else None
        self.multilabel = multilabel  # targets as multi-hot float vectors (every class present)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | torch.Tensor]:
        sample = self.images[index]
        if self.augment is not None:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            sample = self.augment(sample, rng)
        x, _ = preprocess(sample.image, self.meta)
        if self.multilabel:
            target = torch.zeros(self.meta.num_classes)
            present = sample.labels if sample.labels is not None else (sample.label,)
            target[[int(c) for c in present if c >= 0]] = 1.0
            return torch.from_numpy(x), target
        return torch.from_numpy(x), int(sample.label)
