"""The per-frame step: one batch of decoded frames to their results, one :class:`FrameStep` per source.

    frames -> backend.predict (one call for the batch)
           -> heatmap_to_detections per frame (the one rule, the one geometry)
           -> box crops of the whole batch classified in one more backend call (``--classify-boxes``)
           -> each source's own tracker -> FrameResult (+ track events)

The runner only schedules: it hands batches to :func:`process_batch` and results to the sinks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from edge_xcnn.backends.base import Backend
from edge_xcnn.box_evidence import box_probabilities, evidence_maps, pick_boxes
from edge_xcnn.detections import Detections
from edge_xcnn.localize import box_iou, heatmap_to_detections
from edge_xcnn.meta import ModelMeta
from edge_xcnn.preprocess import Geometry, preprocess
from edge_xcnn.stream.results import FrameResult, SourceRef, TrackEvent
from edge_xcnn.stream.sources import Frame
from edge_xcnn.stream.tracking import TrackerOptions, make_tracker, track

SAME_BOX_IOU = 0.9  # refine candidates this close to a box at the base threshold are not classified again


@dataclass(frozen=True)
class LocalizeOptions:
    """Heatmap-to-detections settings for video; the paper's rule is ``keep='largest'`` at threshold 0.5."""

    threshold: float | None = None  # None: the model's own (metadata), normally 0.5
    keep: Literal["largest", "all"] = "all"
    # Fraction of the heatmap's area: drops stroke fragments. 0.03 was chosen on three validation clips
    # (train footage, validation digits; never the demo's test clip) with the default model: mean MOTA
    # 48.6 / 69.9 / 77.8 / 76.0 / 70.2% at 0.01 / 0.02 / 0.03 / 0.04 / 0.05 (benchmarks/min_area.py).
    min_area: float = 0.03
    # Each box's confidence: the peak or mean normalized heat inside it, or ``evidence``: the classifier's
    # probability for the box's own evidence (the box check's reading; the trackers then start tracks on it).
    score: Literal["peak", "mean", "evidence"] = "peak"
    classify_boxes: bool = False  # classify each box's crop with the same model (batched per batch of frames)
    # Least probability the classifier gives a box's own evidence (the map masked to the box) to keep
    # the box, which also names its class; None: the model's own (metadata), 0: no check.
    box_evidence: float | None = None
    # With the box check: contours are also cut at threshold + refine_step, and of the overlapping
    # candidates the check keeps the one the classifier reads best (a digit cut from the background it
    # touches, or left whole); 0 = one threshold.
    refine_step: float = 0.08

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if not 0.0 <= self.min_area < 1.0:
            raise ValueError(f"min_area must be in [0, 1), got {self.min_area}")
        if self.box_evidence is not None and not 0.0 <= self.box_evidence < 1.0:
            raise ValueError(f"box_evidence must be in [0, 1), got {self.box_evidence}")
        if not 0.0 <= self.refine_step < 1.0:
            raise ValueError(f"refine_step must be in [0, 1), got {self.refine_step}")


@dataclass
class StageTimes:
    """Busy seconds of one stage and the frames it handled."""

    seconds: float = 0.0
    frames: int = 0

    @property
    def ms_per_frame(self) -> float | None:
        return 1000 * self.seconds / self.frames if self.frames else None

    @property
    def fps(self) -> float | None:
        return self.frames / self.seconds if self.seconds > 0 else None


@dataclass
class _Track:
    first: int
    last: int
    seen_step: int
    label: str | None
    score: float
    xyxy: tuple[float, float, float, float]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def crops(image: np.ndarray, xyxy: np.ndarray, margin: float = 0.1) -> list[np.ndarray]:
    """Each box's region of the frame, grown by ``margin`` of its size (a classifier wants some context)."""
    height, width = image.shape[:2]
    out = []
    for x0, y0, x1, y1 in xyxy:
        mx, my = (x1 - x0) * margin, (y1 - y0) * margin
        a, b = int(max(0, x0 - mx)), int(max(0, y0 - my))
        c, d = int(min(width, np.ceil(x1 + mx))), int(min(height, np.ceil(y1 + my)))
        out.append(image[b : max(d, b + 1), a : max(c, a + 1)])
    return out


