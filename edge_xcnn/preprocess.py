"""Frame to network input, the same everywhere: resize (stretch or letterbox) and /255 only.

Mean/std normalization lives inside the network (and the ONNX graph), so every runtime does
exactly this and nothing more. The returned geometry maps heatmap pixels back to the source.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_xcnn.meta import ModelMeta

LETTERBOX_FILL = 114  # grey, as Ultralytics pads


@dataclass(frozen=True)
class Geometry:
    """How network pixels relate to source pixels: ``src = (net - offset) * scale`` per axis."""

    scale: tuple[float, float]
    offset: tuple[float, float]


def to_color(image: np.ndarray, color: str) -> np.ndarray:
    """Convert an RGB (HxWx3) or gray (HxW) uint8 image to what the model takes."""
    if color == "gray":
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


def resize_image(image: np.ndarray, size: tuple[int, int], mode: str = "stretch") -> tuple[np.ndarray, Geometry]:
    """Resize to ``size`` (H, W) by stretching or letterboxing; returns the image and its geometry."""
    h, w = image.shape[:2]
    th, tw = size
    if mode == "stretch":
        out = image if (h, w) == (th, tw) else cv2.resize(image, (tw, th), interpolation=_interp(h, w, th, tw))
        return out, Geometry(scale=(w / tw, h / th), offset=(0.0, 0.0))
    if mode != "letterbox":
        raise ValueError(f"resize mode must be 'stretch' or 'letterbox', got {mode!r}")
    r = min(th / h, tw / w)
    nh, nw = max(1, round(h * r)), max(1, round(w * r))
    resized = cv2.resize(image, (nw, nh), interpolation=_interp(h, w, nh, nw))
    top, left = (th - nh) // 2, (tw - nw) // 2
    out = np.full((th, tw, *image.shape[2:]), LETTERBOX_FILL, dtype=image.dtype)
    out[top : top + nh, left : left + nw] = resized
    return out, Geometry(scale=(w / nw, h / nh), offset=(float(left), float(top)))


def _interp(h: int, w: int, th: int, tw: int) -> int:
    return cv2.INTER_AREA if th * tw < h * w else cv2.INTER_LINEAR


def preprocess(image: np.ndarray, meta: ModelMeta) -> tuple[np.ndarray, Geometry]:
    """One frame (uint8 RGB HxWx3 or gray HxW) to float32 C x H x W in [0, 1], plus geometry."""
    resized, geometry = resize_image(to_color(image, meta.color), meta.input_size, meta.resize)
    chw = resized[None] if resized.ndim == 2 else resized.transpose(2, 0, 1)
    return np.ascontiguousarray(chw, dtype=np.float32) * np.float32(1 / 255), geometry
