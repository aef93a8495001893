"""What one processed frame is: the per-frame result every sink takes, and track events.

One type per frame (:class:`FrameResult`), made once by the source's :class:`~edge_xcnn.stream.step.FrameStep`
and never converted again: its boxes are one :class:`~edge_xcnn.detections.Detections`. ``to_json``
is the JSON-lines object of CONTRACTS "Results"; :class:`TrackEvent` the event sinks' track events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from edge_xcnn.detections import Detections
from edge_xcnn.preprocess import Geometry


@dataclass(frozen=True)
class SourceRef:
    """One input of a run, as sinks see it (never with credentials).

    Attributes:
        index: position on the command line (0-based).
        name: short and safe for file names and topic suffixes (``cam1``, ``10.0.0.2_main``).
        uri: the input as given, credentials redacted: the JSON lines' ``"source"``.
        width, height, fps: of the decoded frames (fps already divided by ``--vid-stride``).
        live: a stream or camera (newest-frame delivery) rather than a file or folder.
        picture: (width, height) of the pictures sinks get (``--preview-size``); None = the frame's own.
            Results (boxes, JSON) are always in source pixels.
        stills: an image folder: its frames need not follow one another (no gap fill by default).
    """

    index: int
    name: str
    uri: str
    width: int
    height: int
    fps: float
    live: bool = False
    picture: tuple[int, int] | None = None
    stills: bool = False

    @property
    def sequence(self) -> bool:
        """A video file: frames follow one another and results may wait (the gap fill's default)."""
        return not (self.live or self.stills)

    @property
    def picture_size(self) -> tuple[int, int]:
        """(width, height) of drawn pictures."""
        return self.picture or (self.width, self.height)


@dataclass
class FrameResult:
    """Everything known about one processed frame.

    Attributes:
        source: which input it came from.
        frame: 0-based position in the source's decoded stream; pts: stream seconds (None when unknown).
        wall: unix seconds when it was decoded; captured: ``time.monotonic()`` at the same moment.
        class_id, label, score: the image's class (softmax probability).
        detections: boxes in source pixels, with confidence, box classes (``--classify-boxes``) and track ids.
        classes: the model's class names (index = class id), for box labels.
        heatmap: network-resolution raw map (polarity not applied), for overlays; None for plain models.
        geometry: network <-> source pixels for this frame.
        image: the decoded frame, RGB uint8 (sinks that draw get an annotated copy instead, see ``Sink.write``);
            None when no sink of the run draws (results-only runs never convert the full frame).
    """

    source: SourceRef
    frame: int
    pts: float | None
    wall: float
    captured: float
    class_id: int
    label: str
    score: float
    detections: Detections
    classes: tuple[str, ...]
    heatmap: np.ndarray | None
    geometry: Geometry
    image: np.ndarray | None
    polarity: int = 1

    def box_label(self, k: int) -> str | None:
        ids = self.detections.class_id
        return None if ids is None else self.classes[int(ids[k])]

    def track_id(self, k: int) -> int | None:
        ids = self.detections.tracker_id
        return None if ids is None or ids[k] < 1 else int(ids[k])

    def to_json(self) -> dict[str, Any]:
        """The JSON-lines object of CONTRACTS.md."""
        d = self.detections
        objects = []
        for k in range(len(d)):
            label = self.box_label(k)
            objects.append(
                {
                    "id": self.track_id(k),
                    "xyxy": [round(float(v), 2) for v in d.xyxy[k]],
                    "score": round(float(d.confidence[k]), 6),
                    **({"label": label} if label is not None else {}),
                }
            )
        return {
            "source": self.source.uri,
            "frame": self.frame,
            "pts": None if self.pts is None else round(self.pts, 6),
            "wall": round(self.wall, 6),
            "label": self.label,
            "class_id": self.class_id,
            "score": round(self.score, 6),
            "objects": objects,
        }


@dataclass(frozen=True)
class TrackEvent:
    """A confirmed track appeared (``track_start``) or was given up / the source ended (``track_end``)."""

    event: Literal["track_start", "track_end"]
    source: SourceRef
    id: int
    label: str | None
    score: float
    first_frame: int
    last_frame: int
    xyxy: tuple[float, float, float, float] = field(default=(0.0, 0.0, 0.0, 0.0))

    def to_json(self) -> dict[str, Any]:
        """The event object of CONTRACTS "Results" (event sinks publish it)."""
        return {
            "event": self.event,
            "source": self.source.uri,
            "id": self.id,
            "label": self.label,
            "score": round(self.score, 6),
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "xyxy": [round(float(v), 2) for v in self.xyxy],
        }
