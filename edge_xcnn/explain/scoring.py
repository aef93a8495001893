"""Scoring maps: the compared images prepared once, and every localization metric of one row.

Maps are scored at the network's input resolution, as wsolevaluation scores at 224 x 224: true boxes
are scaled and truncated to integers as its ``resize_bbox``, masks resized by nearest neighbour; the
paper's rule (``heatmap_to_detections`` at 0.5) and the pointing game map back to source pixels as ``eval``
does. Data without masks gets PxAP "n/a" and plays the pointing game on its boxes filled in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_xcnn.errors import BadData
from edge_xcnn.explain.metrics import BoxAccumulator, PxAPAccumulator, box_mask, peak_point, pointing_hit
from edge_xcnn.localize import box_iou, heatmap_to_detections
from edge_xcnn.meta import ModelMeta
from edge_xcnn.preprocess import Geometry, preprocess
from edge_xcnn.train.evaluate import IOU_THRESHOLD, trivial_boxes


@dataclass
class Subset:
    """The images compared, prepared once."""

    x: np.ndarray  # N x C x H x W float32 in [0, 1]
    images: list[np.ndarray]
    labels: np.ndarray
    boxes: np.ndarray  # N x 4 source pixels (exclusive x2, y2)
    net_boxes: np.ndarray  # N x 1 x 4 network pixels, ints, as wsolevaluation's resize_bbox
    masks: list[np.ndarray]  # source-pixel masks (boxes filled in when the data has no masks)
    net_masks: list[np.ndarray] | None  # network-pixel masks, None when the data has none
    geometries: list[Geometry]


def network_box(box: np.ndarray, geometry: Geometry) -> np.ndarray:
    """A source box in network pixels, truncated to integers as wsolevaluation's ``resize_bbox``."""
    return geometry.to_network(box).astype(int).reshape(1, 4)


def load_subset(dataset: Any, meta: ModelMeta, limit: int) -> Subset:
    """The first ``limit`` samples, preprocessed as at run time; the data must have boxes."""
    count = min(limit, len(dataset))
    if count == 0:
        raise BadData("the data has no images")
    samples = [dataset[i] for i in range(count)]
    if any(s.box is None for s in samples):
        raise BadData("compare needs data with object boxes (the synthetic benchmark, Tiny ImageNet)")
    prepared = [preprocess(s.image, meta) for s in samples]
    has_masks = all(s.mask is not None for s in samples)
    return Subset(
        x=np.stack([p[0] for p in prepared]),
        images=[s.image for s in samples],
        labels=np.array([s.label for s in samples]),
        boxes=np.stack([s.box for s in samples]),
        net_boxes=np.stack([network_box(s.box, p[1]) for s, p in zip(samples, prepared, strict=True)]),
        masks=[s.mask if s.mask is not None else box_mask(s.box, s.image.shape[:2]) for s in samples],
        net_masks=[p[1].mask_to_network(s.mask, meta.input_size) for s, p in zip(samples, prepared, strict=True)]
        if has_masks
        else None,
        geometries=[p[1] for p in prepared],
    )


class RowAccumulator:
    """Every localization metric of one (model, method, layer) row, fed one map at a time."""

    def __init__(self, subset: Subset, meta: ModelMeta, correct: np.ndarray, tolerance: float) -> None:
        self.subset, self.meta, self.correct, self.tolerance = subset, meta, correct, tolerance
        self.v1, self.v2 = BoxAccumulator(multi_contour=False), BoxAccumulator(multi_contour=True)
        self.pxap = PxAPAccumulator() if subset.net_masks is not None else None
        self.ious: list[float] = []
        self.points: list[bool] = []
        self.peaks: list[bool] = []
        self.causal: dict[str, list[float]] = {"deletion": [], "insertion": []}

    def add(self, index: int, cam: np.ndarray) -> np.ndarray | None:
        """Add image ``index``'s map; returns its box by the paper's rule (source pixels) or None."""
        s, geometry = self.subset, self.subset.geometries[index]
        self.v1.accumulate(cam, s.net_boxes[index])
        self.v2.accumulate(cam, s.net_boxes[index])
        if self.pxap is not None and s.net_masks is not None:
            self.pxap.accumulate(cam, s.net_masks[index])
        found = heatmap_to_detections(cam, geometry, threshold=self.meta.threshold)
        box = found.xyxy[0] if len(found) else None
        self.ious.append(float(box_iou(box, s.boxes[index])[0, 0]) if box is not None else 0.0)
        x, y = peak_point(cam)
        point = geometry.point_to_source(x, y)
        self.points.append(pointing_hit(s.masks[index], point, self.tolerance))
        self.peaks.append(pointing_hit(s.masks[index], point, 1))
        return box

    def result(self) -> dict[str, Any]:
        ious = np.array(self.ious)
        hit = ious >= IOU_THRESHOLD
        out: dict[str, Any] = {**self.v1.compute(), **self.v2.compute()}
        for key in [k for k in out if k.startswith("best_threshold")]:
            out.pop(key)
        pxap = None if self.pxap is None else self.pxap.compute()
        out.update(
            PxAP=None if pxap is None or np.isnan(pxap) else pxap,
            gt_known_loc=float(hit.mean()),
            top1_loc=float((hit & self.correct).mean()),
            mean_iou=float(ious.mean()),
            pointing=float(np.mean(self.points)),
            pointing_peak=float(np.mean(self.peaks)),
            deletion=float(np.mean(self.causal["deletion"])) if self.causal["deletion"] else None,
            insertion=float(np.mean(self.causal["insertion"])) if self.causal["insertion"] else None,
        )
        return out


def trivial_rows(subset: Subset, meta: ModelMeta, correct: np.ndarray, tolerance: float) -> list[dict[str, Any]]:
    """The contract's two trivial baselines as rows: their box at every threshold, their box as the map."""
    sizes = np.array([image.shape[:2] for image in subset.images])
    rows = []
    for name, boxes in trivial_boxes(subset.boxes, sizes).items():
        acc = RowAccumulator(subset, meta, correct, tolerance)
        for i, box in enumerate(boxes):
            geometry = subset.geometries[i]
            net = network_box(box, geometry)
            every = [net] * len(acc.v1.thresholds)
            acc.v1.accumulate_boxes(every, [1] * len(every), subset.net_boxes[i])
            acc.v2.accumulate_boxes(every, [1] * len(every), subset.net_boxes[i])
            if acc.pxap is not None:
                acc.pxap.accumulate(box_mask(net[0], meta.input_size).astype(np.float32), subset.net_masks[i])
            acc.ious.append(float(box_iou(box, subset.boxes[i])[0, 0]))
            h, w = subset.images[i].shape[:2]
            acc.points.append(pointing_hit(subset.masks[i], ((w - 1) / 2, (h - 1) / 2), tolerance))
            acc.peaks.append(pointing_hit(subset.masks[i], ((w - 1) / 2, (h - 1) / 2), 1))
        label = {"centred_mean_box": "trivial: centred box of mean size", "whole_image": "trivial: whole image"}[name]
        rows.append({"model": "-", "method": name, "label": label, "layer": "-", "layer_role": None} | acc.result())
    return rows
