"""``--data`` / ``--calib`` specs: ``NAME[:SPLIT]`` for built-in data, or a path in a known format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_xcnn.errors import BadData
from edge_xcnn.meta import ModelMeta
from edge_xcnn.train.datasets.base import LabelledImages
from edge_xcnn.train.recipes import RECIPES, Recipe, recipe_splits

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DataSpec:
    """A parsed spec: a built-in recipe's data or a dataset on disk, and a split."""

    recipe: Recipe
    path: Path | None
    split: str

    def __str__(self) -> str:
        return f"{self.path or self.recipe.name}:{self.split}"


def detect_recipe(path: Path) -> str:
    """Which on-disk format a dataset root is in, by the files that format always has."""
    from edge_xcnn.train.datasets.image_folder import is_image_folder

    if not path.exists():
        raise BadData(f"data path not found: {path}")
    if not path.is_dir():
        raise BadData(f"data path {path} is a file; expected a dataset folder")
    names = {p.name for p in path.iterdir()} | {p.name for p in path.glob("*/*")}
    if (
        any(n.startswith(("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")) for n in names)
        or (path / "MNIST" / "raw").is_dir()
    ):
        return "mnist"
    if names & {
        "cifar-10-batches-py",
        "cifar-10-batches-bin",
        "data_batch_1",
        "data_batch_1.bin",
        "batches.meta",
    }:
        return "cifar10"
    if (path / "wnids.txt").is_file():
        return "tinyimagenet"
    if is_image_folder(path) or any(is_image_folder(path / s) for s in SPLITS):
        return "folder"
    raise BadData(
        f"{path} is not a dataset edge-xcnn can read (MNIST idx files, CIFAR-10 batches, "
        "Tiny ImageNet, or an image folder with one subfolder per class)"
    )


def parse_data_spec(spec: str, default_split: str = "test") -> DataSpec:
    """Parse ``synthetic:test``, ``mnist5k``, ``/data/cifar:test`` or ``~/photos``."""
    text, split = spec, default_split
    head, sep, tail = spec.rpartition(":")
    if sep and tail in SPLITS:
        text, split = head, tail
    if text in RECIPES:
        recipe = RECIPES[text]
        if recipe.needs_path:
            raise BadData(f"data {text!r} lives on disk: give its path (for example --data /data/{text}:{split})")
        return DataSpec(recipe, None, split)
    path = Path(text).expanduser()
    return DataSpec(RECIPES[detect_recipe(path)], path, split)


def open_split(spec: DataSpec) -> LabelledImages:
    """The dataset a spec names."""
    splits = recipe_splits(spec.recipe, spec.path)
    if spec.split not in splits:
        raise BadData(f"{spec.path or spec.recipe.name} has no {spec.split!r} split (it has {', '.join(splits)})")
    return splits[spec.split]


def open_for_model(
    spec_text: str | None, meta: ModelMeta, default_split: str = "test"
) -> tuple[LabelledImages, DataSpec]:
    """The data to evaluate a model on: the given spec, or the data the model was trained on."""
    text = spec_text or meta.data or meta.recipe
    spec = parse_data_spec(text, default_split)
    if spec_text is None and spec.recipe.name != meta.recipe and meta.recipe in RECIPES:
        spec = DataSpec(RECIPES[meta.recipe], spec.path, spec.split)
    dataset = open_split(spec)
    if list(dataset.classes) != list(meta.classes):
        raise BadData(
            f"{spec} has classes {list(dataset.classes)[:5]}... but the model knows {list(meta.classes)[:5]}...; "
            "evaluate on data with the model's classes"
        )
    return dataset, spec
