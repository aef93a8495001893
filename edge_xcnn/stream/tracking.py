"""Weakly supervised tracking: heatmap boxes go to Roboflow's ``trackers`` (ByteTrack, SORT, OC-SORT)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from edge_xcnn.detections import Detections

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
    if options.lost_track_buffer < 1:
        raise ValueError(f"lost_track_buffer must be >= 1, got {options.lost_track_buffer}")
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


def track(tracker: Any | None, detections: Detections) -> Detections:
    """Feed one frame's detections; returns what the tracker reports, with 1-based ids (-1: not confirmed yet).

    Without a tracker the detections come back as they are (``tracker_id`` None).
    """
    if tracker is None:
        return detections
    return Detections.from_supervision(tracker.update(detections.to_supervision()))
