"""The model's heatmap threshold, chosen on validation (never on test); the map's quality there.

The paper fixes 0.5 of the normalized map; on our models the best threshold was 0.30-0.34 for 6 of 8
(measured), so a recipe may choose it instead. The WSOL protocol of Choe et al. (CVPR 2020) allows
exactly this: tune the threshold on a small box-labelled split held out of test. The rule stays the
paper's (largest contour, IoU >= 0.5); only the threshold moves, in steps of 0.02.

Why the map is also measured every epoch (:func:`grade_maps`): seeds of one recipe train to the same
top-1 with maps of very different quality (session 17: validation PxAP 29.3% against 53.2%), so
validation accuracy alone says nothing about the localizer. Each epoch's line and ``results.json``
carry the map's validation PxAP and GT-known loc, the way a detector's training shows its mAP.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edge_xcnn.explain.metrics import PxAPAccumulator
from edge_xcnn.localize import box_iou, heatmap_to_boxes
from edge_xcnn.meta import ModelMeta
from edge_xcnn.models import forward_logits_heatmap
from edge_xcnn.preprocess import preprocess
from edge_xcnn.train.datasets.base import LabelledImages

CANDIDATES = np.round(np.arange(0.10, 0.91, 0.02), 2)
# Every epoch: a coarser grid around where trained maps localize best (0.28-0.34 for the shipped
# recipe's seeds, 0.12-0.5 over every recipe measured), 7 contour passes instead of 41.
EPOCH_CANDIDATES = np.round(np.arange(0.16, 0.53, 0.06), 2)


@dataclass
class ValidationMaps:
    """A model's maps on a box-labelled split, at network resolution (polarity not applied)."""

    maps: np.ndarray  # N x H x W
    boxes: list[np.ndarray]  # xyxy, in the maps' pixels
    masks: list[np.ndarray | None]  # object masks at the maps' size, where the data has them


@dataclass(frozen=True)
class MapQuality:
    """What one epoch's map scores on validation: GT-known loc at its best threshold, and PxAP."""

    gt_known: float
    threshold: float
    pxap: float | None  # None when the split has no masks

    def as_row(self) -> dict[str, float]:
        row = {"val_gt_known": self.gt_known, "val_loc_threshold": self.threshold}
        return row | ({"val_pxap": self.pxap} if self.pxap is not None else {})


def has_map_truth(dataset: LabelledImages, meta: ModelMeta) -> bool:
    """Whether ``dataset`` can grade a map: boxes, on images the network reads at their own size."""
    if len(dataset) == 0:
        return False
    first = dataset[0]
    return first.box is not None and tuple(first.image.shape[:2]) == tuple(meta.input_size)


def map_truth(dataset: LabelledImages) -> tuple[list[np.ndarray], list[np.ndarray | None]] | None:
    """Every image's box and mask, in order (what :class:`ValidationMaps` grades against).

    None when any image has no box: nothing is graded then, rather than a part of the split.
    """
    samples = [dataset[i] for i in range(len(dataset))]
    if any(s.box is None for s in samples):
        return None
    return [s.box for s in samples], [s.mask for s in samples]  # type: ignore[misc]


@torch.no_grad()
def validation_maps(
    model: nn.Module, dataset: LabelledImages, meta: ModelMeta, device: torch.device, batch: int = 256
) -> ValidationMaps:
    """The model's maps on every image of ``dataset`` (eval mode, restored afterwards)."""
    was_training = model.training
    model.eval()
    maps, boxes, masks = [], [], []
    try:
        for start in range(0, len(dataset), batch):
            samples = [dataset[i] for i in range(start, min(len(dataset), start + batch))]  # rendered once
            images = torch.stack([torch.from_numpy(preprocess(s.image, meta)[0]) for s in samples]).to(device)
            _, heatmap = forward_logits_heatmap(model, images)
            if heatmap is None:
                raise ValueError("only XCNN models have a heatmap threshold")
            maps.append(heatmap[:, 0].float().cpu().numpy())
            boxes += [s.box for s in samples]
            masks += [s.mask for s in samples]
    finally:
        model.train(was_training)
    if any(b is None for b in boxes):
        raise ValueError("choosing a threshold needs boxes on the validation split")
    return ValidationMaps(np.concatenate(maps), boxes, masks)


def gt_known_by_threshold(found: ValidationMaps, polarity: int, thresholds: np.ndarray) -> dict[float, float]:
    """GT-known loc (largest contour, IoU >= 0.5) at each threshold."""
    scores = {}
    for t in thresholds:
        hits = 0
        for h, gt in zip(found.maps, found.boxes, strict=True):
            boxes = heatmap_to_boxes(h, polarity=polarity, threshold=float(t))
            hits += bool(len(boxes)) and box_iou(boxes.xyxy[0], gt)[0, 0] >= 0.5
        scores[float(t)] = hits / len(found.maps)
    return scores


def pixel_ap(found: ValidationMaps, polarity: int) -> float | None:
    """PxAP of the maps against the masks (wsolevaluation's); None when any image lacks a mask."""
    if any(m is None or m.shape != found.maps.shape[1:] for m in found.masks):
        return None
    accumulator = PxAPAccumulator()
    accumulator.accumulate_many(found.maps * polarity, np.stack(found.masks))  # type: ignore[arg-type]
    return accumulator.compute()


def _best(scores: dict[float, float]) -> float:
    """The threshold with the best score; ties go to the one nearest the paper's 0.5."""
    best = max(scores.values())
    return min((t for t, v in scores.items() if v == best), key=lambda t: abs(t - 0.5))


def choose_threshold(
    model: nn.Module, dataset: LabelledImages, meta: ModelMeta, device: torch.device, batch: int = 256
) -> tuple[float, dict[float, float]]:
    """The candidate threshold with the best GT-known localization on ``dataset`` (ties: nearest 0.5).

    Returns the threshold and the accuracy at every candidate.
    """
    scores = gt_known_by_threshold(validation_maps(model, dataset, meta, device, batch), meta.polarity, CANDIDATES)
    return _best(scores), scores


def grade_maps(found: ValidationMaps, polarity: int, thresholds: np.ndarray = EPOCH_CANDIDATES) -> MapQuality:
    """GT-known loc at the best of ``thresholds``, and PxAP, of maps already made."""
    scores = gt_known_by_threshold(found, polarity, thresholds)
    chosen = _best(scores)
    return MapQuality(scores[chosen], chosen, pixel_ap(found, polarity))
