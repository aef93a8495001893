"""A ``root/<class>/<image>`` tree, the format everyone's own data comes in."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from edge_xcnn.errors import BadData
from edge_xcnn.train.datasets.base import Sample, stratified_holdout

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
SPLIT_NAMES = ("train", "val", "test")


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file as RGB H x W x 3 uint8 (gray and alpha files become 3-channel RGB).

    Raises:
        BadData: the file is missing or OpenCV cannot decode it.
    """
    if not path.is_file():
        raise BadData(f"image {path} is missing")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise BadData(f"cannot decode image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def images_in(folder: Path) -> list[Path]:
    """Every image under ``folder``, recursively, skipping hidden files and folders, in sorted order."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in sorted(filenames) if is_image_name(f))
    return found


def _has_image(folder: Path) -> bool:
    for _dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if any(is_image_name(f) for f in filenames):
            return True
    return False


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def is_image_folder(path: Path | str) -> bool:
    """True for a directory with at least one (non-hidden) class subfolder that holds an image."""
    path = Path(path)
    return path.is_dir() and any(_has_image(sub) for sub in _subfolders(path))


def _classes_of(tree: Path) -> dict[str, list[Path]]:
    """Class name -> its images, for the class folders of ``tree`` that hold at least one image."""
    if not tree.is_dir():
        raise BadData(f"image folder {tree} does not exist or is not a folder")
    subs = _subfolders(tree)
    if not subs:
        raise BadData(f"image folder {tree} has no class subfolders (expected {tree}/<class>/<image>)")
    classes = {sub.name: images_in(sub) for sub in subs}
    classes = {name: files for name, files in classes.items() if files}
    if not classes:
        raise BadData(
            f"image folder {tree} has no images in its class subfolders (expected {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return classes


class ImageFolder:
    """Images sorted into one subfolder per class; classes are the folder names, sorted.

    A root with ``train/``, ``val/`` or ``test/`` subfolders is read one split at a time, with the class
    list taken over all of them so that indices agree between splits. A single tree is split per class,
    reproducibly, into ``"train"`` and the held-out ``"val"``.

    Args:
        root: the tree, or the folder holding its split subfolders.
        split: ``"train"``, ``"val"``, ``"test"`` or another subfolder name; None reads the whole tree.
        val_fraction: share of each class held out as ``"val"`` when the tree has no split subfolders.
        seed: seed of that held-out draw.
    """

    classes: list[str]

    def __init__(self, root: Path | str, split: str | None = None, val_fraction: float = 0.1, seed: int = 0) -> None:
        root = Path(root)
        if not root.is_dir():
            raise BadData(f"image folder {root} does not exist or is not a folder")
        self.root, self.split = root, split
        present = [name for name in SPLIT_NAMES if is_image_folder(root / name)]
        if split is not None and (root / split).is_dir():
            # Class indices must agree across splits: take the class names from every split folder.
            files = _classes_of(root / split)
            names = set(files).union(*(_classes_of(root / other) for other in present))
            self.classes = sorted(names)
            self._set(files)
            return
        if present and {p.name for p in _subfolders(root)} <= set(SPLIT_NAMES):
            wanted = "" if split is None else f", not {split!r}"
            raise BadData(f"image folder {root} is split into {', '.join(present)}: pick one of them{wanted}")
        files = _classes_of(root)
        self.classes = sorted(files)
        self._set(files)
        if split is None:
            return
        if split not in ("train", "val"):
            raise BadData(f"image folder {root} has no {split}/ subfolder; without one only train/val exist")
        try:
            kept, held_out = stratified_holdout(self.labels, val_fraction, seed)
        except ValueError as e:
            raise BadData(f"val_fraction: {e}") from e
        chosen = kept if split == "train" else held_out
        self.paths = [self.paths[i] for i in chosen]
        self.labels = self.labels[chosen]

    def _set(self, files: dict[str, list[Path]]) -> None:
        index = {name: i for i, name in enumerate(self.classes)}
        self.paths = [p for name in sorted(files) for p in files[name]]
        self.labels = np.array([index[name] for name in sorted(files) for _ in files[name]], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Sample:
        return Sample(image=read_rgb(self.paths[index]), label=int(self.labels[index]))
