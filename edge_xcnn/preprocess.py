"""Frame to network input, the same everywhere: resize (stretch or letterbox) and /255 only.

Mean/std normalization lives inside the network (and the ONNX graph), so every runtime does
exactly this and nothing more. The returned :class:`Geometry` is the one place that maps network
(heatmap) pixels and source pixels into each other: boxes, points, masks and overlays all use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_xcnn.meta import ModelMeta

LETTERBOX_FILL = 114  # grey, as Ultralytics pads


@dataclass(frozen=True)
class Geometry:
    """How network pixels relate to source pixels: ``src = (net - offset) * scale`` per axis.

    Attributes:
        scale: source pixels per network pixel (x, y).
        offset: letterbox padding in network pixels (x, y).
        source: the source frame's (H, W); (0, 0) when unknown (then nothing is clipped).
    """

    scale: tuple[float, float]
    offset: tuple[float, float]
    source: tuple[int, int] = (0, 0)

    @classmethod
    def identity(cls, height: int = 0, width: int = 0) -> Geometry:
        """Network pixels are source pixels (a map already at the image's size)."""
        return cls((1.0, 1.0), (0.0, 0.0), (height, width))

    def to_source(self, xyxy: np.ndarray) -> np.ndarray:
        """N x 4 network-pixel boxes to source pixels, clipped to the frame when its size is known."""
        (sx, sy), (ox, oy) = self.scale, self.offset
        out = (np.asarray(xyxy, np.float32).reshape(-1, 4) - np.array([ox, oy, ox, oy], np.float32)) * np.array(
            [sx, sy, sx, sy], np.float32
        )
        height, width = self.source
        if height and width:
            out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
            out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
        return out

    def to_network(self, xyxy: np.ndarray) -> np.ndarray:
        """N x 4 source-pixel boxes to network pixels (float)."""
        (sx, sy), (ox, oy) = self.scale, self.offset
        box = np.asarray(xyxy, np.float64).reshape(-1, 4)
        return box / np.array([sx, sy, sx, sy]) + np.array([ox, oy, ox, oy])

    def point_to_source(self, x: float, y: float) -> tuple[float, float]:
        """The centre of network pixel (x, y) in source pixel coordinates (pixel centres at integers)."""
        (sx, sy), (ox, oy) = self.scale, self.offset
        return (x + 0.5 - ox) * sx - 0.5, (y + 0.5 - oy) * sy - 0.5

    def mask_to_network(self, mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """A source-pixel mask at the network's ``size`` (H, W): nearest neighbour, letterbox padding background."""
        height, width = mask.shape[:2]
        nw, nh = max(1, round(width / self.scale[0])), max(1, round(height / self.scale[1]))
        left, top = round(self.offset[0]), round(self.offset[1])
        out = np.zeros(size, bool)
        resized = cv2.resize(mask.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST) > 0
        out[top : top + nh, left : left + nw] = resized
        return out

    def source_region(self, net_map: np.ndarray) -> np.ndarray:
        """The part of a network-resolution map that covers the source frame (letterbox padding cut off)."""
        height, width = self.source if all(self.source) else net_map.shape[-2:]
        left, top = self.offset
        nw, nh = width / self.scale[0], height / self.scale[1]
        x0, y0 = round(left), round(top)
        return net_map[..., y0 : y0 + max(1, round(nh)), x0 : x0 + max(1, round(nw))]


def to_color(image: np.ndarray, color: str) -> np.ndarray:
    """Convert an RGB (HxWx3) or gray (HxW) uint8 image to what the model takes."""
    if color == "gray":
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


def resize_image(image: np.ndarray, size: tuple[int, int], mode: str = "stretch") -> tuple[np.ndarray, Geometry]:
    """Resize to ``size`` (H, W) by stretching or letterboxing; returns the image and its geometry."""
    h, w = image.shape[:2]
    if h < 1 or w < 1:
        raise ValueError(f"cannot resize an empty {h}x{w} image")
    th, tw = size
    if mode == "stretch":
        out = image if (h, w) == (th, tw) else cv2.resize(image, (tw, th), interpolation=_interp(h, w, th, tw))
        return out, Geometry(scale=(w / tw, h / th), offset=(0.0, 0.0), source=(h, w))
    if mode != "letterbox":
        raise ValueError(f"resize mode must be 'stretch' or 'letterbox', got {mode!r}")
    r = min(th / h, tw / w)
    nh, nw = max(1, round(h * r)), max(1, round(w * r))
    resized = cv2.resize(image, (nw, nh), interpolation=_interp(h, w, nh, nw))
    top, left = (th - nh) // 2, (tw - nw) // 2
    out = np.full((th, tw, *image.shape[2:]), LETTERBOX_FILL, dtype=image.dtype)
    out[top : top + nh, left : left + nw] = resized
    return out, Geometry(scale=(w / nw, h / nh), offset=(float(left), float(top)), source=(h, w))


def _interp(h: int, w: int, th: int, tw: int) -> int:
    return cv2.INTER_AREA if th * tw < h * w else cv2.INTER_LINEAR


def preprocess(image: np.ndarray, meta: ModelMeta) -> tuple[np.ndarray, Geometry]:
    """One frame (uint8 RGB HxWx3 or gray HxW) to float32 C x H x W in [0, 1], plus geometry."""
    resized, geometry = resize_image(to_color(image, meta.color), meta.input_size, meta.resize)
    chw = resized[None] if resized.ndim == 2 else resized.transpose(2, 0, 1)
    return np.ascontiguousarray(chw, dtype=np.float32) * np.float32(1 / 255), geometry