class FrameStep:
    """One source's work after inference: detections, its own tracker, track events, the frame's result."""

    def __init__(self, source: SourceRef, meta: ModelMeta, localize: LocalizeOptions, tracker: TrackerOptions) -> None:
        self.source, self.meta, self.localize = source, meta, localize
        self.tracker = make_tracker(tracker, source.fps, sequence=source.sequence)
        self._buffer = tracker.lost_track_buffer
        self._tracks: dict[int, _Track] = {}
        self._steps = 0

    def detect(self, heatmap: np.ndarray | None, geometry: Geometry, *, candidates: bool = False) -> Detections:
        """Boxes at the threshold; ``candidates``: also at threshold + ``refine_step``, for the box check to choose."""
        if heatmap is None:
            return Detections()
        h, w = heatmap.shape[-2:]
        opts = self.localize
        threshold = self.meta.threshold if opts.threshold is None else opts.threshold
        thresholds = [threshold]
        if candidates and opts.keep == "all" and opts.refine_step > 0 and threshold + opts.refine_step < 1:
            thresholds.append(threshold + opts.refine_step)
        found = [
            heatmap_to_detections(
                heatmap,
                geometry,
                polarity=self.meta.polarity,
                threshold=t,
                keep=opts.keep,
                min_area=opts.min_area * h * w,
                score="peak" if opts.score == "evidence" else opts.score,
            )
            for t in thresholds
        ]
        if len(found) == 1:
            return found[0]
        base, finer = found
        if len(base) and len(finer):  # a blob the higher threshold leaves as it was is one candidate, not two
            finer = finer[box_iou(finer.xyxy, base.xyxy).max(axis=1) < SAME_BOX_IOU]
        return Detections(np.concatenate([base.xyxy, finer.xyxy]), np.concatenate([base.confidence, finer.confidence]))

    def box_evidence(self) -> float:
        """The box check's least probability for this source (0 = no check)."""
        own = self.localize.box_evidence
        return self.meta.box_evidence if own is None else own

    def reads_box_evidence(self) -> bool:
        """Whether this source's boxes go through the box check (to be kept, or scored)."""
        return self.box_evidence() > 0 or self.localize.score == "evidence"

    def finish(
        self, frame: Frame, logits: np.ndarray, heatmap: np.ndarray | None, geometry: Geometry, found: Detections
    ) -> tuple[FrameResult, list[TrackEvent]]:
        """Track ``found`` and build the frame's result and the track events it caused."""
        probs = softmax(logits.astype(np.float64))
        class_id = int(probs.argmax())
        tracked = track(self.tracker, found)
        result = FrameResult(
            source=self.source, frame=frame.index, pts=frame.pts, wall=frame.wall, captured=frame.captured,
            class_id=class_id, label=self.meta.classes[class_id], score=float(probs[class_id]), detections=tracked,
            classes=self.meta.classes, heatmap=heatmap, geometry=geometry, image=frame.image,
            polarity=self.meta.polarity,
        )  # fmt: skip
        return result, self._events(result)

    def _events(self, result: FrameResult) -> list[TrackEvent]:
        """``track_start`` for a newly confirmed id; ``track_end`` once unseen for more than the lost-track buffer."""
        self._steps += 1
        events: list[TrackEvent] = []
        d = result.detections
        for k in range(len(d)):
            tid = result.track_id(k)
            if tid is None:
                continue
            x0, y0, x1, y1 = (float(v) for v in d.xyxy[k])
            seen = _Track(
                first=result.frame, last=result.frame, seen_step=self._steps, label=result.box_label(k) or result.label,
                score=float(d.confidence[k]), xyxy=(x0, y0, x1, y1),
            )  # fmt: skip
            known = self._tracks.get(tid)
            if known is None:
                self._tracks[tid] = seen
                events.append(self._event("track_start", tid, seen))
            else:
                seen.first = known.first
                self._tracks[tid] = seen
        for tid in [t for t, info in self._tracks.items() if self._steps - info.seen_step > self._buffer]:
            events.append(self._event("track_end", tid, self._tracks.pop(tid)))
        return events

    def end(self) -> list[TrackEvent]:
        """``track_end`` for every track still open (the source ended or the run stopped)."""
        events = [self._event("track_end", tid, info) for tid, info in self._tracks.items()]
        self._tracks.clear()
        return events

    def _event(self, kind: Literal["track_start", "track_end"], tid: int, info: _Track) -> TrackEvent:
        return TrackEvent(kind, self.source, tid, info.label, info.score, info.first, info.last, info.xyxy)


