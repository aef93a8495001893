"""Weakly supervised tracking: heatmap boxes go to Roboflow's ``trackers`` (ByteTrack, SORT, OC-SORT)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

TrackerName = Literal["bytetrack", "sort", "ocsort", "none"]
TRACKERS: tuple[str, ...] = ("bytetrack", "sort", "ocsort", "none")


@dataclass(frozen=True)
class TrackerOptions:
    """The parameters users tune, with defaults for heatmap boxes (scores are normalized heat in [0.5, 1])."""

    name: TrackerName = "bytetrack"
    lost_track_buffer: int = 30  # frames a lost track is kept for re-association
    track_activation_threshold: float = 0.6  # a detection needs this score to start a track
    minimum_consecutive_frames: int = 2  # frames before a new track gets an id (fewer flickering ids)
    minimum_iou_threshold: float = 0.1  # least IoU for a detection to continue a track
    high_conf_det_threshold: float = 0.7  # ByteTrack: first-stage association threshold


def make_tracker(options: TrackerOptions, frame_rate: float) -> Any | None:
    """One tracker instance (one per source: ids are never shared between sources)."""
    if options.name == "none":
        return None
    import trackers

    common = {
        "lost_track_buffer": options.lost_track_buffer,
        "frame_rate": frame_rate,
        "minimum_consecutive_frames": options.minimum_consecutive_frames,
        "minimum_iou_threshold": options.minimum_iou_threshold,
    }
    if options.name == "bytetrack":
        return trackers.ByteTrackTracker(
            **common,
            track_activation_threshold=options.track_activation_threshold,
            high_conf_det_threshold=options.high_conf_det_threshold,
        )
    if options.name == "sort":
        return trackers.SORTTracker(**common, track_activation_threshold=options.track_activation_threshold)
    if options.name == "ocsort":  # OC-SORT has one score threshold: the first-stage one
        return trackers.OCSORTTracker(**common, high_conf_det_threshold=options.track_activation_threshold)
    raise ValueError(f"tracker must be one of {TRACKERS}, got {options.name!r}")


def update_tracker(
    tracker: Any | None, xyxy: np.ndarray, scores: np.ndarray, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Feed one frame's boxes; returns (xyxy, scores, ids, labels) of what the tracker reports.

    Ids are -1 for detections not (yet) part of a confirmed track; without a tracker every id is -1.
    """
    if tracker is None:
        return xyxy, scores, np.full(len(xyxy), -1, np.int64), labels
    import supervision as sv

    detections = sv.Detections(
        xyxy=np.asarray(xyxy, np.float32).reshape(-1, 4),
        confidence=np.asarray(scores, np.float32),
        class_id=None if labels is None else np.asarray(labels, np.int64),
    )
    tracked = tracker.update(detections)
    ids = np.asarray(tracked.tracker_id if tracked.tracker_id is not None else [], np.int64).reshape(-1)
    confidence = tracked.confidence if tracked.confidence is not None else np.ones(len(tracked), np.float32)
    out_labels = None if labels is None or tracked.class_id is None else np.asarray(tracked.class_id, np.int64)
    return np.asarray(tracked.xyxy, np.float32).reshape(-1, 4), np.asarray(confidence, np.float32), ids, out_labels
