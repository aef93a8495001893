"""Training augmentation that keeps boxes and masks true (CIFAR-style random crop and flip)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_xcnn.train.datasets.base import Sample


@dataclass(frozen=True)
class Augment:
    """Random crop with zero padding ``crop_padding`` and horizontal flip with probability 0.5."""

    crop_padding: int = 0
    hflip: bool = False

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.hflip

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        image, box, mask = sample.image, sample.box, sample.mask
        h, w = image.shape[:2]
        p = self.crop_padding
        if p > 0:
            dx, dy = (int(v) for v in rng.integers(0, 2 * p + 1, size=2))
            image = _shift(image, p - dx, p - dy)
            if mask is not None:
                mask = _shift(mask, p - dx, p - dy)
            if box is not None:
                box = box + np.array([p - dx, p - dy, p - dx, p - dy], np.float32)
                box = np.clip(box, 0, [w, h, w, h]).astype(np.float32)
        if self.hflip and rng.random() < 0.5:
            image = image[:, ::-1]
            if mask is not None:
                mask = mask[:, ::-1]
            if box is not None:
                box = np.array([w - box[2], box[1], w - box[0], box[3]], np.float32)
        return Sample(
            np.ascontiguousarray(image),
            sample.label,
            box,
            None if mask is None else np.ascontiguousarray(mask),
        )


def _shift(array: np.ndarray, sx: int, sy: int) -> np.ndarray:
    """Move content by (sx, sy) pixels, filling with zeros: a padded random crop of the same size."""
    out = np.zeros_like(array)
    h, w = array.shape[:2]
    src_y, dst_y = slice(max(0, -sy), min(h, h - sy)), slice(max(0, sy), min(h, h + sy))
    src_x, dst_x = slice(max(0, -sx), min(w, w - sx)), slice(max(0, sx), min(w, w + sx))
    out[dst_y, dst_x] = array[src_y, src_x]
    return out
