"""Heatmap to detections: the one rule used by eval, compare, the INT8 agreement report and run.

The paper's rule: apply the model's polarity, min-max normalize per image, threshold at 0.5,
take the external contour of largest area, its bounding box is the object. ``keep="all"`` gives
every contour (several objects in a frame).
"""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np

from edge_xcnn.detections import Detections
from edge_xcnn.preprocess import Geometry


def normalize_heatmap(heatmap: np.ndarray, polarity: int = 1) -> np.ndarray:
    """Evidence map in [0, 1]: polarity applied, then min-max normalized (flat maps become 0)."""
    heat = np.asarray(heatmap, dtype=np.float32).squeeze()
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be H x W (or 1 x H x W), got {np.shape(heatmap)}")
    heat = heat * np.float32(polarity)
    lo, hi = float(heat.min()), float(heat.max())
    if hi - lo < 1e-12:
        return np.zeros_like(heat)
    return (heat - lo) / (hi - lo)


def heatmap_to_detections(
    heatmap: np.ndarray,
    geometry: Geometry | None = None,
    *,
    polarity: int = 1,
    threshold: float = 0.5,
    keep: Literal["largest", "all"] = "largest",
    min_area: float = 0.0,
    score: Literal["peak", "mean"] = "peak",
) -> Detections:
    """Boxes from one raw heatmap by thresholding its normalized evidence map (CONTRACTS "Heatmap to boxes").

    Args:
        heatmap: the model's raw tanh map, H x W or 1 x H x W.
        geometry: maps heatmap pixels to source pixels (``preprocess`` returns it) and clips boxes to
            the frame; None = heatmap pixels.
        polarity: the model's polarity (+1/-1), from its metadata.
        threshold: fraction of the normalized range kept (``>= threshold``); paper: 0.5.
        keep: ``largest`` (the paper's rule: the contour of largest area) or ``all``.
        min_area: drop contours whose box is smaller than this, in heatmap pixels.
        score: ``peak`` or ``mean`` normalized heat inside the contour (the detections' confidence).

    Returns:
        Detections sorted by contour area, largest first.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if keep not in ("largest", "all"):
        raise ValueError(f"keep must be 'largest' or 'all', got {keep!r}")
    evidence = normalize_heatmap(heatmap, polarity)
    binary = (evidence >= threshold).astype(np.uint8)
    if evidence.max() <= 0.0 or not binary.any():
        return Detections()
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    found: list[tuple[float, int, np.ndarray, float]] = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        if w * h < min_area:
            continue
        region = np.zeros((h, w), np.uint8)
        cv2.drawContours(region, [contour], -1, 1, thickness=cv2.FILLED, offset=(-x, -y))
        window = (slice(y, y + h), slice(x, x + w))
        inside = evidence[window][(region > 0) & (binary[window] > 0)]
        value = float(inside.max() if score == "peak" else inside.mean()) if inside.size else 0.0
        # contourArea is 0 for lines and single pixels: break ties by the box area.
        found.append((cv2.contourArea(contour), w * h, np.array([x, y, x + w, y + h], np.float32), value))
    if not found:
        return Detections()
    found.sort(key=lambda item: (item[0], item[1]), reverse=True)
    if keep == "largest":
        found = found[:1]
    xyxy = np.stack([item[2] for item in found])
    if geometry is not None:
        xyxy = geometry.to_source(xyxy)
    return Detections(xyxy=xyxy, confidence=np.array([item[3] for item in found], np.float32))


def heatmap_to_boxes(
    heatmap: np.ndarray,
    *,
    scale: tuple[float, float] = (1.0, 1.0),
    offset: tuple[float, float] = (0.0, 0.0),
    **rule: Any,
) -> Detections:
    """Deprecated spelling of :func:`heatmap_to_detections` with the geometry as ``scale``/``offset``.

    Kept only so that callers not yet moved keep working; it adds no rule of its own.
    """
    return heatmap_to_detections(heatmap, Geometry(tuple(scale), tuple(offset)), **rule)  # type: ignore[arg-type]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N x 4) with every box in ``b`` (M x 4), xyxy, as N x M."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