@dataclass
class BatchTimes:
    """Stage times of the per-frame step (inference includes the crop classification)."""

    inference: StageTimes = field(default_factory=StageTimes)
    boxes_tracking: StageTimes = field(default_factory=StageTimes)


def network_input(frame: Frame, meta: ModelMeta) -> tuple[np.ndarray, Geometry]:
    """The frame as the network takes it (float32 C x H x W in [0, 1]) and its geometry.

    From the decoder's own network-size picture when it made one (``frame.net``), else preprocessed
    from the full frame exactly as at training time.
    """
    if frame.net is None or frame.geometry is None:
        assert frame.image is not None, "a frame without its network input needs its full image"
        return preprocess(frame.image, meta)
    net = frame.net
    chw = net[None] if net.ndim == 2 else net.transpose(2, 0, 1)
    return np.ascontiguousarray(chw, dtype=np.float32) * np.float32(1 / 255), frame.geometry


def network_batch(frames: Sequence[Frame], meta: ModelMeta) -> tuple[np.ndarray, list[Geometry]]:
    """:func:`network_input` of every frame, stacked (N x C x H x W), and their geometries.

    When the decoder made every input, they are stacked as uint8 and converted in one pass (the same
    numbers as frame by frame, one numpy call per batch instead of three per frame).
    """
    if all(f.net is not None and f.geometry is not None for f in frames):
        nets = np.stack([f.net for f in frames])  # type: ignore[misc]
        nchw = nets[:, None] if nets.ndim == 3 else nets.transpose(0, 3, 1, 2)
        batch = np.ascontiguousarray(nchw, dtype=np.float32) * np.float32(1 / 255)
        return batch, [f.geometry for f in frames]  # type: ignore[misc]
    prepared = [network_input(f, meta) for f in frames]
    return np.stack([p[0] for p in prepared]), [p[1] for p in prepared]


@dataclass
class InferredBatch:
    """A batch after the backend call, before boxes and tracking.

    ``found``: boxes already made, when ``--classify-boxes`` needed them before a second backend call.
    """

    batch: Sequence[tuple[FrameStep, Frame]]
    logits: np.ndarray
    heatmaps: np.ndarray | None
    geometries: list[Geometry]
    found: list[Detections] | None = None
    # The box check left to finish_batch (the writer thread), with the backend it asks.
    checker: Backend | None = None


def infer_batch(backend: Backend, batch: Sequence[tuple[FrameStep, Frame]], times: BatchTimes) -> InferredBatch:
    """The backend's part of a batch: one call for every frame (and one more for the box crops, if asked)."""
    tick = time.perf_counter()
    inputs, geometries = network_batch([frame for _, frame in batch], backend.meta)
    logits, heatmaps = backend.infer(inputs)
    infer = time.perf_counter() - tick
    found = None
    check = heatmaps is not None and can_classify_maps(backend) and any(s.reads_box_evidence() for s, _ in batch)
    if any(step.localize.classify_boxes for step, _ in batch):
        tick = time.perf_counter()
        found = _detect(batch, heatmaps, geometries, candidates=check)
        times.boxes_tracking.seconds += time.perf_counter() - tick
        tick = time.perf_counter()
        if check:  # before the crops, which classify the boxes it keeps
            assert heatmaps is not None
            _check_boxes(backend, batch, heatmaps, geometries, found)
        _classify_crops(backend, batch, found)
        infer += time.perf_counter() - tick
    times.inference.seconds += infer
    times.inference.frames += len(batch)
    # Otherwise the box check runs in finish_batch (the writer thread), beside the next batch's
    # inference: here it made this thread the pipeline's slowest (bikes.mp4 results-only at batch 1:
    # inference stage 1.39-1.55 ms per frame against 1.09-1.15 without the check).
    checker = backend if check and found is None else None
    return InferredBatch(batch, logits, heatmaps, geometries, found, checker)


def _detect(
    batch: Sequence[tuple[FrameStep, Frame]],
    heatmaps: np.ndarray | None,
    geometries: list[Geometry],
    candidates: bool = False,
) -> list[Detections]:
    return [
        step.detect(
            None if heatmaps is None else heatmaps[k],
            geometries[k],
            candidates=candidates and step.reads_box_evidence(),
        )
        for k, (step, _) in enumerate(batch)
    ]


