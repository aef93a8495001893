"""Gap fill: a track's short gaps interpolated, results held back a fixed number of frames, never lost or reordered."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_xcnn.cli import app
from edge_xcnn.detections import Detections
from edge_xcnn.preprocess import Geometry
from edge_xcnn.stream.gapfill import GapFiller
from edge_xcnn.stream.results import FrameResult, SourceRef
from edge_xcnn.stream.tracking import FILE_FILL_GAPS, TrackerOptions, confirm_frames_for, fill_gaps_for

SOURCE = SourceRef(0, "x", "x", 120, 90, 25.0)


def result(t: int, boxes: dict[int, tuple[float, float, float, float]], class_id: int | None = None) -> FrameResult:
    ids = list(boxes)
    d = Detections(
        np.array([boxes[i] for i in ids], np.float32).reshape(-1, 4),
        np.full(len(ids), 0.8, np.float32),
        None if class_id is None else np.full(len(ids), class_id, np.int64),
        np.array(ids, np.int64),
    )
    return FrameResult(
        source=SOURCE, frame=t, pts=None, wall=0.0, captured=0.0, class_id=0, label="0", score=1.0, detections=d,
        classes=tuple("0123456789"), heatmap=None, geometry=Geometry.identity(90, 120), image=None,
    )  # fmt: skip


def run(filler: GapFiller[int], frames: list[FrameResult]) -> list[tuple[FrameResult, int]]:
    out = []
    for r in frames:
        out += filler.push(r, r.frame)
    return out + filler.flush()


def test_a_short_gap_is_interpolated_and_results_leave_in_order_once():
    box = {t: (10.0 + 2 * t, 20.0, 30.0 + 2 * t, 44.0) for t in range(12)}
    frames = [result(t, {5: box[t]} if t not in (3, 4, 5) else {}, class_id=7) for t in range(12)]
    filler: GapFiller[int] = GapFiller(4)
    released_early = []
    for r in frames[:6]:
        released_early += filler.push(r, r.frame)
    assert [r.frame for r, _ in released_early] == [0, 1]  # four frames held back
    out = [*released_early, *run(filler, frames[6:])]
    assert [r.frame for r, _ in out] == list(range(12)) and [e for _, e in out] == list(range(12))
    for r, _ in out:
        assert len(r.detections) == 1 and r.track_id(0) == 5 and r.box_label(0) == "7"
        np.testing.assert_allclose(r.detections.xyxy[0], box[r.frame], atol=1e-4)  # the motion was linear
    assert filler.filled == 3


def test_gaps_longer_than_the_window_and_unconfirmed_boxes_stay_empty():
    boxes = {0: {1: (0, 0, 10, 10)}, 6: {1: (12, 0, 22, 10)}, 7: {-1: (0, 0, 9, 9)}, 9: {-1: (0, 0, 9, 9)}}
    frames = [result(t, boxes.get(t, {})) for t in range(10)]
    out = run(GapFiller(4), frames)
    assert [len(r.detections) for r, _ in out] == [1, 0, 0, 0, 0, 0, 1, 1, 0, 1]  # a 5-frame gap > 4; -1 unowned


def test_a_filled_box_joins_other_boxes_of_its_frame():
    frames = [result(0, {1: (0, 0, 10, 10)}), result(1, {2: (50, 50, 60, 60)}), result(2, {1: (4, 0, 14, 10)})]
    middle = run(GapFiller(2), frames)[1][0]
    assert sorted(middle.detections.tracker_id.tolist()) == [1, 2]
    np.testing.assert_allclose(middle.detections.xyxy[middle.detections.tracker_id == 1][0], (2, 0, 12, 10))


def test_a_newly_confirmed_track_claims_its_unconfirmed_first_boxes():
    """A track confirmed on its third frame takes its earlier boxes (unowned: < 1), followed back by overlap."""
    frames = [result(0, {-1: (0, 0, 10, 10)}), result(1, {-1: (1, 0, 11, 10), -2: (60, 60, 70, 70)}),
              result(2, {4: (2, 0, 12, 10)}), result(3, {4: (3, 0, 13, 10)})]  # fmt: skip
    filler: GapFiller[int] = GapFiller(3)
    out = run(filler, frames)
    assert [r.detections.tracker_id.tolist() for r, _ in out] == [[4], [4, -2], [4], [4]]
    assert filler.claimed == 2 and filler.filled == 0
    unclaimed = run(GapFiller(3, backfill=False), frames)
    assert [r.detections.tracker_id.tolist() for r, _ in unclaimed] == [[-1], [-1, -2], [4], [4]]


def test_zero_frames_passes_each_result_straight_through():
    filler: GapFiller[int] = GapFiller(0)
    r = result(0, {})
    assert filler.push(r, 0) == [(r, 0)] and filler.flush() == []
    with pytest.raises(ValueError):
        GapFiller(-1)


def test_video_files_fill_by_default_live_sources_and_image_folders_do_not():
    assert fill_gaps_for(TrackerOptions(), sequence=True) == FILE_FILL_GAPS > 0
    assert fill_gaps_for(TrackerOptions(), sequence=False) == 0  # live (one frame of latency) or stills
    assert fill_gaps_for(TrackerOptions(fill_gaps=3), sequence=False) == 3
    assert fill_gaps_for(TrackerOptions(name="none"), sequence=True) == 0
    # confirmation is stricter only where the gap fill hands a confirmed track its first boxes
    assert confirm_frames_for(TrackerOptions(), sequence=True) == 3
    assert confirm_frames_for(TrackerOptions(), sequence=False) == 2
    assert confirm_frames_for(TrackerOptions(claim_first_frames=False), sequence=True) == 2
    assert confirm_frames_for(TrackerOptions(minimum_consecutive_frames=1), sequence=True) == 1
    assert SourceRef(0, "v", "v.mp4", 8, 8, 25.0).sequence
    assert not SourceRef(0, "c", "rtsp://c", 8, 8, 25.0, live=True).sequence
    assert not SourceRef(0, "d", "photos/", 8, 8, 25.0, stills=True).sequence


def test_run_on_moving_digits_fills_gaps_and_scores_fewer_misses(tmp_path):
    """The shipped model on a real clip: filled and claimed boxes cut the misses; no frame lost or reordered."""
    from edge_xcnn.checkpoint import DEFAULT_ONNX
    from edge_xcnn.stream.demo import track_metrics
    from edge_xcnn.train.datasets.moving import write_moving_digits

    clip = write_moving_digits(tmp_path / "clip", split="val", frames=80, seed=0, footage="held-out")
    rows, metrics = {}, {}
    for n in (0, FILE_FILL_GAPS):
        mot, jsonl = tmp_path / f"{n}.mot.txt", tmp_path / f"{n}.jsonl"
        cli = CliRunner().invoke(
            app, ["run", str(clip.video), "-m", str(DEFAULT_ONNX), "--mot", str(mot), "--json", str(jsonl),
                  "--fill-gaps", str(n), "--headless", "--threads", "1", "--summary", str(tmp_path / "summary.json"),
                  "--overwrite"],
        )  # fmt: skip
        assert cli.exit_code == 0, cli.output
        rows[n] = set(mot.read_text().splitlines())
        metrics[n] = track_metrics(clip.gt, mot)
        frames = [json.loads(line)["frame"] for line in jsonl.read_text().splitlines()]
        assert frames == list(range(80))  # each frame once, in order, none lost at the end
    assert metrics[FILE_FILL_GAPS]["FN"] < metrics[0]["FN"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["filled_boxes"] > 0 and summary["claimed_boxes"] > 0 and summary["fill_gaps"] == [FILE_FILL_GAPS]
    added = rows[FILE_FILL_GAPS] - rows[0]  # (a stricter confirmation also drops some 2-frame tracks)
    assert len(added) >= summary["filled_boxes"]
    assert f"{summary['filled_boxes']} boxes filled" in " ".join(cli.output.split())


def test_an_image_folder_runs_without_the_gap_fill_unless_asked(tmp_path):
    """Photos of a folder need not follow one another: none gets a box interpolated from its neighbours."""
    import cv2

    from edge_xcnn.checkpoint import DEFAULT_ONNX

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(4):
        cv2.imwrite(str(folder / f"{k}.png"), rng.integers(0, 255, (64, 80, 3), np.uint8))
    for extra, expected in (([], 0), (["--fill-gaps", "3"], 3)):
        summary = tmp_path / f"s{expected}.json"
        cli = CliRunner().invoke(
            app, ["run", str(folder), "-m", str(DEFAULT_ONNX), "--json", str(tmp_path / f"{expected}.jsonl"),
                  "--summary", str(summary), "--headless", *extra],
        )  # fmt: skip
        assert cli.exit_code == 0, cli.output
        assert json.loads(summary.read_text())["fill_gaps"] == [expected]
