"""The runner's parts on their own: URIs, overlay geometry, tracking and its metrics, the demo."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_xcnn.cli import app
from edge_xcnn.errors import BadData
from edge_xcnn.preprocess import Geometry, resize_image
from edge_xcnn.stream.overlay import Overlay, OverlayOptions, heatmap_on_frame
from edge_xcnn.stream.results import FrameResult, TrackedObject, tracked_objects
from edge_xcnn.stream.sinks import MotSink
from edge_xcnn.stream.tracking import TrackerOptions, make_tracker, update_tracker
from edge_xcnn.stream.uri import parse_sink, parse_source, redact, redact_text


def test_source_and_sink_uris(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    assert parse_source(str(video)).kind == "file"
    assert parse_source(f"file://{video}").location == str(video)
    assert parse_source(str(tmp_path)).kind == "images"
    assert parse_source(str(tmp_path / "*.jpg")).kind == "images"
    cam = parse_source("rtsp://u:p@10.0.0.2:554/live/main")
    assert (cam.kind, cam.live, str(cam)) == ("rtsp", True, "rtsp://***@10.0.0.2:554/live/main")
    assert "p@" not in cam.name and cam.name == "10.0.0.2_main"
    assert parse_source("v4l2:///dev/video1").location == "/dev/video1"
    assert parse_source("/dev/video0").kind == "v4l2"
    assert (parse_source("csi://0").kind, parse_source("csi://0").location) == ("csi", "0")
    assert parse_source("https://host/cam.mjpg").kind == "http"
    with pytest.raises(BadData, match="not found"):
        parse_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(BadData, match="sensor number"):
        parse_source("csi://left")
    assert parse_sink("out/a.mp4").kind == "video"
    assert parse_sink("out/frames").kind == "images"
    assert parse_sink("display://0").kind == "display"
    assert parse_sink("rtsp://127.0.0.1:8554/out").kind == "stream"
    two = parse_sink("out/a.mp4").for_source(1, 2, "cam")
    assert two.location.endswith("a_1_cam.mp4")


def test_credentials_are_redacted_everywhere():
    assert redact("rtsp://admin:pw@cam/x") == "rtsp://***@cam/x"
    assert redact("rtsp://cam/x") == "rtsp://cam/x"
    text = "Connection to tcp://1.2.3.4 failed for rtsp://admin:pw@1.2.3.4:554/a and http://u:v@h/"
    assert redact_text(text) == "Connection to tcp://1.2.3.4 failed for rtsp://***@1.2.3.4:554/a and http://***@h/"


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_heatmap_lines_up_with_the_frame(mode):
    """A bright square in the frame, resized as the model sees it, projects back onto the same square."""
    frame = np.zeros((120, 200), np.uint8)
    frame[30:70, 120:170] = 255
    net, geometry = resize_image(frame, (64, 64), mode)
    heat = net.astype(np.float32) / 127.5 - 1.0  # a map that equals the image
    if mode == "letterbox":
        heat[net == 114] = -1.0  # padding carries no evidence
    back = heatmap_on_frame(heat, geometry, 1, frame.shape)
    assert back.shape == frame.shape
    hot, truth = back > 0, frame > 0
    iou = (hot & truth).sum() / (hot | truth).sum()
    assert iou > 0.85


def test_overlay_draws_layers_that_are_switched_on():
    image = np.full((90, 120, 3), 128, np.uint8)
    heat = np.zeros((1, 32, 32), np.float32)
    heat[0, 8:16, 8:16] = 1.0
    result = FrameResult(
        source=0, source_name="x", frame=0, pts=0.0, wall=0.0, captured=0.0, class_id=3, label="3", score=0.9,
        heatmap=heat, geometry=Geometry((120 / 32, 90 / 32), (0.0, 0.0)),
        objects=[TrackedObject(np.array([10, 10, 60, 50], np.float32), 0.8, id=4)], image=image,
    )  # fmt: skip
    nothing = Overlay(OverlayOptions(False, False, False, False, False), polarity=1).draw(result)
    assert np.array_equal(nothing, image)
    only_heat = Overlay(OverlayOptions(True, False, False, False, False), polarity=1).draw(result)
    changed = np.abs(only_heat.astype(int) - image).sum(axis=2) > 0
    # evidence at map cells 8..16 = frame x 30..60, y 22.5..45: coloured there, nowhere far from it
    assert changed[25:42, 33:57].all() and not changed[60:, 80:].any()
    everything = Overlay(OverlayOptions(), polarity=1).draw(result, fps=25.0)
    assert not np.array_equal(everything, only_heat)


def _moving_boxes(frames: int) -> list[np.ndarray]:
    """Two boxes moving in opposite directions, crossing nowhere."""
    out = []
    for t in range(frames):
        out.append(np.array([[10 + 2 * t, 10, 40 + 2 * t, 40], [200 - 2 * t, 100, 230 - 2 * t, 130]], np.float32))
    return out


@pytest.mark.parametrize("name", ["bytetrack", "sort", "ocsort"])
def test_trackers_keep_ids_stable(name):
    tracker = make_tracker(TrackerOptions(name=name, minimum_consecutive_frames=1), frame_rate=25)  # type: ignore[arg-type]
    ids_seen = []
    for boxes in _moving_boxes(40):
        _, _, ids, _ = update_tracker(tracker, boxes, np.array([0.9, 0.8], np.float32))
        ids_seen.append(sorted(ids.tolist()))
    assert all(ids == ids_seen[-1] for ids in ids_seen[5:])  # two ids, the same ones, from early on
    assert len(set(ids_seen[-1])) == 2 and -1 not in ids_seen[-1]


def test_mot_output_scores_perfect_tracks_as_perfect(tmp_path):
    """Ground-truth boxes through the tracker and our MOT writer score as perfect with Roboflow's evaluation."""
    from edge_xcnn.stream.demo import track_metrics

    frames = _moving_boxes(30)
    gt = tmp_path / "gt.txt"
    gt.write_text(
        "".join(
            f"{t + 1},{k + 1},{b[0]:.0f},{b[1]:.0f},{b[2] - b[0]:.0f},{b[3] - b[1]:.0f},1,1,1\n"
            for t, boxes in enumerate(frames)
            for k, b in enumerate(boxes)
        )
    )
    tracker = make_tracker(TrackerOptions(minimum_consecutive_frames=1), frame_rate=25)
    sink = MotSink(tmp_path / "out.mot")
    for t, boxes in enumerate(frames):
        xyxy, scores, ids, _ = update_tracker(tracker, boxes, np.array([0.9, 0.9], np.float32))
        objects = tracked_objects(xyxy, scores, ids, None, ["0"], tracking=True)
        sink.write(FrameResult(0, "x", t, None, 0.0, 0.0, 0, "0", 1.0, None, Geometry((1, 1), (0, 0)), objects=objects))
    sink.close()
    metrics = track_metrics(gt, tmp_path / "out.mot")
    # Everything matches except the first frame, where ByteTrack has not confirmed the tracks yet.
    assert (metrics["FP"], metrics["IDSW"], metrics["FN"]) == (0, 0, 2)
    assert metrics["MOTA"] == pytest.approx(58 / 60) and metrics["HOTA"] > 0.95


