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
    # Frames before a new track gets an id (fewer flickering ids); None: 2, or 3 where the gap fill hands
    # a newly confirmed track its first boxes afterwards (confirmation then costs no boxes, see below).
    minimum_consecutive_frames: int | None = None
    minimum_iou_threshold: float = 0.1  # least IoU for a detection to continue a track
    high_conf_det_threshold: float = 0.7  # ByteTrack: first-stage association threshold
    # A confirmed track's gaps of up to this many frames filled by interpolation, its results held back
    # as long (edge_xcnn.stream.gapfill); None: FILE_FILL_GAPS for video files, 0 for live sources and
    # image folders (unrelated photos must not get boxes from their neighbours).
    fill_gaps: int | None = None
    # With a gap fill: a newly confirmed track also takes its unconfirmed boxes of the frames before.
    claim_first_frames: bool = True


# Chosen on validation clips (never the demo's): see the README's "Filling a track's short gaps".
FILE_FILL_GAPS = 12


def fill_gaps_for(options: TrackerOptions, sequence: bool) -> int:
    """Frames of gap a source's tracks get filled (0 = off).

    ``sequence``: a video file (``SourceRef.sequence``). Live sources keep one frame of latency, and an
    image folder's frames need not follow one another: both are off unless asked for.
    """
    if options.name == "none":
        return 0
    if options.fill_gaps is not None:
        return options.fill_gaps
    return FILE_FILL_GAPS if sequence else 0


def confirm_frames_for(options: TrackerOptions, sequence: bool) -> int:
    """Frames a new track needs before it gets an id.

    With the gap fill's claims a track's unconfirmed first boxes are given its id once it is confirmed,
    so a stricter confirmation drops more short false tracks and costs a real one nothing: on twelve
    validation clips 3 frames beat 2 for all four models tried (session 21, README).
    """
    if options.minimum_consecutive_frames is not None:
        return options.minimum_consecutive_frames
    return 3 if fill_gaps_for(options, sequence) > 0 and options.claim_first_frames else 2


def make_tracker(options: TrackerOptions, frame_rate: float, *, sequence: bool = False) -> Any | None:
    """One tracker instance (one per source: ids are never shared between sources)."""
    if options.lost_track_buffer < 1:
        raise ValueError(f"lost_track_buffer must be >= 1, got {options.lost_track_buffer}")
    if options.name == "none":
        return None
    import trackers

    common = {
        "lost_track_buffer": options.lost_track_buffer,
        "frame_rate": frame_rate,
        "minimum_consecutive_frames": confirm_frames_for(options, sequence),
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
