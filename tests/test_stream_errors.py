"""Errors stay exceptions until the CLI: a bug inside a sink is exit 1 (traceback with --debug), not bad input."""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import pytest
from support.media import write_video
from typer.testing import CliRunner

from edge_xcnn.cli import app
from edge_xcnn.stream import sink as sink_module
from edge_xcnn.stream import uri as uri_module
from edge_xcnn.stream.results import FrameResult
from edge_xcnn.stream.sink import Sink, SinkContext
from edge_xcnn.stream.uri import SinkSpec


class BuggySink(Sink):
    """A sink with a bug: its third frame divides by zero."""

    wants_image: ClassVar[bool] = True

    def __init__(self) -> None:
        self.count = 0

    @classmethod
    def open(cls, spec: SinkSpec, context: SinkContext) -> BuggySink:
        return cls()

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        assert image is not None and image.shape == (result.source.height, result.source.width, 3)
        self.count += 1
        if self.count == 3:
            _ = 1 / 0

    def close(self) -> None:
        pass

    @property
    def where(self) -> list[str]:
        return ["buggy"]


@pytest.fixture
def buggy(monkeypatch):
    monkeypatch.setitem(uri_module.SINK_SCHEMES, "buggy", "buggy")
    monkeypatch.setitem(sink_module.SINKS, "buggy", f"{__name__}:BuggySink")


def test_a_bug_in_a_sink_is_an_internal_error_and_other_outputs_are_complete(tmp_path, default_model_onnx, buggy):
    video = write_video(tmp_path / "v.mp4", frames=20, size=(64, 64))
    jsonl = tmp_path / "out.jsonl"
    args = ["run", str(video), "-m", str(default_model_onnx), "-o", "buggy://x", "--json", str(jsonl), "--headless"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("internal error: ZeroDivisionError") and "run with --debug" in last
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert [x["frame"] for x in lines] == [0, 1]  # what was written before the bug is there and whole
    debug = CliRunner().invoke(app, ["--debug", *args[:-3], "--json", str(tmp_path / "d.jsonl"), "--headless"])
    assert isinstance(debug.exception, ZeroDivisionError)  # --debug: the original exception and its traceback
    assert debug.exception.__traceback__ is not None