def test_demo_writes_everything_and_its_metrics_add_up(tmp_path, default_model_onnx):
    result = CliRunner().invoke(
        app,
        [
            "demo",
            "--out",
            str(tmp_path),
            "--frames",
            "30",
            "--model",
            str(default_model_onnx),
            "--json",
            str(tmp_path / "m.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    for name in ("demo.mp4", "demo.jsonl", "demo.mot.txt", "clip/moving_digits.mp4", "clip/gt.txt"):
        assert (tmp_path / name).exists(), name
    report = json.loads((tmp_path / "m.json").read_text())
    m = report["metrics"]
    gt_boxes = len((tmp_path / "clip" / "gt.txt").read_text().splitlines())
    assert m["TP"] + m["FN"] == gt_boxes == 90
    assert m["MOTA"] == pytest.approx(1 - (m["FN"] + m["FP"] + m["IDSW"]) / gt_boxes)
    assert report["run"]["frames_out"] == 30
    assert "MOTA" in result.output and "IDF1" in result.output and "HOTA" in result.output


def test_bench_video_reports_decode_model_and_end_to_end_rates(tmp_path, default_model_onnx):
    from support.media import write_video

    video = write_video(tmp_path / "v.mp4", frames=20, size=(96, 128))
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        ["bench", "-m", str(default_model_onnx), "--batch", "1", "--images", "0", "--seconds", "0.3",
         "--video", str(video), "--json", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())
    for key in ("video_decode_fps", "video_model_fps", "video_end_to_end_fps", "video_serial_fps"):
        assert row[key] is not None and row[key] > 0, key
    assert "v.mp4: frames per second" in result.output
    bad = CliRunner().invoke(app, ["bench", "-m", str(default_model_onnx), "--video", str(tmp_path / "none.mp4")])
    assert bad.exit_code == 2 and "input not found" in bad.output
