"""Data specs and recipe splits over tiny files in each real on-disk format."""

import json

import numpy as np
import pytest
from test_readers import cifar_batches, write_cifar_py, write_mnist, write_tiny
from typer.testing import CliRunner

from edge_xcnn.cli import app
from edge_xcnn.errors import BadData
from edge_xcnn.train.data_spec import detect_recipe, open_split, parse_data_spec
from edge_xcnn.train.recipes import get_recipe, recipe_splits


@pytest.fixture
def roots(tmp_path):
    write_mnist(tmp_path / "mnist", "train", 40)
    write_mnist(tmp_path / "mnist", "t10k", 10)
    write_cifar_py(
        tmp_path / "cifar" / "cifar-10-batches-py",
        cifar_batches(20, 6),
        [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"],
    )
    (tmp_path / "tiny").mkdir()
    write_tiny(tmp_path / "tiny")
    return tmp_path


@pytest.mark.parametrize(
    ("name", "recipe", "sizes"),
    [("mnist", "mnist", (40, 10)), ("cifar", "cifar10", (100, 20)), ("tiny", "tinyimagenet", (4, 3))],
)
def test_dataset_roots_are_recognised_and_split(roots, name, recipe, sizes):
    assert detect_recipe(roots / name) == recipe
    spec = parse_data_spec(f"{roots / name}:val")
    assert spec.recipe.name == recipe and spec.split == "val"
    splits = recipe_splits(get_recipe(recipe), roots / name)
    assert (len(splits["train"]) + len(splits["val"]), len(splits["test"])) == sizes
    assert 0 < len(splits["val"]) <= len(splits["train"])
    train_idx = set(splits["train"].indices.tolist())
    assert not train_idx & set(splits["val"].indices.tolist()), "validation is held out of training"


def test_builtin_names_and_splits():
    spec = parse_data_spec("synthetic:val")
    assert (spec.recipe.name, spec.path, spec.split) == ("synthetic", None, "val")
    assert parse_data_spec("mnist5k").split == "test"
    assert len(open_split(parse_data_spec("mnist5k:test"))) == 1000
    with pytest.raises(BadData, match="lives on disk"):
        parse_data_spec("tinyimagenet")


def test_unknown_folder_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(BadData, match="not a dataset"):
        parse_data_spec(str(tmp_path))


def test_tiny_imagenet_boxes_flow_from_training_to_localization(roots, tmp_path):
    """Train on the Tiny ImageNet layout, then eval uses the dataset's own boxes."""
    runner = CliRunner()
    out = tmp_path / "run"
    args = [
        "train",
        "--recipe",
        "tinyimagenet",
        "--data",
        str(roots / "tiny"),
        "--epochs",
        "1",
        "--batch",
        "2",
        "--out",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = tmp_path / "r.json"
    result = runner.invoke(app, ["eval", "--model", str(out / "last.safetensors"), "--json", str(report)])
    assert result.exit_code == 0, result.output
    figures = json.loads(report.read_text())
    assert figures["data"].endswith(":test") and figures["images"] == 3
    loc = figures["localization"]
    # The whole-image baseline against the known boxes of write_tiny (64x64 images).
    boxes = np.array([[0, 0, 61, 62], [1, 2, 60, 62], [2, 4, 59, 62]], float)
    whole = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (64 * 64)
    assert loc["whole_image"]["mean_iou"] == pytest.approx(whole.mean())
