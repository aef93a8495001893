"""The one sample type every dataset returns, and the protocol datasets follow."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass
class Sample:
    """One labelled image, with its object box and mask when the dataset has them.

    Attributes:
        image: uint8, H x W x 3 (RGB) or H x W (gray).
        label: class index.
        box: float32 (4,) xyxy in pixels of ``image`` (x2, y2 exclusive edges), or None.
        mask: bool H x W of the object's pixels, or None.
        labels: every class present, for multi-object scenes (multi-label training); None = ``(label,)``.
        boxes: K x 4 boxes of every object (multi-object scenes), or None.
    """

    image: np.ndarray
    label: int
    box: np.ndarray | None = None
    mask: np.ndarray | None = None
    labels: tuple[int, ...] | None = None
    boxes: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.image.dtype != np.uint8 or self.image.ndim not in (2, 3):
            raise ValueError(f"image must be uint8 HxW or HxWx3, got {self.image.dtype} {self.image.shape}")
        if self.image.ndim == 3 and self.image.shape[2] != 3:
            raise ValueError(f"colour image must have 3 channels, got {self.image.shape}")
        if self.box is not None:
            self.box = np.asarray(self.box, dtype=np.float32).reshape(4)
        if self.mask is not None and self.mask.shape != self.image.shape[:2]:
            raise ValueError(f"mask {self.mask.shape} does not match image {self.image.shape[:2]}")


@runtime_checkable
class LabelledImages(Protocol):
    """What every dataset offers: indexable samples and the class names."""

    classes: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


class Subset:
    """A fixed selection of another dataset's samples (for held-out splits)."""

    def __init__(self, dataset: LabelledImages, indices: np.ndarray | list[int]) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.classes = dataset.classes

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Sample:
        return self.dataset[int(self.indices[index])]


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held_out), holding out ``fraction`` of each class (at least one), reproducibly.

    Both halves come back sorted, so the split never depends on iteration order.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    held: list[np.ndarray] = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(len(idx))]
        # at least one of every class that has two, so a small class is still validated
        count = round(len(idx) * fraction) or (1 if len(idx) >= 2 else 0)
        held.append(idx[:count])
    held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    kept = np.setdiff1d(np.arange(len(labels)), held_out)
    return kept, held_out


class MemoryCache:
    """Keep every sample of a dataset in memory after its first use.

    For data that is costly to make and small to keep (the synthetic benchmark, MNIST, CIFAR-10):
    the first epoch makes each sample once, later epochs only read. Use it in the main process
    (DataLoader ``num_workers=0``): a worker's cache dies with the worker.
    """

    def __init__(self, dataset: LabelledImages) -> None:
        self.dataset = dataset
        self.classes = dataset.classes
        self._samples: dict[int, Sample] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        sample = self._samples.get(index)
        if sample is None:
            sample = self._samples[index] = self.dataset[index]
        return sample

    def fill(self, processes: int, advance: Callable[[int], None] | None = None) -> None:
        """Make every sample not yet kept, in ``processes`` forked processes, before training starts.

        Why: the first epoch otherwise makes its samples one by one between training steps (the
        default recipe's 70,000 scenes: 76 s of its first epoch on one core) while the other core
        waits. ``advance(n)`` is called as every n samples arrive (a progress bar).
        """
        missing = [i for i in range(len(self)) if i not in self._samples]
        self._samples.update(zip(missing, make_in_processes(self.dataset, missing, processes, advance), strict=True))


FILL_CHUNK = 500  # items per task of make_in_processes: few round trips, a steady progress bar
MAX_PROCESSES = 8  # make_in_processes's default: every core, up to this many


def default_processes() -> int:
    """Processes that make training data before training: every core, at most ``MAX_PROCESSES``."""
    return min(os.cpu_count() or 1, MAX_PROCESSES)


_FORKED: Any = None  # make_in_processes's dataset, as its forked children see it


def make_in_processes(
    dataset: Any, indices: Sequence[int], processes: int, advance: Callable[[int], None] | None = None
) -> list[Any]:
    """``[dataset[i] for i in indices]``, made in ``processes`` forked processes, in order.

    The items must be pure functions of their index (every dataset here seeds its random numbers from
    it), so where they are made changes no byte of them, nor of a model trained on them (tested).
    Without ``fork`` (macOS, Windows), with one process or few items, they are made here, in order.
    ``advance(n)`` is called as every n items arrive. Unlike ``synthetic.materialize`` (a process
    pool that pickles its dataset, for box-and-mask arrays), the children inherit the dataset through
    fork, so any dataset ``MemoryCache`` wraps works, picklable or not, and items come back as they are.
    """
    global _FORKED
    chunks = [list(indices[k : k + FILL_CHUNK]) for k in range(0, len(indices), FILL_CHUNK)]
    made: list[Any] = []
    if processes <= 1 or len(chunks) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        for chunk in chunks:
            made += [dataset[i] for i in chunk]
            if advance is not None:
                advance(len(chunk))
        return made
    _FORKED = dataset  # the children inherit it through fork: nothing is pickled but the items
    try:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            for chunk_items in pool.imap(_make_items, chunks):
                made += chunk_items
                if advance is not None:
                    advance(len(chunk_items))
    finally:
        _FORKED = None
    return made


def _make_items(indices: list[int]) -> list[Any]:
    assert _FORKED is not None, "make_in_processes's children are forked with the dataset set"
    return [_FORKED[i] for i in indices]
