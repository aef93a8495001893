"""From one frame's model outputs to what the runner reports: class, boxes, track ids (CONTRACTS "Results")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from edge_xcnn.localize import heatmap_to_boxes
from edge_xcnn.meta import ModelMeta
from edge_xcnn.preprocess import Geometry


@dataclass(frozen=True)
class LocalizeOptions:
    """Heatmap-to-boxes settings for video; the paper's rule is ``keep='largest'`` at threshold 0.5."""

    threshold: float | None = None  # None: the model's own (metadata), normally 0.5
    keep: Literal["largest", "all"] = "all"
    min_area: float = 0.01  # fraction of the heatmap's area: drops speckle contours
    score: Literal["peak", "mean"] = "peak"
    classify_boxes: bool = False  # classify each box's crop with the same model


@dataclass
class TrackedObject:
    """One box of a frame, with its track id once the tracker confirmed it."""

    xyxy: np.ndarray  # source pixels, float32 (4,)
    score: float
    id: int | None = None
    label: str | None = None
    class_id: int | None = None


@dataclass
class FrameResult:
    """Everything known about one processed frame."""

    source: int
    source_name: str
    frame: int
    pts: float | None
    wall: float
    captured: float
    class_id: int
    label: str
    score: float
    heatmap: np.ndarray | None  # model-resolution raw map (polarity not applied), for the overlay
    geometry: Geometry
    objects: list[TrackedObject] = field(default_factory=list)
    image: np.ndarray | None = None  # the source frame, RGB
    done: float = 0.0  # time.monotonic() when the result was complete

    def to_json(self) -> dict[str, Any]:
        """The JSON-lines object of CONTRACTS.md."""
        return {
            "source": self.source_name,
            "frame": self.frame,
            "pts": None if self.pts is None else round(self.pts, 6),
            "wall": round(self.wall, 6),
            "label": self.label,
            "class_id": self.class_id,
            "score": round(self.score, 6),
            "objects": [
                {
                    "id": o.id,
                    "xyxy": [round(float(v), 2) for v in o.xyxy],
                    "score": round(o.score, 6),
                    **({"label": o.label} if o.label is not None else {}),
                }
                for o in self.objects
            ],
        }


def tracked_objects(
    xyxy: np.ndarray,
    scores: np.ndarray,
    ids: np.ndarray,
    labels: np.ndarray | None,
    classes: list[str],
    *,
    tracking: bool,
) -> list[TrackedObject]:
    """The tracker's output as objects: ids 1-based (MOTChallenge), None where no track is confirmed yet."""
    objects = []
    for k in range(len(xyxy)):
        label_id = None if labels is None else int(labels[k])
        objects.append(
            TrackedObject(
                xyxy=xyxy[k],
                score=float(scores[k]),
                id=int(ids[k]) + 1 if tracking and ids[k] >= 0 else None,
                label=None if label_id is None else classes[label_id],
                class_id=label_id,
            )
        )
    return objects


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def frame_boxes(
    heatmap: np.ndarray, geometry: Geometry, meta: ModelMeta, options: LocalizeOptions, frame_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (source pixels, clipped to the frame) and scores from one raw heatmap."""
    h, w = heatmap.shape[-2:]
    boxes = heatmap_to_boxes(
        heatmap,
        polarity=meta.polarity,
        threshold=meta.threshold if options.threshold is None else options.threshold,
        keep=options.keep,
        min_area=options.min_area * h * w,
        score=options.score,
        scale=geometry.scale,
        offset=geometry.offset,
    )
    xyxy = boxes.xyxy.reshape(-1, 4).copy()
    height, width = frame_shape
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
    return xyxy, boxes.score.reshape(-1)


def crops(image: np.ndarray, xyxy: np.ndarray, margin: float = 0.1) -> list[np.ndarray]:
    """Each box's region of the frame, grown by ``margin`` of its size (a classifier wants some context)."""
    height, width = image.shape[:2]
    out = []
    for x0, y0, x1, y1 in xyxy:
        mx, my = (x1 - x0) * margin, (y1 - y0) * margin
        a, b = int(max(0, x0 - mx)), int(max(0, y0 - my))
        c, d = int(min(width, np.ceil(x1 + mx))), int(min(height, np.ceil(y1 + my)))
        out.append(image[b : max(d, b + 1), a : max(c, a + 1)])
    return out
