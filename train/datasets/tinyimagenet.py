"""Tiny ImageNet 200: 64x64 photos of 200 classes, each with one object box."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np

from edge_xcnn.errors import BadData
from edge_xcnn.train.datasets.base import Sample
from edge_xcnn.train.datasets.image_folder import read_rgb

_SPLITS = ("train", "val")


def _lines(path: Path) -> list[list[str]]:
    """Whitespace-split fields of each non-empty line of a text file."""
    if not path.is_file():
        raise BadData(f"Tiny ImageNet file {path} is missing")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BadData(f"cannot read {path}: {e}") from e
    return [line.split() for line in text.splitlines() if line.strip()]


def _box(fields: list[str], path: Path, line: int) -> np.ndarray:
    """Inclusive pixel indices ``x0 y0 x1 y1`` -> our xyxy with exclusive far edges."""
    try:
        x0, y0, x1, y1 = (int(v) for v in fields)
    except ValueError as e:
        raise BadData(f"{path} line {line}: box {fields} is not four integers") from e
    return np.array([x0, y0, x1 + 1, y1 + 1], dtype=np.float32)


def _names(root: Path, wnids: list[str]) -> list[str]:
    """Human class names from ``words.txt`` (first comma-separated name), else the wnid itself."""
    words = root / "words.txt"
    table: dict[str, str] = {}
    if words.is_file():
        try:
            text = words.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise BadData(f"cannot read {words}: {e}") from e
        for line in text.splitlines():
            wnid, _, names = line.partition("\t")
            if names:
                table[wnid.strip()] = names.split(",")[0].strip()
    return [table.get(w) or w for w in wnids]


def _listing(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


class TinyImageNet:
    """Tiny ImageNet 200 (``tiny-imagenet-200``), RGB 64x64x3 with the object's box.

    Args:
        root: the folder holding ``wnids.txt``, ``words.txt``, ``train/`` and ``val/``.
        split: ``"train"`` (500 per class) or ``"val"`` (50 per class); the test split has no labels.

    Attributes:
        wnids: the WordNet ids, in ``wnids.txt`` order (the class indices).
        classes: their human names from ``words.txt``.
    """

    classes: list[str]

    def __init__(self, root: Path | str, split: Literal["train", "val"] = "train") -> None:
        if split not in _SPLITS:
            raise BadData(f"Tiny ImageNet split must be 'train' or 'val', got {split!r}")
        root = Path(root)
        if not root.is_dir():
            raise BadData(f"Tiny ImageNet root {root} is not a folder")
        self.root, self.split = root, split
        self.wnids = [fields[0] for fields in _lines(root / "wnids.txt")]
        if not self.wnids:
            raise BadData(f"{root / 'wnids.txt'} lists no classes")
        self.classes = _names(root, self.wnids)
        self.paths: list[Path] = []
        labels: list[int] = []
        boxes: list[np.ndarray] = []
        index = {w: i for i, w in enumerate(self.wnids)}
        if split == "train":
            for wnid in self.wnids:
                folder = root / "train" / wnid
                ann = folder / f"{wnid}_boxes.txt"
                present = _listing(folder / "images")
                for n, fields in enumerate(_lines(ann), start=1):
                    if len(fields) != 5:
                        raise BadData(f"{ann} line {n}: expected 'file x0 y0 x1 y1', got {fields}")
                    self._add(folder / "images", fields[0], present, ann, n)
                    labels.append(index[wnid])
                    boxes.append(_box(fields[1:], ann, n))
        else:
            folder = root / "val" / "images"
            ann = root / "val" / "val_annotations.txt"
            present = _listing(folder)
            for n, fields in enumerate(_lines(ann), start=1):
                if len(fields) != 6:
                    raise BadData(f"{ann} line {n}: expected 'file wnid x0 y0 x1 y1', got {fields}")
                if fields[1] not in index:
                    raise BadData(f"{ann} line {n}: class {fields[1]} is not in wnids.txt")
                self._add(folder, fields[0], present, ann, n)
                labels.append(index[fields[1]])
                boxes.append(_box(fields[2:], ann, n))
        if not self.paths:
            raise BadData(f"Tiny ImageNet {split} split in {root} has no images")
        self.labels = np.array(labels, dtype=np.int64)
        self.boxes = np.stack(boxes)

    def _add(self, folder: Path, name: str, present: set[str], ann: Path, line: int) -> None:
        # One directory listing per folder, so checking every annotated file exists stays cheap.
        if name not in present:
            raise BadData(f"{ann} line {line} names {folder / name}, which is missing")
        self.paths.append(folder / name)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Sample:
        image = read_rgb(self.paths[index])
        return Sample(image=image, label=int(self.labels[index]), box=self.boxes[index].copy())
