"""Drawing results on frames: the paper's blue-red heatmap, boxes, labels, track ids and traces, FPS."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from edge_xcnn.colormap import diverging_rgb
from edge_xcnn.stream.results import FrameResult

# Distinct colours for track ids (RGB), cycled.
_PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240]],
    np.uint8,
)


@dataclass(frozen=True)
class OverlayOptions:
    """Which layers are drawn; each can be switched off from the command line."""

    heatmap: bool = True
    boxes: bool = True
    labels: bool = True
    tracks: bool = True  # ids and traces
    fps: bool = True
    alpha: float = 0.45  # heatmap opacity
    trace_length: int = 30  # frames of centre history drawn per track


def _signed_unit(heatmap: np.ndarray, polarity: int) -> np.ndarray:
    """Polarity applied and divided by the largest magnitude (not min-max normalized).

    So 0 stays neutral and the sign keeps its meaning: red evidence, blue counter-evidence, as the paper draws it.
    """
    heat = np.asarray(heatmap, np.float32).squeeze() * np.float32(polarity)
    return heat / max(float(np.abs(heat).max()), 1e-6)


def _blend(frame: np.ndarray, heat: np.ndarray, alpha: float) -> np.ndarray:
    """``frame * (1 - w) + colour * w`` with ``w = alpha * |heat|``: opacity follows the evidence.

    Colour times weight and 1 - weight are made at the map's resolution, resized as uint8 and applied
    with two saturating uint8 passes. At 1280x720 this took 2.5 ms per frame here, against 5.5 ms for
    ``cv2.blendLinear`` with full-size float32 weights (the same picture within rounding, except
    where the map changes sign between two of its cells).
    """
    height, width = frame.shape[:2]
    weight = np.float32(alpha) * np.abs(heat)
    premultiplied = (diverging_rgb(heat) * weight[..., None] + 0.5).astype(np.uint8)
    keep = np.repeat(((1.0 - weight) * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=2)
    premultiplied = cv2.resize(premultiplied, (width, height), interpolation=cv2.INTER_LINEAR)
    keep = cv2.resize(keep, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.add(cv2.multiply(frame, keep, scale=1 / 255), premultiplied)


class Overlay:
    """Stateful drawer for one source (it remembers each track's recent centres)."""

    def __init__(self, options: OverlayOptions) -> None:
        self.options = options
        self._traces: dict[int, deque[tuple[int, int]]] = {}

    def draw(self, result: FrameResult, fps: float | None = None) -> np.ndarray:
        """An annotated copy of ``result.image`` (RGB)."""
        opts = self.options
        if result.image is None:
            raise ValueError("this result has no frame to draw on (the run kept none: no sink wanted pictures)")
        if opts.heatmap and result.heatmap is not None:
            # Colour and opacity are made at the map's resolution and only then resized: cheap at 4K too.
            # Letterbox padding is cut off first, so the map lines up with the frame as boxes do.
            heat = result.geometry.source_region(_signed_unit(result.heatmap, result.polarity))
            frame = _blend(result.image, heat, opts.alpha)  # a new picture: the result's stays as decoded
        else:
            frame = result.image.copy()
        height, width = frame.shape[:2]
        # Boxes are in source pixels; a preview (--preview-size) is smaller.
        sx, sy = width / max(1, result.source.width), height / max(1, result.source.height)
        thickness = max(1, round(min(height, width) / 240))
        font_scale = max(0.4, min(height, width) / 600)
        seen: set[int] = set()
        d = result.detections
        for k in range(len(d)):
            track_id, label, score = result.track_id(k), result.box_label(k), float(d.confidence[k])
            colour = self._colour(track_id)
            x0, y0, x1, y1 = (round(float(v) * s) for v, s in zip(d.xyxy[k], (sx, sy, sx, sy), strict=True))
            if opts.boxes:
                cv2.rectangle(frame, (x0, y0), (x1, y1), colour, thickness, cv2.LINE_AA)
            parts = []
            if opts.tracks and track_id is not None:
                parts.append(f"#{track_id}")
            if opts.labels:
                parts.append(f"{label} {score:.2f}" if label is not None else f"{score:.2f}")
            if parts and (opts.boxes or opts.labels):
                _label(frame, " ".join(parts), (x0, y0), colour, font_scale, thickness)
            if opts.tracks and track_id is not None:
                seen.add(track_id)
                trace = self._traces.setdefault(track_id, deque(maxlen=opts.trace_length))
                trace.append((int((x0 + x1) / 2), int((y0 + y1) / 2)))
                if len(trace) > 1:
                    cv2.polylines(frame, [np.array(trace, np.int32)], False, colour, thickness, cv2.LINE_AA)
        for gone in set(self._traces) - seen:
            self._traces.pop(gone)
        header = []
        if opts.labels:
            header.append(f"{result.label} {result.score:.2f}")
        if opts.fps and fps:
            header.append(f"{fps:.1f} FPS")
        if header:
            _label(frame, "  ".join(header), (0, 0), (20, 20, 20), font_scale, thickness, inside=True)
        return frame

    @staticmethod
    def _colour(track_id: int | None) -> tuple[int, int, int]:
        if track_id is None:
            return (255, 255, 255)
        return tuple(int(c) for c in _PALETTE[track_id % len(_PALETTE)])  # type: ignore[return-value]


def _label(
    frame: np.ndarray,
    text: str,
    origin: tuple[int, int],
    colour: tuple[int, int, int],
    scale: float,
    thickness: int,
    *,
    inside: bool = False,
) -> None:
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x, y = origin
    top = y if inside or y - th - base - 2 < 0 else y - th - base - 2
    cv2.rectangle(frame, (x, top), (x + tw + 4, top + th + base + 2), colour, cv2.FILLED)
    text_colour = (255, 255, 255) if sum(colour) < 384 else (0, 0, 0)
    cv2.putText(
        frame, text, (x + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, text_colour, thickness, cv2.LINE_AA
    )
