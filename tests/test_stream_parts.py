"""The runner's parts on their own: URIs, overlay geometry, tracking and its metrics, the demo."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_xcnn.cli import app
from edge_xcnn.detections import Detections
from edge_xcnn.errors import BadData
from edge_xcnn.preprocess import Geometry, resize_image
from edge_xcnn.stream.overlay import Overlay, OverlayOptions
from edge_xcnn.stream.results import FrameResult, SourceRef
from edge_xcnn.stream.sink import SinkContext
from edge_xcnn.stream.sinks import MotSink
from edge_xcnn.stream.tracking import TrackerOptions, make_tracker, track
from edge_xcnn.stream.uri import parse_sink, parse_source, redact, redact_text

SOURCE = SourceRef(0, "x", "x", 120, 90, 25.0)


def frame_result(t, detections, image=None, heatmap=None, geometry=None):
    return FrameResult(
        source=SOURCE, frame=t, pts=None, wall=0.0, captured=0.0, class_id=0, label="0", score=1.0,
        detections=detections, classes=tuple("0123456789"), heatmap=heatmap,
        geometry=geometry or Geometry.identity(90, 120),
        image=np.zeros((90, 120, 3), np.uint8) if image is None else image,
    )  # fmt: skip


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
    assert parse_sink("out/a.jsonl").kind == "jsonl"
    assert parse_sink("mqtt://broker/edge").kind == "mqtt"
    assert parse_sink("out/a.mp4").for_source(1, 2, "cam").endswith("a_1_cam.mp4")
    assert parse_sink("t.mot.txt", kind="mot").for_source(0, 2, "cam") == "t_0_cam.mot.txt"


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("rtsp://admin:pw@cam/x", "rtsp://***@cam/x"),
        ("rtsp://cam/x", "rtsp://cam/x"),
        ("rtsp://admin:p@ss@cam:554/x", "rtsp://***@cam:554/x"),  # '@' inside the password
        ("rtsp://admin:a:b:c@cam/x", "rtsp://***@cam/x"),  # ':' inside the password
        ("rtsp://admin:p%40ss%3Aw@cam/x", "rtsp://***@cam/x"),  # %-escapes
        ("http://cam/video?user=admin&password=secret&fps=5", "http://cam/video?user=***&password=***&fps=5"),
        ("https://h/s.m3u8?token=abc;sig=def#t", "https://h/s.m3u8?token=***;sig=***#t"),
        ("http://h/x?api_key=k&pwd=p&Auth=a&pass=q", "http://h/x?api_key=***&pwd=***&Auth=***&pass=***"),
    ],
)
def test_credentials_are_redacted(uri, shown):
    assert redact(uri) == shown
    assert redact_text(f"failed: {uri} (401)") == f"failed: {shown} (401)"


def test_credentials_in_messages_are_redacted():
    text = "Connection to tcp://1.2.3.4 failed for rtsp://admin:pw@1.2.3.4:554/a and http://u:v@h/"
    assert redact_text(text) == "Connection to tcp://1.2.3.4 failed for rtsp://***@1.2.3.4:554/a and http://***@h/"


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_heatmap_lines_up_with_the_frame(mode):
    """A bright square in the frame, resized as the model sees it, is drawn back onto the same square
    (by ``Overlay.draw``, the code the runner runs)."""
    frame = np.zeros((120, 200), np.uint8)
    frame[30:70, 120:170] = 255
    net, geometry = resize_image(frame, (64, 64), mode)
    heat = net.astype(np.float32) / 127.5 - 1.0  # a map that equals the image
    if mode == "letterbox":
        heat[net == 114] = -1.0  # padding carries no evidence
    image = np.full((120, 200, 3), 128, np.uint8)
    result = frame_result(0, Detections(), image=image, heatmap=heat[None], geometry=geometry)
    drawn = Overlay(OverlayOptions(True, False, False, False, False, alpha=1.0)).draw(result)
    hot = drawn[..., 0].astype(int) - drawn[..., 2].astype(int) > 40  # red: evidence
    truth = frame > 0
    iou = (hot & truth).sum() / (hot | truth).sum()
    assert iou > 0.8


def test_overlay_draws_layers_that_are_switched_on():
    image = np.full((90, 120, 3), 128, np.uint8)
    heat = np.zeros((1, 32, 32), np.float32)
    heat[0, 8:16, 8:16] = 1.0
    detections = Detections(np.array([[10, 10, 60, 50]], np.float32), [0.8], tracker_id=[4])
    result = frame_result(
        0, detections, image=image, heatmap=heat, geometry=Geometry((120 / 32, 90 / 32), (0, 0), (90, 120))
    )
    nothing = Overlay(OverlayOptions(False, False, False, False, False)).draw(result)
    assert np.array_equal(nothing, image)
    only_heat = Overlay(OverlayOptions(True, False, False, False, False)).draw(result)
    changed = np.abs(only_heat.astype(int) - image).sum(axis=2) > 0
    # evidence at map cells 8..16 = frame x 30..60, y 22.5..45: coloured there, nowhere far from it
    assert changed[25:42, 33:57].all() and not changed[60:, 80:].any()
    everything = Overlay(OverlayOptions()).draw(result, fps=25.0)
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
        tracked = track(tracker, Detections(boxes, [0.9, 0.8]))
        ids_seen.append(sorted(tracked.tracker_id.tolist()))
    assert all(ids == ids_seen[-1] for ids in ids_seen[5:])  # two ids, the same ones, from early on
    assert len(set(ids_seen[-1])) == 2 and min(ids_seen[-1]) >= 1  # 1-based, all confirmed


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
    sink = MotSink.open(parse_sink(str(tmp_path / "out.mot"), kind="mot"), SinkContext((SOURCE,)))
    for t, boxes in enumerate(frames):
        sink.write(frame_result(t, track(tracker, Detections(boxes, [0.9, 0.9]))), None)
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
    # the plain-language reading says the same numbers in words
    output = " ".join(result.output.split())
    assert f"holds {gt_boxes} digit appearances" in output and f"boxed {m['TP']} of them" in output
    assert f"drew {m['FP']} boxes where no digit was" in output


def test_bench_video_reports_decode_model_and_end_to_end_rates(tmp_path, default_model_onnx):
    from support.media import write_video

    video = write_video(tmp_path / "v.mp4", frames=20, size=(96, 128))
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        ["bench", "-m", str(default_model_onnx), "--batch", "1", "--images", "0", "--seconds", "0.3",
         "--video", str(video), "--json", str(out), "--sources", "2", "--rounds", "3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())
    for key in ("video_decode_fps", "video_model_fps", "video_end_to_end_fps", "video_serial_fps",
                "video_raw_decode_fps", "video_results_fps", "video_limit_fps", "video_sources_fps"):  # fmt: skip
        assert row[key] is not None and row[key] > 0, key
    video_row = row["video"]
    assert video_row["frames"] == 20 and video_row["sources"] == 2
    # Every rate was measured in each of the 3 rounds; the reported one is their median.
    rounds = video_row["round_fps"]
    assert video_row["rounds"] == 3 and sorted(rounds) == [
        "annotated",
        "decode",
        "model",
        "raw_decode",
        "results",
        "sources",
    ]
    for name, key in (
        ("raw_decode", "video_raw_decode_fps"),
        ("results", "video_results_fps"),
        ("sources", "video_sources_fps"),
    ):
        assert len(rounds[name]) == 3 and row[key] == pytest.approx(sorted(rounds[name])[1]), name
    # The limit is what decoding and inference cost together, so it is below each of them.
    assert row["video_limit_fps"] == pytest.approx(1 / (1 / row["video_raw_decode_fps"] + 1 / row["video_model_fps"]))
    assert video_row["results_over_limit"] == pytest.approx(row["video_results_fps"] / row["video_limit_fps"])
    assert "results only" not in video_row["runtime"] and "encoder: " in video_row["runtime"]
    assert "v.mp4: frames per second" in result.output and "limit 1/(1/raw + 1/model)" in result.output
    bad = CliRunner().invoke(app, ["bench", "-m", str(default_model_onnx), "--video", str(tmp_path / "none.mp4")])
    assert bad.exit_code == 2 and "input not found" in bad.output


def test_frame_step_tracks_and_reports_track_starts_and_ends():
    """One source's step: its own tracker's ids, a start when a track is confirmed, an end once it is gone."""
    from edge_xcnn.checkpoint import DEFAULT_MODEL, read_meta
    from edge_xcnn.stream.sources import Frame
    from edge_xcnn.stream.step import FrameStep, LocalizeOptions

    meta = read_meta(DEFAULT_MODEL)
    step = FrameStep(SOURCE, meta, LocalizeOptions(), TrackerOptions(minimum_consecutive_frames=1, lost_track_buffer=5))
    logits = np.zeros(meta.num_classes, np.float32)
    logits[3] = 5.0
    boxes = _moving_boxes(20)
    events = []
    for t in range(30):  # two boxes for 20 frames, then nothing
        frame = Frame(0, t, None, np.zeros((90, 120, 3), np.uint8), 0.0, 0.0)
        found = Detections(boxes[t], [0.9, 0.9]) if t < 20 else Detections()
        result, new = step.finish(frame, logits, None, Geometry.identity(90, 120), found)
        assert result.label == meta.classes[3] and result.source is SOURCE
        events += new
    starts = [e for e in events if e.event == "track_start"]
    ends = [e for e in events if e.event == "track_end"]
    assert len(starts) == 2 and {e.id for e in starts} == {e.id for e in ends}
    assert all(e.first_frame <= 1 and e.last_frame == 19 for e in ends)
    assert set(ends[0].to_json()) == {"event", "source", "id", "label", "score", "first_frame", "last_frame", "xyxy"}
    assert step.end() == []  # nothing left open
