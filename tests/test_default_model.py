"""The shipped default model, measured on the fixed held-out split against the README's figures."""

import re
from pathlib import Path

import pytest

from edge_xcnn.backends import open_backend
from edge_xcnn.checkpoint import DEFAULT_MODEL, DEFAULT_ONNX, read_meta
from edge_xcnn.train.datasets.synthetic import SyntheticDigits
from edge_xcnn.train.evaluate import evaluate

README = Path(__file__).resolve().parents[1] / "README.md"
MARGIN = 0.01  # one point: the same file and data give the same figures; this absorbs BLAS differences


def readme_figures() -> dict[str, float]:
    """The numbers the README states for the default model (the row marked `default-model`)."""
    text = README.read_text()
    row = re.search(r"^\|\s*XCNN, shipped default model.*$", text, re.MULTILINE)
    assert row, "README lost its default-model row"
    cells = [c.strip() for c in row.group(0).strip("|").split("|")]
    percents = [float(c.rstrip("%")) / 100 for c in cells if c.endswith("%")]
    return {"top1": percents[0], "gt_known_loc": percents[1], "top1_loc": percents[2]}


@pytest.fixture(scope="module")
def report():
    backend = open_backend(None, "torch", device="cpu")
    size = backend.meta.input_size[0]
    return evaluate(backend, SyntheticDigits("test", size=size), data_name="synthetic:test")


def test_default_model_ships_inside_the_package_and_is_small():
    assert DEFAULT_MODEL.is_file()
    assert DEFAULT_MODEL.stat().st_size < 5_000_000
    meta = read_meta(DEFAULT_MODEL)
    assert meta.recipe == "synthetic" and meta.input_size == (64, 64)
    assert meta.classes == tuple(str(d) for d in range(10))


def test_the_shipped_onnx_is_the_shipped_checkpoint_exported():
    """`auto` runs the ONNX (torch-free installs too): it must be the same model, to ONNX Runtime's precision."""
    import numpy as np

    from edge_xcnn.onnx_meta import read_onnx_file

    assert DEFAULT_ONNX.is_file() and DEFAULT_ONNX.stat().st_size < 5_000_000
    assert read_onnx_file(DEFAULT_ONNX).meta == read_meta(DEFAULT_MODEL)
    images = [SyntheticDigits("test", size=64)[i].image for i in range(16)]
    torch_logits, torch_heat, _ = open_backend(None, "torch", device="cpu").predict(images)
    onnx = open_backend(None)
    assert onnx.__class__.__name__ == "OnnxRuntimeBackend"
    ort_logits, ort_heat, _ = onnx.predict(images)
    assert np.abs(torch_logits - ort_logits).max() < 1e-3 and np.abs(torch_heat - ort_heat).max() < 1e-3


def test_default_model_meets_the_readme_figures(report):
    stated = readme_figures()
    loc = report.localization
    assert report.images == 2000
    assert report.top1 >= stated["top1"] - MARGIN
    assert loc["gt_known_loc"] >= stated["gt_known_loc"] - MARGIN
    assert loc["top1_loc"] >= stated["top1_loc"] - MARGIN


def test_default_model_beats_both_trivial_baselines(report):
    loc = report.localization
    for baseline in ("centred_mean_box", "whole_image"):
        assert loc["gt_known_loc"] > loc[baseline]["gt_known_loc"] + 0.2
