"""Every localization figure ``edge-xcnn eval`` reports, accumulated one image at a time.

What the default model is judged by (issue "a localizer worth shipping"), in one pass over the data:
GT-known and top-1 loc by the paper's rule (largest contour, IoU >= 0.5) at the model's own
threshold and at the paper's fixed 0.5; MaxBoxAccV2 and PxAP as wsolevaluation computes them
(``edge_xcnn.explain.metrics``, threshold-free); and GT-known loc per third of background
saturation, the measurement that exposed the colour shortcut (the old default: 66% on the least
saturated third, 7% on the most).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from edge_xcnn.explain.metrics import BoxAccumulator, PxAPAccumulator
from edge_xcnn.localize import box_iou, heatmap_to_boxes

IOU = 0.5


def background_saturation(image: np.ndarray, mask: np.ndarray | None) -> float:
    """Mean HSV saturation (0-255) of an RGB image's pixels outside the object mask."""
    if image.ndim != 3:
        return 0.0
    saturation = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 1]
    outside = ~mask if mask is not None else np.ones(saturation.shape, bool)
    return float(saturation[outside].mean()) if outside.any() else float(saturation.mean())


@dataclass
class LocalizationReport:
    """Accumulates one image at a time; ``figures()`` gives the JSON block of ``eval``."""

    polarity: int
    threshold: float
    ious: dict[float, list[float]] = field(default_factory=dict)
    correct: list[bool] = field(default_factory=list)
    saturation: list[float] = field(default_factory=list)
    boxes_v2: BoxAccumulator = field(default_factory=lambda: BoxAccumulator(multi_contour=True))
    pxap: PxAPAccumulator = field(default_factory=PxAPAccumulator)
    has_masks: bool = True

    def __post_init__(self) -> None:
        self.ious = {t: [] for t in sorted({self.threshold, 0.5})}

    def add(
        self,
        heat: np.ndarray,
        image: np.ndarray,
        box: np.ndarray,
        mask: np.ndarray | None,
        correct: bool,
        scale: tuple[float, float],
        offset: tuple[float, float],
    ) -> np.ndarray | None:
        """Add one image (raw heatmap at network resolution); returns its box at the model's threshold."""
        at_model = None
        for t, store in self.ious.items():
            found = heatmap_to_boxes(heat, polarity=self.polarity, threshold=t, scale=scale, offset=offset)
            pred = found.xyxy[0] if len(found) else None
            store.append(float(box_iou(pred, box)[0, 0]) if pred is not None else 0.0)
            if t == self.threshold:
                at_model = pred
        self.correct.append(bool(correct))
        self.saturation.append(background_saturation(image, mask))
        evidence = np.asarray(heat, np.float32).squeeze() * self.polarity
        h, w = image.shape[:2]
        if evidence.shape != (h, w):  # wsolevaluation scores maps at the image's resolution
            evidence = cv2.resize(evidence, (w, h), interpolation=cv2.INTER_LINEAR)
        # wsolevaluation's boxes are inclusive (x1 = last pixel); ours are exclusive edges.
        self.boxes_v2.accumulate(evidence, (np.asarray(box).reshape(1, 4) - [0, 0, 1, 1]).clip(0))
        if mask is None:
            self.has_masks = False
        else:
            self.pxap.accumulate(evidence, mask)
        return at_model

    def figures(self) -> dict[str, Any]:
        correct = np.array(self.correct)
        out: dict[str, Any] = {"rule": f"largest contour, IoU >= {IOU}", "threshold": self.threshold}
        for t, values in self.ious.items():
            ious = np.array(values)
            hit = ious >= IOU
            key = "at_model_threshold" if t == self.threshold else "at_0.5"
            block = {"gt_known_loc": float(hit.mean()), "top1_loc": float((hit & correct).mean()),
                     "mean_iou": float(ious.mean())}  # fmt: skip
            out[key] = block
            if t == 0.5:
                out["at_0.5"] = block
        model = out["at_model_threshold"]
        out.update(model)  # the headline figures are at the model's threshold
        v2 = self.boxes_v2.compute()
        out["MaxBoxAccV2"] = v2["MaxBoxAccV2"]
        out["MaxBoxAccV2_detail"] = v2
        out["PxAP"] = self.pxap.compute() if self.has_masks else None
        out["saturation_thirds"] = self._thirds()
        return out

    def _thirds(self) -> dict[str, Any]:
        """GT-known loc (model's threshold) on the least / middle / most saturated third of backgrounds."""
        sat = np.array(self.saturation)
        hit = np.array(self.ious[self.threshold]) >= IOU
        order = np.argsort(sat, kind="stable")
        parts = np.array_split(order, 3)
        thirds = {}
        for name, idx in zip(("least", "middle", "most"), parts, strict=True):
            thirds[name] = {
                "gt_known_loc": float(hit[idx].mean()) if len(idx) else float("nan"),
                "saturation": [float(sat[idx].min()), float(sat[idx].max())] if len(idx) else None,
                "images": len(idx),
            }
        least = thirds["least"]["gt_known_loc"]
        thirds["most_over_least"] = float(thirds["most"]["gt_known_loc"] / least) if least > 0 else None
        return thirds
