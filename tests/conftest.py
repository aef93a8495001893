"""Fixtures shared by several test files."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def default_model_onnx(tmp_path_factory) -> Path:
    """The shipped default model exported once per test session (ONNX Runtime is the runner's default)."""
    from edge_xcnn.checkpoint import DEFAULT_MODEL
    from edge_xcnn.export.onnx_export import export_onnx

    return export_onnx(DEFAULT_MODEL, tmp_path_factory.mktemp("onnx") / "synthetic.onnx")
