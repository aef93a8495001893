"""The original MNIST idx files, read with numpy so a damaged file fails with one clear line."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from edge_xcnn.errors import BadData
from edge_xcnn.train.datasets.base import Sample

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

_PREFIX = {"train": "train", "test": "t10k"}


def _find(root: Path, name: str) -> Path:
    """Find ``name`` (or ``name.gz``) in ``root`` or torchvision's ``MNIST/raw`` layout."""
    for folder in (root, root / "raw", root / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise BadData(f"MNIST file {name}[.gz] not found in {root} (nor in {root / 'MNIST' / 'raw'})")


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise BadData(f"cannot read MNIST file {path}: {e}") from e


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse one idx file: big-endian int32 magic, one int32 per dimension, then uint8 data.

    Raises:
        BadData: wrong magic number, a short header, or a data size that does not match the dims.
    """
    raw = _read_bytes(path)
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise BadData(f"{path} is too short for an idx header ({len(raw)} bytes)")
    found = int(np.frombuffer(raw, dtype=">i4", count=1)[0])
    if found != magic:
        raise BadData(f"{path} is not an idx file of this kind: magic {found}, expected {magic}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64))
    if min(dims) < 0 or len(raw) - header != expected:
        raise BadData(f"{path} holds {len(raw) - header} data bytes, but its header {dims} says {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


class MnistIdx:
    """MNIST from the original idx files (optionally gzipped), gray 28x28 digits, no boxes.

    Args:
        root: folder holding the four idx files, or torchvision's root with ``MNIST/raw`` inside.
        split: ``"train"`` (60k) or ``"test"`` (10k, the ``t10k`` files).
    """

    classes: list[str]

    def __init__(self, root: Path | str, split: Literal["train", "test"] = "train") -> None:
        if split not in _PREFIX:
            raise BadData(f"MNIST split must be 'train' or 'test', got {split!r}")
        root = Path(root)
        if not root.is_dir():
            raise BadData(f"MNIST root {root} is not a folder")
        prefix = _PREFIX[split]
        images_path = _find(root, f"{prefix}-images-idx3-ubyte")
        labels_path = _find(root, f"{prefix}-labels-idx1-ubyte")
        self.images = read_idx(images_path, IMAGES_MAGIC)
        self.labels = read_idx(labels_path, LABELS_MAGIC)
        if len(self.images) != len(self.labels):
            raise BadData(
                f"{images_path} has {len(self.images)} images but {labels_path} has {len(self.labels)} labels"
            )
        if len(self.labels) and int(self.labels.max()) > 9:
            raise BadData(f"{labels_path} has label {int(self.labels.max())}, expected digits 0-9")
        self.classes = [str(d) for d in range(10)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Sample:
        return Sample(image=self.images[index].copy(), label=int(self.labels[index]))
