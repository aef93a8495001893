"""Localization and faithfulness metrics of saliency maps, as pure numpy (and OpenCV) functions.

Every function takes maps as numpy arrays at one resolution and knows nothing about models, so
each can be checked on hand-made maps whose right answer is known.

- MaxBoxAcc and MaxBoxAccV2 follow Choe et al., CVPR 2020, line by line as their code
  (clovaai/wsolevaluation, ``evaluation.py``) computes them: the map is min-max normalized, cast to
  uint8 (``* 255``), and for every CAM threshold ``t`` in ``0, 0.01, ..., 0.99`` the pixels
  ``> int(t * max)`` are kept; the box of the largest-area contour (``cv2.RETR_TREE``) is the
  estimate (V2: every contour's box, best match counts), boxes are ``x, y, min(x + w, W - 1),
  min(y + h, H - 1)``, IoU counts pixels inclusively (``+ 1``), and the accuracy at the best CAM
  threshold is reported. MaxBoxAcc is at IoU 0.5; MaxBoxAccV2 averages IoU 0.3, 0.5 and 0.7.
- PxAP is their ``MaskEvaluator``: histograms of the normalized map over the mask's and the
  background's pixels, accumulated over the data set, and the area under the precision-recall curve.
- The pointing game is TorchRay's (``torchray.benchmark.pointing_game``): the map's maximum is a hit
  when a mask pixel lies at a distance ``< tolerance`` from it; an empty mask is never a hit.
- Deletion and insertion (RISE, Petsiuk et al. 2018) need a model; the pixel order, the step plan and
  the normalized area under the curve live here, the model runs in ``edge_xcnn.explain.causal``.
- The model-randomization sanity check (Adebayo et al. 2018) compares maps by Spearman rank
  correlation and SSIM; both comparisons are here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

CAM_CURVE_INTERVAL = 0.01  # wsolevaluation's default (config.py)
IOU_THRESHOLDS = (30, 50, 70)  # percent, as wsolevaluation writes them
POINTING_TOLERANCE = 15  # pixels, TorchRay's default


def normalize_scoremap(cam: np.ndarray) -> np.ndarray:
    """Min-max normalize a map to [0, 1], as wsolevaluation does; NaN or constant maps become all zeros.

    Example:
        >>> normalize_scoremap(np.array([[1.0, 3.0]])).tolist()
        [[0.0, 1.0]]
    """
    cam = np.array(cam, dtype=np.float64)
    if cam.ndim == 3 and cam.shape[0] == 1:
        cam = cam[0]
    if cam.ndim != 2:
        raise ValueError(f"a score map must be H x W, got shape {np.shape(cam)}")
    if np.isnan(cam).any() or cam.min() == cam.max():
        return np.zeros_like(cam)
    cam -= cam.min()
    cam /= cam.max()
    return cam


def cam_thresholds(interval: float = CAM_CURVE_INTERVAL) -> np.ndarray:
    """The CAM thresholds wsolevaluation sweeps: ``0, interval, ..., < 1``."""
    if not 0.0 < interval < 1.0:
        raise ValueError(f"the CAM curve interval must be in (0, 1), got {interval}")
    return np.arange(0, 1, interval)


def scoremap_boxes(
    scoremap: np.ndarray, thresholds: Sequence[float], multi_contour: bool = False
) -> tuple[list[np.ndarray], list[int]]:
    """Boxes of a normalized map at each CAM threshold (wsolevaluation's ``compute_bboxes_from_scoremaps``).

    Args:
        scoremap: H x W in [0, 1].
        thresholds: CAM thresholds in [0, 1).
        multi_contour: False: the box of the largest-area contour (MaxBoxAcc); True: every contour's
            box (MaxBoxAccV2).

    Returns:
        For each threshold an (n, 4) int array of ``x0, y0, x1, y1`` boxes, and the list of the ``n``.
        A threshold that keeps no pixel gives the single box ``0, 0, 0, 0``.
    """
    scoremap = np.asarray(scoremap)
    if scoremap.ndim != 2 or np.isnan(scoremap).any() or scoremap.min() < 0 or scoremap.max() > 1:
        raise ValueError("a score map must be H x W with values in [0, 1] (normalize it first)")
    height, width = scoremap.shape
    image = (scoremap * 255).astype(np.uint8)
    peak = int(image.max())
    every_box: list[np.ndarray] = []
    counts: list[int] = []
    for threshold in thresholds:
        _, binary = cv2.threshold(image, int(threshold * peak), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            every_box.append(np.zeros((1, 4), np.int64))
            counts.append(1)
            continue
        if not multi_contour:
            contours = [max(contours, key=cv2.contourArea)]
        boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
        every_box.append(np.asarray(boxes, np.int64))
        counts.append(len(boxes))
    return every_box, counts


def wsol_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` with every box in ``b`` counting pixels inclusively (``+ 1``), as wsolevaluation."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    if ((a[:, 2] < a[:, 0]) | (a[:, 3] < a[:, 1])).any() or ((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])).any():
        raise ValueError("boxes must be x0, y0, x1, y1 with x1 >= x0 and y1 >= y0")
    min_x = np.maximum(a[:, None, 0], b[None, :, 0])
    min_y = np.maximum(a[:, None, 1], b[None, :, 1])
    max_x = np.minimum(a[:, None, 2], b[None, :, 2])
    max_y = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.maximum(0, max_x - min_x + 1) * np.maximum(0, max_y - min_y + 1)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass
class BoxAccumulator:
    """MaxBoxAcc (``multi_contour=False``) or MaxBoxAccV2 (``True``) over a data set, one map at a time.

    Example:
        >>> acc = BoxAccumulator(multi_contour=True)
        >>> cam = np.zeros((32, 32)); cam[8:16, 8:24] = 1
        >>> acc.accumulate(cam, np.array([[8, 8, 23, 15]]))
        >>> round(acc.compute()["MaxBoxAccV2"], 3)
        1.0
    """

    multi_contour: bool = False
    iou_thresholds: tuple[int, ...] = IOU_THRESHOLDS
    interval: float = CAM_CURVE_INTERVAL
    count: int = 0
    correct: dict[int, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.thresholds = cam_thresholds(self.interval)
        self.correct = {t: np.zeros(len(self.thresholds)) for t in self.iou_thresholds}

    def accumulate(self, cam: np.ndarray, gt_boxes: np.ndarray) -> None:
        """Add one image: its map (any range: it is normalized here) and its true boxes (``x0, y0, x1, y1``)."""
        boxes, counts = scoremap_boxes(normalize_scoremap(cam), self.thresholds, self.multi_contour)
        self.accumulate_boxes(boxes, counts, gt_boxes)

    def accumulate_boxes(self, boxes: list[np.ndarray], counts: list[int], gt_boxes: np.ndarray) -> None:
        """Add one image whose estimated boxes per CAM threshold are already known (trivial baselines)."""
        if len(counts) != len(self.thresholds):
            raise ValueError(f"need boxes for each of the {len(self.thresholds)} CAM thresholds, got {len(counts)}")
        ious = wsol_iou(np.concatenate(boxes, axis=0), gt_boxes).max(1)
        starts = np.cumsum([0, *counts[:-1]])
        best = np.array([ious[start : start + n].max() for start, n in zip(starts, counts, strict=True)])
        for threshold in self.iou_thresholds:
            self.correct[threshold][best >= threshold / 100] += 1
        self.count += 1

    def compute(self) -> dict[str, float]:
        """``MaxBoxAcc`` (IoU 0.5) or ``MaxBoxAccV2`` (mean over the IoU thresholds), and each IoU's figure.

        Fractions in [0, 1] (wsolevaluation prints percent); ``best_threshold_<iou>`` is the CAM
        threshold at which each maximum is reached.
        """
        if self.count == 0:
            raise ValueError("no image was accumulated")
        name = "MaxBoxAccV2" if self.multi_contour else "MaxBoxAcc"
        out: dict[str, float] = {}
        best = []
        for threshold in self.iou_thresholds:
            accuracy = self.correct[threshold] / self.count
            best.append(float(accuracy.max()))
            out[f"{name}_IoU{threshold}"] = best[-1]
            out[f"best_threshold_{threshold}"] = float(self.thresholds[int(accuracy.argmax())])
        out[name] = float(np.mean(best)) if self.multi_contour else out[f"{name}_IoU50"]
        return out


@dataclass
class PxAPAccumulator:
    """Pixel average precision of maps against masks over a data set (wsolevaluation's ``MaskEvaluator``).

    Example:
        >>> acc = PxAPAccumulator()
        >>> mask = np.zeros((8, 8), bool); mask[2:4, 2:4] = True
        >>> acc.accumulate(mask.astype(float), mask)
        >>> round(acc.compute(), 3)
        1.0
    """

    interval: float = CAM_CURVE_INTERVAL

    def __post_init__(self) -> None:
        thresholds = cam_thresholds(self.interval)
        # bins [0, bw), ..., [1 - bw, 1), [1, 2), [2, 3], as wsolevaluation sets them
        self.edges = np.append(thresholds, [1.0, 2.0, 3.0])
        self.true_hist = np.zeros(len(self.edges) - 1)
        self.false_hist = np.zeros(len(self.edges) - 1)

    def accumulate(self, cam: np.ndarray, mask: np.ndarray) -> None:
        """Add one image: its map (normalized here) and its boolean object mask of the same size."""
        scoremap = normalize_scoremap(cam)
        mask = np.asarray(mask, bool)
        if mask.shape != scoremap.shape:
            raise ValueError(f"mask {mask.shape} and map {scoremap.shape} differ in size")
        self.true_hist += np.histogram(scoremap[mask], bins=self.edges)[0]
        self.false_hist += np.histogram(scoremap[~mask], bins=self.edges)[0]

    def accumulate_many(self, cams: np.ndarray, masks: np.ndarray) -> None:
        """Add N images at once (N x H x W maps and masks): the same counts as N ``accumulate`` calls."""
        cams = np.asarray(cams, np.float64)
        masks = np.asarray(masks, bool)
        if cams.ndim != 3 or masks.shape != cams.shape:
            raise ValueError(f"maps {cams.shape} and masks {masks.shape} must both be N x H x W")
        lo = cams.min(axis=(1, 2), keepdims=True)
        span = cams.max(axis=(1, 2), keepdims=True) - lo
        flat = (span == 0) | np.isnan(span)  # as normalize_scoremap: NaN or constant maps become zeros
        scoremaps = np.where(flat, 0.0, (cams - lo) / np.where(flat, 1.0, span))
        self.true_hist += np.histogram(scoremaps[masks], bins=self.edges)[0]
        self.false_hist += np.histogram(scoremaps[~masks], bins=self.edges)[0]

    def compute(self) -> float:
        """PxAP in [0, 1]; NaN when no mask had a pixel."""
        tp = self.true_hist[::-1].cumsum()
        fn = self.true_hist.sum() - tp
        fp = self.false_hist[::-1].cumsum()
        if ((tp + fn) <= 0).all() or ((tp + fp) <= 0).all():
            return float("nan")
        nonzero = (tp + fp) != 0
        precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=nonzero)
        recall = tp / (tp + fn)
        return float((precision[1:] * np.diff(recall))[nonzero[1:]].sum())


def peak_point(cam: np.ndarray) -> tuple[int, int]:
    """The map's maximum as ``(x, y)``; the first one in raster order on ties (``argmax``)."""
    cam = np.asarray(cam)
    y, x = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return int(x), int(y)


def pointing_hit(mask: np.ndarray, point: tuple[float, float], tolerance: float = POINTING_TOLERANCE) -> bool:
    """TorchRay's pointing game for one image: a mask pixel lies at distance ``< tolerance`` from ``point``.

    Args:
        mask: boolean H x W object mask (a box filled in, for data with boxes only).
        point: ``(x, y)`` in the mask's pixels, usually ``peak_point`` of the map.
        tolerance: pixels; TorchRay's default is 15. ``1`` accepts only the point's own pixel.
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be H x W, got {mask.shape}")
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return False
    x, y = point
    return bool((((rows - y) ** 2 + (cols - x) ** 2) < tolerance**2).any())


def box_mask(box: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask that fills a box (``x1, y1, x2, y2``, exclusive edges) clipped to ``shape``."""
    mask = np.zeros(shape, bool)
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    mask[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)] = True
    return mask


def causal_order(saliency: np.ndarray) -> np.ndarray:
    """Pixel indices (row-major) from most to least salient; ties keep raster order."""
    flat = np.asarray(saliency, np.float64).reshape(-1)
    return np.argsort(-flat, kind="stable")


def causal_plan(pixels: int, steps: int) -> list[slice]:
    """Which of the ordered pixels change at each of ``steps`` steps (RISE: ``ceil(pixels / step)`` steps)."""
    if steps < 1 or pixels < 1:
        raise ValueError(f"need at least one step and one pixel, got {steps} and {pixels}")
    step = -(-pixels // steps)
    return [slice(start, min(pixels, start + step)) for start in range(0, pixels, step)]


def causal_auc(scores: np.ndarray) -> np.ndarray:
    """RISE's normalized area under a deletion or insertion curve (trapezoids over ``[0, 1]``).

    Args:
        scores: class probabilities at steps ``0..n``, shape ``(n + 1,)`` or ``(n + 1, images)``.
    """
    scores = np.asarray(scores, np.float64)
    if scores.shape[0] < 2:
        raise ValueError("a curve needs at least two points")
    return (scores.sum(0) - scores[0] / 2 - scores[-1] / 2) / (scores.shape[0] - 1)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of a vector, tied values sharing their average rank (``scipy.stats.rankdata``'s default)."""
    _, inverse, counts = np.unique(np.asarray(values).reshape(-1), return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    return (last - (counts - 1) / 2)[inverse.reshape(-1)]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps' pixels (average ranks for ties); 0 when either map is constant."""
    x = np.asarray(a, np.float64).reshape(-1)
    y = np.asarray(b, np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"maps differ in size: {np.shape(a)} and {np.shape(b)}")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(np.corrcoef(average_ranks(x), average_ranks(y))[0, 1])


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of two maps after min-max normalization (scikit-image, data range 1)."""
    from skimage.metrics import structural_similarity

    x, y = normalize_scoremap(a), normalize_scoremap(b)
    if x.shape != y.shape:
        raise ValueError(f"maps differ in size: {x.shape} and {y.shape}")
    window = min(7, *x.shape)
    window -= 1 - window % 2  # odd, at most the map's side
    return float(structural_similarity(x, y, data_range=1.0, win_size=window))
