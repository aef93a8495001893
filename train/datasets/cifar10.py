"""CIFAR-10 from its "python" batches (unpickled safely) or its binary batches.

The python batches are pickles, and a pickle can run any code when loaded. They are read with an
unpickler that can only rebuild numpy arrays: any other class or function in the file is refused.
"""

from __future__ import annotations

import codecs
import importlib
import pickle
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edge_xcnn.errors import BadData
from edge_xcnn.train.datasets.base import Sample

SIDE = 32
RECORD = 3 * SIDE * SIDE  # R plane, G plane, B plane, row-major
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCHES = ["test_batch"]
_SPLITS = ("train", "test")


def _numpy_attr(name: str) -> Any:
    """``numpy._core.multiarray.<name>`` (numpy 2) or ``numpy.core.multiarray.<name>`` (numpy 1)."""
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise BadData(f"this numpy has no multiarray.{name} to rebuild CIFAR arrays")


# (module, name) pairs a CIFAR pickle may name; every one just builds data.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy_attr("_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): lambda: _numpy_attr("_reconstruct"),
    ("numpy.core.multiarray", "scalar"): lambda: _numpy_attr("scalar"),
    ("numpy._core.multiarray", "scalar"): lambda: _numpy_attr("scalar"),
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: codecs.encode,  # protocol 2 spells Python 3 bytes this way
    ("codecs", "encode"): lambda: codecs.encode,
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and plain containers, and refuses everything else."""

    def find_class(self, module: str, name: str) -> Any:
        """Return an allowed numpy builder; raise BadData for any other global the pickle names."""
        make = _ALLOWED.get((module, name))
        if make is None:
            raise BadData(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed")
        return make()


def safe_load(path: Path) -> Any:
    """Unpickle ``path`` with :class:`SafeUnpickler` (``encoding="bytes"``, as Python 2 wrote them)."""
    try:
        with path.open("rb") as f:
            return SafeUnpickler(f, encoding="bytes").load()
    except BadData as e:
        raise BadData(f"{path}: {e}") from e
    except (
        OSError,
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        OverflowError,
        MemoryError,
    ) as e:
        raise BadData(f"{path} is not a readable CIFAR pickle: {type(e).__name__}: {e}") from e


def _get(d: Any, key: str, path: Path) -> Any:
    """``d[b"key"]`` (Python 2 pickles) or ``d["key"]`` (Python 3 ones)."""
    if isinstance(d, dict):
        for k in (key.encode(), key):
            if k in d:
                return d[k]
    raise BadData(f"{path} has no '{key}' entry: not a CIFAR-10 batch")


def _resolve(root: Path) -> tuple[Path, str]:
    """Find the batch folder and its kind (``"py"`` or ``"bin"``) from it or its parent."""
    if not root.is_dir():
        raise BadData(f"CIFAR-10 root {root} is not a folder")
    for folder in (root, root / "cifar-10-batches-py", root / "cifar-10-batches-bin"):
        if (folder / "batches.meta").is_file():
            return folder, "py"
        if (folder / "batches.meta.txt").is_file():
            return folder, "bin"
    raise BadData(
        f"no CIFAR-10 batches in {root}: expected batches.meta (python version) or batches.meta.txt "
        "(binary version) in it or in its cifar-10-batches-py/ or cifar-10-batches-bin/ subfolder"
    )


def _read_py(folder: Path, names: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    meta_path = folder / "batches.meta"
    names_raw = _get(safe_load(meta_path), "label_names", meta_path)
    try:
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names_raw]
    except (TypeError, UnicodeDecodeError) as e:
        raise BadData(f"{meta_path} has unreadable label_names: {e}") from e
    data, labels = [], []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise BadData(f"CIFAR-10 batch {path} is missing")
        batch = safe_load(path)
        x = _get(batch, "data", path)
        y = _get(batch, "labels", path)
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != RECORD:
            got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise BadData(f"{path} data must be uint8 N x {RECORD}, got {got}")
        try:
            y = np.asarray(y, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError) as e:
            raise BadData(f"{path} labels are not integers: {e}") from e
        if len(y) != len(x):
            raise BadData(f"{path} has {len(x)} images but {len(y)} labels")
        data.append(x)
        labels.append(y)
    return classes, np.concatenate(data), np.concatenate(labels)


def _read_bin(folder: Path, names: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    meta_path = folder / "batches.meta.txt"
    try:
        classes = [line.strip() for line in meta_path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise BadData(f"cannot read {meta_path}: {e}") from e
    data, labels = [], []
    for name in names:
        path = folder / f"{name}.bin"
        if not path.is_file():
            raise BadData(f"CIFAR-10 batch {path} is missing")
        try:
            raw = np.fromfile(path, dtype=np.uint8)
        except OSError as e:
            raise BadData(f"cannot read {path}: {e}") from e
        if raw.size % (RECORD + 1):
            raise BadData(f"{path} has {raw.size} bytes, not a whole number of {RECORD + 1}-byte records")
        records = raw.reshape(-1, RECORD + 1)
        labels.append(records[:, 0].astype(np.int64))
        data.append(records[:, 1:])
    return classes, np.concatenate(data), np.concatenate(labels)


class Cifar10:
    """CIFAR-10 as RGB 32x32x3 uint8 images, no boxes.

    Args:
        root: ``cifar-10-batches-py`` or ``cifar-10-batches-bin`` itself, or the folder holding one.
        split: ``"train"`` (``data_batch_1..5``) or ``"test"`` (``test_batch``).
    """

    classes: list[str]

    def __init__(self, root: Path | str, split: Literal["train", "test"] = "train") -> None:
        if split not in _SPLITS:
            raise BadData(f"CIFAR-10 split must be 'train' or 'test', got {split!r}")
        self.folder, self.kind = _resolve(Path(root))
        names = TRAIN_BATCHES if split == "train" else TEST_BATCHES
        read = _read_py if self.kind == "py" else _read_bin
        self.classes, self._data, self.labels = read(self.folder, names)
        if not self.classes:
            raise BadData(f"{self.folder} lists no class names")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise BadData(
                f"{self.folder} has labels outside 0..{len(self.classes) - 1} "
                f"({int(self.labels.min())}..{int(self.labels.max())})"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Sample:
        # Stored channel-first (3 planes of 32x32); the Sample wants H x W x 3.
        image = np.ascontiguousarray(self._data[index].reshape(3, SIDE, SIDE).transpose(1, 2, 0))
        return Sample(image=image, label=int(self.labels[index]))