def finish_batch(inferred: InferredBatch, times: BatchTimes) -> list[tuple[FrameResult, list[TrackEvent]]]:
    """Boxes, tracking and results of an inferred batch, in order (runs in the runner's writer thread)."""
    tick = time.perf_counter()
    batch, heatmaps = inferred.batch, inferred.heatmaps
    found = inferred.found
    if found is None:
        found = _detect(batch, heatmaps, inferred.geometries, candidates=inferred.checker is not None)
        if inferred.checker is not None:
            assert heatmaps is not None  # a checker is set only for batches with heatmaps
            _check_boxes(inferred.checker, batch, heatmaps, inferred.geometries, found)
    out = [
        step.finish(frame, inferred.logits[k], None if heatmaps is None else heatmaps[k], inferred.geometries[k],
                    found[k])
        for k, (step, frame) in enumerate(batch)
    ]  # fmt: skip
    times.boxes_tracking.seconds += time.perf_counter() - tick
    times.boxes_tracking.frames += len(batch)
    return out


def process_batch(
    backend: Backend, batch: Sequence[tuple[FrameStep, Frame]], times: BatchTimes
) -> list[tuple[FrameResult, list[TrackEvent]]]:
    """One batch of frames (any mix of sources) to their results, in order (one backend call)."""
    return finish_batch(infer_batch(backend, batch, times), times)


def can_classify_maps(backend: Backend) -> bool:
    """Whether the runner can ask ``backend`` about single boxes (wrappers that only infer cannot)."""
    return bool(getattr(backend, "can_classify_maps", False))


def _check_boxes(
    backend: Backend,
    batch: Sequence[tuple[FrameStep, Frame]],
    heatmaps: np.ndarray,
    geometries: list[Geometry],
    found: list[Detections],
) -> None:
    """Every box of the batch read by the classifier on its own evidence, in one backend call.

    Of overlapping candidates the most probable stays (``pick_boxes``); boxes below their source's
    ``box_evidence`` are dropped; the rest take the class the classifier saw in them
    (``edge_xcnn.box_evidence``).
    """
    maps: list[np.ndarray] = []
    owners: list[int] = []
    for k, ((step, _), dets) in enumerate(zip(batch, found, strict=True)):
        if step.reads_box_evidence() and len(dets):
            maps.append(evidence_maps(heatmaps[k], geometries[k].to_network(dets.xyxy), step.meta.polarity))
            owners += [k] * len(dets)
    if not maps:
        return
    map_logits = backend.classify_maps(np.concatenate(maps))
    assert map_logits is not None  # asked only of a backend that can
    probability, label = box_probabilities(map_logits)
    owners_a = np.array(owners)
    for k in sorted(set(owners)):
        mine = owners_a == k
        d = found[k]
        step = batch[k][0]
        p = probability[mine]
        keep = pick_boxes(d.xyxy, p)
        keep = np.sort(keep[p[keep] >= step.box_evidence()])  # back in contour order (largest first)
        confidence = p if step.localize.score == "evidence" else d.confidence
        found[k] = Detections(d.xyxy[keep], confidence[keep], label[mine][keep], d.tracker_id)


def _classify_crops(backend: Backend, batch: Sequence[tuple[FrameStep, Frame]], found: list[Detections]) -> None:
    """Every box of the batch classified on its own crop, in one backend call."""
    pieces: list[np.ndarray] = []
    owners: list[int] = []
    for k, ((step, frame), dets) in enumerate(zip(batch, found, strict=True)):
        if step.localize.classify_boxes and len(dets):
            assert frame.image is not None  # the runner keeps full frames when boxes are classified
            pieces += crops(frame.image, dets.xyxy)
            owners += [k] * len(dets)
    if not pieces:
        return
    crop_logits, _, _ = backend.predict(pieces)
    labels = crop_logits.argmax(axis=1)
    owners_a = np.array(owners)
    for k in set(owners):
        d = found[k]
        found[k] = Detections(d.xyxy, d.confidence, labels[owners_a == k], d.tracker_id)


def source_steps(
    sources: Sequence[SourceRef], meta: ModelMeta, localize: LocalizeOptions, tracker: TrackerOptions
) -> list[FrameStep]:
    """One step (one tracker) per source: ids are never shared between sources."""
    return [FrameStep(s, meta, localize, tracker) for s in sources]
