"""On-disk dataset readers, each fed tiny files written in the real format."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from edge_xcnn.errors import BadData
from edge_xcnn.train.datasets.base import LabelledImages
from edge_xcnn.train.datasets.cifar10 import Cifar10
from edge_xcnn.train.datasets.image_folder import ImageFolder, is_image_folder
from edge_xcnn.train.datasets.mnist_idx import MnistIdx
from edge_xcnn.train.datasets.tinyimagenet import TinyImageNet

RNG = np.random.default_rng(0)

# ---------------------------------------------------------------- MNIST idx


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(f">{1 + array.ndim}i", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_mnist(folder: Path, prefix: str, n: int, gz: bool = False) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    images = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = RNG.integers(0, 10, n, dtype=np.uint8)
    for name, data in (
        (f"{prefix}-images-idx3-ubyte", idx_bytes(images, 2051)),
        (f"{prefix}-labels-idx1-ubyte", idx_bytes(labels, 2049)),
    ):
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return images, labels


@pytest.mark.parametrize(
    ("split", "prefix", "sub", "gz"),
    [
        ("train", "train", ".", False),
        ("test", "t10k", ".", True),
        ("train", "train", "MNIST/raw", True),
        ("test", "t10k", "MNIST/raw", False),
    ],
)
def test_mnist_reads_pixels_and_labels(tmp_path: Path, split: str, prefix: str, sub: str, gz: bool) -> None:
    images, labels = write_mnist(tmp_path / sub, prefix, 7, gz)
    ds = MnistIdx(tmp_path, split)
    assert isinstance(ds, LabelledImages)
    assert len(ds) == 7
    assert ds.classes == [str(d) for d in range(10)]
    for i in range(7):
        s = ds[i]
        assert s.image.dtype == np.uint8 and s.image.shape == (28, 28)
        np.testing.assert_array_equal(s.image, images[i])
        assert s.label == int(labels[i]) and s.box is None


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:-5])


def _wrong_magic(p: Path) -> None:
    p.write_bytes(struct.pack(">i", 2049) + p.read_bytes()[4:])


def _short_header(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:6])


def _bad_gzip(p: Path) -> None:
    p.unlink()
    p.with_name(p.name + ".gz").write_bytes(b"\x1f\x8b not really gzip")


def _extra_label(p: Path) -> None:
    p.write_bytes(idx_bytes(np.zeros(8, np.uint8), 2049))


def _label_out_of_range(p: Path) -> None:
    p.write_bytes(idx_bytes(np.full(7, 10, np.uint8), 2049))


@pytest.mark.parametrize(
    ("file", "damage", "match"),
    [
        ("train-images-idx3-ubyte", _truncate, "header"),
        ("train-images-idx3-ubyte", _wrong_magic, "magic 2049, expected 2051"),
        ("train-images-idx3-ubyte", _short_header, "too short"),
        ("train-images-idx3-ubyte", _bad_gzip, "cannot read"),
        ("train-labels-idx1-ubyte", _extra_label, "8 labels"),
        ("train-labels-idx1-ubyte", _label_out_of_range, "label 10"),
        ("train-labels-idx1-ubyte", Path.unlink, "not found"),
    ],
)
def test_mnist_damaged_files_raise_bad_data(tmp_path: Path, file: str, damage, match: str) -> None:
    write_mnist(tmp_path, "train", 7)
    damage(tmp_path / file)
    with pytest.raises(BadData, match=match):
        MnistIdx(tmp_path, "train")


def test_mnist_wrong_magic_on_labels(tmp_path: Path) -> None:
    write_mnist(tmp_path, "train", 7)
    p = tmp_path / "train-labels-idx1-ubyte"
    p.write_bytes(struct.pack(">i", 2051) + p.read_bytes()[4:])
    with pytest.raises(BadData, match="magic 2051, expected 2049"):
        MnistIdx(tmp_path, "train")


# ---------------------------------------------------------------- CIFAR-10

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar_batches(n_per_batch: int, n_batches: int) -> list[tuple[np.ndarray, list[int]]]:
    return [
        (
            RNG.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
            [int(v) for v in RNG.integers(0, 10, n_per_batch)],
        )
        for _ in range(n_batches)
    ]


def write_cifar_py(folder: Path, batches: list[tuple[np.ndarray, list[int]]], names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    meta = {b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_cases_per_batch": 10000}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    for name, (data, labels) in zip(names, batches, strict=True):
        batch = {
            b"batch_label": b"x",
            b"labels": labels,
            b"data": data,
            b"filenames": [b"a.png"] * len(labels),
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


class Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 strings and names numpy 1's module, like the real CIFAR files."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: str | bytes) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def py2_dumps(obj: object) -> bytes:
    out = io.BytesIO()
    Py2Pickler(out, protocol=2).dump(obj)
    return out.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def write_cifar_py2(folder: Path, batches: list[tuple[np.ndarray, list[int]]], names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "batches.meta").write_bytes(py2_dumps({"label_names": CIFAR_NAMES, "num_vis": 3072}))
    for name, (data, labels) in zip(names, batches, strict=True):
        batch = {"batch_label": "x", "labels": labels, "data": data, "filenames": ["a.png"] * len(labels)}
        raw = py2_dumps(batch)
        assert b"cnumpy.core.multiarray\n_reconstruct" in raw and b"_codecs" not in raw
        (folder / name).write_bytes(raw)


def write_cifar_bin(folder: Path, batches: list[tuple[np.ndarray, list[int]]], names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR_NAMES) + "\n\n")
    for name, (data, labels) in zip(names, batches, strict=True):
        records = np.concatenate([np.array(labels, np.uint8)[:, None], data], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())


TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


@pytest.mark.parametrize(
    ("writer", "sub", "root_is_folder"),
    [
        (write_cifar_py, "cifar-10-batches-py", False),
        (write_cifar_py, "cifar-10-batches-py", True),
        (write_cifar_py2, "cifar-10-batches-py", False),
        (write_cifar_bin, "cifar-10-batches-bin", False),
        (write_cifar_bin, "cifar-10-batches-bin", True),
    ],
)
@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar_reads_rgb_planes(tmp_path: Path, writer, sub: str, root_is_folder: bool, split: str) -> None:
    names = TRAIN if split == "train" else ["test_batch"]
    batches = cifar_batches(3, len(names))
    writer(tmp_path / sub, batches, names)
    ds = Cifar10(tmp_path / sub if root_is_folder else tmp_path, split)
    assert isinstance(ds, LabelledImages)
    assert ds.classes == CIFAR_NAMES
    assert len(ds) == 3 * len(names)
    data = np.concatenate([b[0] for b in batches])
    labels = [v for b in batches for v in b[1]]
    for i in range(len(ds)):
        s = ds[i]
        assert s.image.shape == (32, 32, 3) and s.image.dtype == np.uint8 and s.box is None
        assert s.label == labels[i]
        for c in range(3):  # R, G, B planes in that order
            np.testing.assert_array_equal(s.image[:, :, c], data[i, 1024 * c : 1024 * (c + 1)].reshape(32, 32))
    # Spot-check one pixel's layout: row 1, column 2 of the green plane.
    assert ds[0].image[1, 2, 1] == data[0, 1024 + 32 + 2]


class Pwn:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("where", ["meta", "batch", "inside_data"])
def test_cifar_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, where: str) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_py(folder, cifar_batches(2, 1), ["test_batch"])
    target = tmp_path / "pwned"
    evil = Pwn(target)
    if where == "meta":
        (folder / "batches.meta").write_bytes(pickle.dumps(evil, protocol=2))
    elif where == "batch":
        (folder / "test_batch").write_bytes(pickle.dumps({b"data": evil, b"labels": [0]}, protocol=2))
    else:
        obj = np.array([evil], dtype=object)
        (folder / "test_batch").write_bytes(pickle.dumps({b"data": obj, b"labels": [0]}, protocol=2))
    with pytest.raises(BadData, match=r"refusing to unpickle (posix|nt|os)\.system"):
        Cifar10(tmp_path, "test")
    assert not target.exists()


def _cifar_garbage(folder: Path) -> None:
    (folder / "test_batch").write_bytes(b"\x80\x02 this is not a pickle")


def _cifar_truncated(folder: Path) -> None:
    p = folder / "test_batch"
    p.write_bytes(p.read_bytes()[:100])


def _cifar_no_data(folder: Path) -> None:
    (folder / "test_batch").write_bytes(pickle.dumps({b"labels": [1]}, protocol=2))


def _cifar_wrong_shape(folder: Path) -> None:
    batch = {b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))


def _cifar_label_count(folder: Path) -> None:
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))


def _cifar_bad_label(folder: Path) -> None:
    batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (_cifar_garbage, "not a readable CIFAR pickle"),
        (_cifar_truncated, "not a readable CIFAR pickle"),
        (_cifar_no_data, "no 'data' entry"),
        (_cifar_wrong_shape, "uint8 N x 3072"),
        (_cifar_label_count, "2 images but 1 labels"),
        (_cifar_bad_label, "labels outside 0..9"),
        (lambda f: (f / "test_batch").unlink(), "test_batch is missing"),
    ],
)
def test_cifar_py_damaged_files_raise_bad_data(tmp_path: Path, damage, match: str) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_py(folder, cifar_batches(2, 1), ["test_batch"])
    damage(folder)
    with pytest.raises(BadData, match=match):
        Cifar10(tmp_path, "test")


def test_cifar_bin_partial_record_and_missing_batch(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar_bin(folder, cifar_batches(2, 5), TRAIN)
    p = folder / "data_batch_3.bin"
    p.write_bytes(p.read_bytes()[:-1])
    with pytest.raises(BadData, match="whole number of 3073-byte records"):
        Cifar10(tmp_path, "train")
    p.unlink()
    with pytest.raises(BadData, match=r"data_batch_3\.bin is missing"):
        Cifar10(tmp_path, "train")


@pytest.mark.parametrize("make", [lambda p: p, lambda p: p.mkdir() or p])
def test_cifar_missing_or_empty_root(tmp_path: Path, make) -> None:
    root = make(tmp_path / "nothing")
    with pytest.raises(BadData, match="nothing"):
        Cifar10(root, "train")


# ---------------------------------------------------------------- Tiny ImageNet

WNIDS = ["n01443537", "n01629819"]
WORDS = {"n01443537": "goldfish, Carassius auratus", "n01629819": "European fire salamander, Salamandra"}


def smooth_image(seed: int) -> np.ndarray:
    """A smooth RGB 64x64 picture, so JPEG round-trips it within a small tolerance."""
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    base = np.stack([xx * 3 + seed * 20, yy * 3 + seed * 7, (xx + yy) * 1.5 + seed * 30], axis=2)
    return np.clip(base, 0, 255).astype(np.uint8)


def write_tiny(root: Path) -> dict[str, tuple[np.ndarray, int, list[float]]]:
    """Two classes, two train images each, three val images (one grayscale). Returns name -> truth."""
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    words = [f"{w}\t{n}" for w, n in WORDS.items()] + ["n99999999\tunused, other"]
    (root / "words.txt").write_text("\n".join(words) + "\n")
    truth: dict[str, tuple[np.ndarray, int, list[float]]] = {}
    seed = 0
    for label, wnid in enumerate(WNIDS):
        images = root / "train" / wnid / "images"
        images.mkdir(parents=True)
        lines = []
        for k in range(2):
            name = f"{wnid}_{k}.JPEG"
            rgb = smooth_image(seed := seed + 1)
            cv2.imwrite(str(images / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            x0, y0, x1, y1 = 3 + k, 5, 40 + k, 63
            lines.append(f"{name}\t{x0}\t{y0}\t{x1}\t{y1}")
            truth[name] = (rgb, label, [x0, y0, x1 + 1, y1 + 1])
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("\n".join(lines) + "\n")
    val = root / "val" / "images"
    val.mkdir(parents=True)
    lines = []
    for k, label in enumerate([1, 0, 1]):
        name = f"val_{k}.JPEG"
        rgb = smooth_image(seed := seed + 1)
        if k == 2:  # a grayscale JPEG, as some of Tiny ImageNet's are
            gray = rgb[:, :, 0]
            cv2.imwrite(str(val / name), gray)
            rgb = np.repeat(gray[:, :, None], 3, axis=2)
        else:
            cv2.imwrite(str(val / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        lines.append(f"{name}\t{WNIDS[label]}\t{k}\t{2 * k}\t{60 - k}\t{61}")
        truth[name] = (rgb, label, [k, 2 * k, 61 - k, 62])
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return truth


@pytest.mark.parametrize(("split", "n"), [("train", 4), ("val", 3)])
def test_tinyimagenet_labels_boxes_pixels(tmp_path: Path, split: str, n: int) -> None:
    truth = write_tiny(tmp_path)
    ds = TinyImageNet(tmp_path, split)
    assert isinstance(ds, LabelledImages)
    assert ds.wnids == WNIDS
    assert ds.classes == ["goldfish", "European fire salamander"]
    assert len(ds) == n
    for i in range(n):
        rgb, label, box = truth[ds.paths[i].name]
        s = ds[i]
        assert s.label == label
        assert s.box is not None and s.box.dtype == np.float32
        np.testing.assert_array_equal(s.box, np.array(box, np.float32))
        assert s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8
        assert np.abs(s.image.astype(int) - rgb.astype(int)).mean() < 4  # JPEG is lossy


def test_tinyimagenet_without_words_uses_wnids(tmp_path: Path) -> None:
    write_tiny(tmp_path)
    (tmp_path / "words.txt").unlink()
    assert TinyImageNet(tmp_path, "val").classes == WNIDS


def _tiny_missing_val_image(root: Path) -> None:
    (root / "val" / "images" / "val_1.JPEG").unlink()


def _tiny_unknown_wnid(root: Path) -> None:
    p = root / "val" / "val_annotations.txt"
    p.write_text(p.read_text().replace(WNIDS[0], "n00000000"))


def _tiny_bad_box(root: Path) -> None:
    p = root / "val" / "val_annotations.txt"
    p.write_text(p.read_text() + "val_0.JPEG\tn01443537\t1\t2\tthree\t4\n")


def _tiny_short_line(root: Path) -> None:
    p = root / "val" / "val_annotations.txt"
    p.write_text(p.read_text() + "val_0.JPEG\tn01443537\t1\n")


def _tiny_no_annotations(root: Path) -> None:
    (root / "val" / "val_annotations.txt").unlink()


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (_tiny_missing_val_image, r"line 2 names .*val_1\.JPEG, which is missing"),
        (_tiny_unknown_wnid, "n00000000 is not in wnids.txt"),
        (_tiny_bad_box, "line 4: box .* is not four integers"),
        (_tiny_short_line, "line 4: expected 'file wnid x0 y0 x1 y1'"),
        (_tiny_no_annotations, "val_annotations.txt is missing"),
        (lambda r: (r / "wnids.txt").unlink(), "wnids.txt is missing"),
    ],
)
def test_tinyimagenet_val_damage_raises_bad_data(tmp_path: Path, damage, match: str) -> None:
    write_tiny(tmp_path)
    damage(tmp_path)
    with pytest.raises(BadData, match=match):
        TinyImageNet(tmp_path, "val")


def test_tinyimagenet_train_missing_image_and_undecodable_image(tmp_path: Path) -> None:
    write_tiny(tmp_path)
    images = tmp_path / "train" / WNIDS[1] / "images"
    (images / f"{WNIDS[1]}_0.JPEG").write_bytes(b"not a jpeg")
    ds = TinyImageNet(tmp_path, "train")
    with pytest.raises(BadData, match=f"cannot decode image .*{WNIDS[1]}_0.JPEG"):
        ds[2]
    (images / f"{WNIDS[1]}_1.JPEG").unlink()
    with pytest.raises(BadData, match=f"{WNIDS[1]}_1.JPEG, which is missing"):
        TinyImageNet(tmp_path, "train")


def test_tinyimagenet_missing_root_and_bad_split(tmp_path: Path) -> None:
    with pytest.raises(BadData, match="not a folder"):
        TinyImageNet(tmp_path / "absent", "train")
    with pytest.raises(BadData, match="'train' or 'val'"):
        TinyImageNet(tmp_path, "test")  # type: ignore[arg-type]


# ---------------------------------------------------------------- image folder


def write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if rgb.ndim == 2:
        ok = cv2.imwrite(str(path), rgb)
    elif rgb.shape[2] == 4:
        ok = cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA))
    else:
        ok = cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok


def make_tree(root: Path, counts: dict[str, int]) -> dict[Path, tuple[np.ndarray, str]]:
    """PNG images with random (so unmistakable) pixels; returns path -> (RGB pixels, class)."""
    truth = {}
    for cls, n in counts.items():
        for k in range(n):
            rgb = RNG.integers(0, 256, (5, 6, 3), dtype=np.uint8)
            path = root / cls / f"img_{k:02d}.png"
            write_png(path, rgb)
            truth[path] = (rgb, cls)
    return truth


def test_image_folder_reads_exact_pixels_and_sorted_classes(tmp_path: Path) -> None:
    truth = make_tree(tmp_path, {"zebra": 2, "apple": 3})
    # Recursive within a class, case-insensitive suffixes, hidden files and folders and non-images skipped.
    nested = RNG.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    write_png(tmp_path / "zebra" / "deeper" / "X.PNG", nested)
    truth[tmp_path / "zebra" / "deeper" / "X.PNG"] = (nested, "zebra")
    write_png(tmp_path / "zebra" / ".hidden.png", nested)
    write_png(tmp_path / "zebra" / ".cache" / "a.png", nested)
    write_png(tmp_path / ".trash" / "a.png", nested)
    (tmp_path / "apple" / "notes.txt").write_text("not an image")
    (tmp_path / "empty_class").mkdir()

    ds = ImageFolder(tmp_path)
    assert isinstance(ds, LabelledImages)
    assert ds.classes == ["apple", "zebra"]
    assert len(ds) == 6
    for i in range(len(ds)):
        rgb, cls = truth[ds.paths[i]]
        s = ds[i]
        np.testing.assert_array_equal(s.image, rgb)
        assert ds.classes[s.label] == cls and s.box is None
    assert is_image_folder(tmp_path)


@pytest.mark.parametrize(
    ("pixels", "expected"),
    [
        (np.array([[0, 128], [255, 7]], np.uint8), "gray"),
        (np.array([[[10, 20, 30, 0], [40, 50, 60, 255]]], np.uint8), "rgba"),
    ],
)
def test_image_folder_gray_and_alpha_become_rgb(tmp_path: Path, pixels: np.ndarray, expected: str) -> None:
    write_png(tmp_path / "cls" / f"{expected}.png", pixels)
    image = ImageFolder(tmp_path)[0].image
    want = np.repeat(pixels[:, :, None], 3, axis=2) if expected == "gray" else pixels[:, :, :3]
    assert image.shape == (*pixels.shape[:2], 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, want)


def test_image_folder_holdout_split_is_deterministic_disjoint_and_complete(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a": 10, "b": 20, "c": 5})
    everything = ImageFolder(tmp_path)
    train = ImageFolder(tmp_path, "train", val_fraction=0.2, seed=3)
    val = ImageFolder(tmp_path, "val", val_fraction=0.2, seed=3)
    assert train.classes == val.classes == ["a", "b", "c"]
    assert not set(train.paths) & set(val.paths)
    assert sorted(train.paths + val.paths) == sorted(everything.paths)
    assert np.bincount(val.labels).tolist() == [2, 4, 1]  # 20% of each class
    again = ImageFolder(tmp_path, "val", val_fraction=0.2, seed=3)
    assert again.paths == val.paths
    other = ImageFolder(tmp_path, "val", val_fraction=0.2, seed=4)
    assert len(other) == len(val)
    for ds in (train, val):
        for i in range(len(ds)):
            assert ds.classes[ds.labels[i]] == ds.paths[i].parent.name


def test_image_folder_split_subfolders_share_class_indices(tmp_path: Path) -> None:
    make_tree(tmp_path / "train", {"cat": 2, "dog": 2})
    make_tree(tmp_path / "val", {"dog": 1})
    train, val = ImageFolder(tmp_path, "train"), ImageFolder(tmp_path, "val")
    assert train.classes == val.classes == ["cat", "dog"]
    assert len(train) == 4 and len(val) == 1
    assert val[0].label == 1
    with pytest.raises(BadData, match="split into train, val"):
        ImageFolder(tmp_path)
    with pytest.raises(BadData, match="not 'test'"):
        ImageFolder(tmp_path, "test")


def _nothing(root: Path) -> None:
    pass


def _mkdir(root: Path) -> None:
    root.mkdir()


def _only_files(root: Path) -> None:
    write_png(root / "loose.png", np.zeros((2, 2, 3), np.uint8))


def _no_images(root: Path) -> None:
    (root / "cls").mkdir(parents=True)
    (root / "cls" / "readme.txt").write_text("x")


def _a_file(root: Path) -> None:
    root.write_text("x")


@pytest.mark.parametrize(
    ("build", "split", "match"),
    [
        (_nothing, None, "does not exist"),
        (_a_file, None, "not a folder"),
        (_mkdir, None, "no class subfolders"),
        (_only_files, None, "no class subfolders"),
        (_no_images, None, "no images in its class subfolders"),
        (lambda r: make_tree(r, {"a": 3}), "test", "no test/ subfolder"),
        (lambda r: make_tree(r, {"a": 3}), "val", "val_fraction"),
    ],
)
def test_image_folder_bad_trees_raise_bad_data(tmp_path: Path, build, split: str | None, match: str) -> None:
    root = tmp_path / "data"
    build(root)
    assert not is_image_folder(root) or split is not None
    with pytest.raises(BadData, match=match) as info:
        ImageFolder(root, split, val_fraction=0.0 if split == "val" else 0.1)
    assert "\n" not in str(info.value)
    if split is None:
        assert str(root) in str(info.value)
