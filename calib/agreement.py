"""How far INT8 strays from FP32 on held-out labelled data: accuracy, agreement, box agreement."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edge_xcnn.backends.base import Backend
from edge_xcnn.localize import box_iou, heatmap_to_detections
from edge_xcnn.train.datasets.base import LabelledImages

BOX_IOU = 0.5


@dataclass
class Agreement:
    """FP32 vs INT8 on the same images; ``box_agreement`` counts images whose heatmap boxes match."""

    images: int
    top1_fp32: float
    top1_int8: float
    top1_agreement: float
    box_agreement: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def agreement(fp32: Backend, int8: Backend, dataset: LabelledImages, limit: int = 1000, batch: int = 64) -> Agreement:
    """Run both models on the first ``limit`` images; boxes by the shared rule (largest contour)."""
    count = min(limit, len(dataset))
    labels, preds, box_hits = [], {"fp32": [], "int8": []}, []
    meta = fp32.meta
    for start in range(0, count, batch):
        samples = [dataset[i] for i in range(start, min(count, start + batch))]
        frames = [s.image for s in samples]
        (l32, h32, geo), (l8, h8, _) = fp32.predict(frames), int8.predict(frames)
        labels += [s.label for s in samples]
        preds["fp32"] += l32.argmax(1).tolist()
        preds["int8"] += l8.argmax(1).tolist()
        if h32 is not None and h8 is not None:
            for j, g in enumerate(geo):
                boxes = [
                    heatmap_to_detections(h[j], g, polarity=meta.polarity, threshold=meta.threshold) for h in (h32, h8)
                ]
                if len(boxes[0]) and len(boxes[1]):
                    box_hits.append(box_iou(boxes[0].xyxy[0], boxes[1].xyxy[0])[0, 0] >= BOX_IOU)
                else:
                    box_hits.append(len(boxes[0]) == len(boxes[1]))
    y, p32, p8 = np.array(labels), np.array(preds["fp32"]), np.array(preds["int8"])
    return Agreement(
        images=count,
        top1_fp32=float((p32 == y).mean()),
        top1_int8=float((p8 == y).mean()),
        top1_agreement=float((p32 == p8).mean()),
        box_agreement=float(np.mean(box_hits)) if box_hits else float("nan"),
    )
