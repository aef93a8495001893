"""``edge-xcnn eval``: top-1 accuracy, and on data with boxes, localization by the paper's rule.

Localization: the heatmap's largest contour at the model's threshold (and at the paper's 0.5) of
the normalized map (the shared ``edge_xcnn.localize`` rule) gives one box per image; GT-known loc
counts IoU >= 0.5 with the true box, top-1 loc also needs the right class. With MaxBoxAccV2, PxAP
and loc per third of background saturation (``train.loc_report``), all beside the two trivial
baselines of the contract (the centred box of mean size, and the whole image) on the same split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edge_xcnn.backends.base import Backend
from edge_xcnn.localize import box_iou
from edge_xcnn.train.datasets.base import LabelledImages, Sample
from edge_xcnn.train.loc_report import LocalizationReport

IOU_THRESHOLD = 0.5


@dataclass
class Shown:
    """One evaluated image kept for the figure."""

    image: np.ndarray
    heat: np.ndarray | None  # polarity applied, in [-1, 1], network resolution
    label: int
    pred: int
    gt_box: np.ndarray | None
    pred_box: np.ndarray | None


@dataclass
class EvalReport:
    """The figures of one evaluation; ``to_dict`` is what ``--json`` writes."""

    data: str
    images: int
    top1: float
    localization: dict[str, Any] | None = None
    shown: list[Shown] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "images": self.images,
            "top1": self.top1,
            "localization": self.localization,
        }


def trivial_boxes(gt: np.ndarray, sizes: np.ndarray) -> dict[str, np.ndarray]:
    """The contract's two trivial baselines for every image: centred box of mean size, whole image.

    Args:
        gt: N x 4 true boxes (xyxy, pixels).
        sizes: N x 2 image sizes (H, W), so images of different sizes get the mean relative box.
    """
    h, w = sizes[:, 0].astype(np.float64), sizes[:, 1].astype(np.float64)
    rel_w = float(np.mean((gt[:, 2] - gt[:, 0]) / w))
    rel_h = float(np.mean((gt[:, 3] - gt[:, 1]) / h))
    cx, cy = w / 2, h / 2
    centred = np.stack([cx - rel_w * w / 2, cy - rel_h * h / 2, cx + rel_w * w / 2, cy + rel_h * h / 2], 1)
    whole = np.stack([np.zeros_like(w), np.zeros_like(h), w, h], 1)
    return {"centred_mean_box": centred, "whole_image": whole}


def localization_figures(ious: np.ndarray, correct: np.ndarray) -> dict[str, float]:
    """GT-known and top-1 localization at IoU 0.5, and the mean IoU."""
    hit = ious >= IOU_THRESHOLD
    return {
        "gt_known_loc": float(hit.mean()),
        "top1_loc": float((hit & correct).mean()),
        "mean_iou": float(ious.mean()),
    }


def evaluate(
    backend: Backend,
    dataset: LabelledImages,
    *,
    data_name: str,
    batch_size: int = 128,
    limit: int | None = None,
    keep: int = 0,
    console: Console | None = None,
) -> EvalReport:
    """Evaluate a model in any runtime (``edge_xcnn.backends``) on ``dataset``.

    ``keep`` > 0 keeps that many images spread over the split, and as many mistakes, for a figure.
    """
    meta = backend.meta
    count = len(dataset) if limit is None else min(limit, len(dataset))
    labels, preds, gt_boxes, sizes = [], [], [], []
    loc_report = LocalizationReport(meta.polarity, meta.threshold)
    shown: list[Shown] = []
    mistakes: list[Shown] = []
    every = max(1, count // keep) if keep else 0  # spread the shown images over the whole split
    with Progress(
        TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console or Console(stderr=True), transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("eval", total=count)
        for start in range(0, count, batch_size):
            samples = [dataset[i] for i in range(start, min(count, start + batch_size))]
            logits, heatmap, geometries = backend.predict([s.image for s in samples])
            batch_pred = logits.argmax(1)
            heat = heatmap[:, 0] if heatmap is not None else None
            for j, sample in enumerate(samples):
                labels.append(sample.label)
                preds.append(int(batch_pred[j]))
                pred_box = None
                if heat is not None and sample.box is not None:
                    geometry = geometries[j]
                    pred_box = loc_report.add(
                        heat[j], sample.image, sample.box, sample.mask, int(batch_pred[j]) == sample.label,
                        scale=geometry.scale, offset=geometry.offset,
                    )  # fmt: skip
                    gt_boxes.append(sample.box)
                    sizes.append(sample.image.shape[:2])
                if not keep:
                    continue
                item = _shown(
                    sample,
                    heat[j] * meta.polarity if heat is not None else None,
                    int(batch_pred[j]),
                    pred_box,
                )
                index = start + j
                if keep and index % every == 0 and len(shown) < keep:
                    shown.append(item)
                elif item.pred != item.label and len(mistakes) < keep:
                    mistakes.append(item)
            progress.advance(task, len(samples))
    labels_a, preds_a = np.array(labels), np.array(preds)
    report = EvalReport(data=data_name, images=count, top1=float((labels_a == preds_a).mean()), shown=shown + mistakes)
    if gt_boxes and len(gt_boxes) == count:
        correct = labels_a == preds_a
        gt = np.stack(gt_boxes)
        loc: dict[str, Any] = loc_report.figures()
        for name, boxes in trivial_boxes(gt, np.array(sizes)).items():
            base_iou = np.array([box_iou(b, g)[0, 0] for b, g in zip(boxes, gt, strict=True)])
            loc[name] = localization_figures(base_iou, correct)
        report.localization = loc
    return report


def _shown(sample: Sample, heat: np.ndarray | None, pred: int, pred_box: np.ndarray | None) -> Shown:
    return Shown(sample.image, heat, sample.label, pred, sample.box, pred_box)
