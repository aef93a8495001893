"""Short gaps in a track filled in, at the cost of a fixed delay (offline tracking's interpolation, made streaming).

A digit the map loses for a few frames and finds again keeps its track id (the tracker's lost-track
buffer) but has no box in the frames between: each is a miss. ByteTrack's authors close such gaps
after the fact by linear interpolation between the two boxes (``tools/interpolation.py`` of
ifzhang/ByteTrack, used for their MOT17/MOT20 results); here the runner holds each source's last
``frames`` results back, and when a confirmed track is seen again after at most ``frames`` missing
frames, the held frames between get its box interpolated before anything is written.

The price is latency: every result leaves ``frames`` frames late (at the end of the source the held
frames are written at once). So it is on by default for video files and off for live sources, whose
results must stay one frame behind the camera, and for image folders, whose pictures need not follow
one another (``edge-xcnn run --fill-gaps``).

Filled and claimed boxes look like any other box in the JSON lines and MOT rows (the contract's
object has no field for them; the run summary counts them). Track events are not rewritten: a
``track_start`` still names the frame its track was confirmed on, so a claimed box may carry the id
a frame or two before it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

import numpy as np

from edge_xcnn.detections import Detections
from edge_xcnn.localize import box_iou
from edge_xcnn.stream.results import FrameResult

Extra = TypeVar("Extra")
CLAIM_IOU = 0.3  # least overlap of an unconfirmed box with the track's box one frame later


@dataclass
class _Seen:
    step: int  # position of the result in the source's sequence (0-based)
    xyxy: np.ndarray
    confidence: float
    class_id: int | None


class GapFiller(Generic[Extra]):
    """One source's held-back results; ``push`` returns the results that can no longer change, in order.

    Each result travels with ``Extra`` (the runner's track events), which is handed back unchanged.
    Gaps are counted in results, not frame numbers, so ``--vid-stride`` and dropped live frames count
    as the frames the tracker saw.
    """

    def __init__(self, frames: int, *, backfill: bool = True) -> None:
        if frames < 0:
            raise ValueError(f"frames must be >= 0, got {frames}")
        self.frames = frames
        self._held: deque[tuple[int, FrameResult, Extra]] = deque()
        self._last: dict[int, _Seen] = {}
        self._step = 0
        self._known: set[int] = set()  # every id confirmed so far
        self.backfill = backfill
        self.filled = 0  # boxes added, for the run summary
        self.claimed = 0  # unconfirmed boxes given their track's id

    def push(self, result: FrameResult, extra: Extra) -> list[tuple[FrameResult, Extra]]:
        step = self._step
        self._step += 1
        if self.frames == 0:
            return [(result, extra)]
        d = result.detections
        for k in range(len(d)):
            track = result.track_id(k)
            if track is None:
                continue
            seen = _Seen(step, d.xyxy[k].astype(np.float64), float(d.confidence[k]),
                         None if d.class_id is None else int(d.class_id[k]))  # fmt: skip
            before = self._last.get(track)
            if before is not None and 1 <= step - before.step - 1 <= self.frames:
                self._fill(track, before, seen)
            elif before is None and track not in self._known and self.backfill:
                self._claim(track, seen.xyxy)
            self._known.add(track)
            self._last[track] = seen
        self._held.append((step, result, extra))
        released = []
        while self._held and self._held[0][0] <= step - self.frames:
            _, r, e = self._held.popleft()
            released.append((r, e))
        # a track unseen for longer than the gap can never be filled again
        for track in [t for t, s in self._last.items() if step - s.step > self.frames]:
            del self._last[track]
        return released

    def _claim(self, track: int, xyxy: np.ndarray) -> None:
        """A newly confirmed track's unconfirmed boxes of the frames before, followed back while they overlap."""
        chain = xyxy
        for i in range(len(self._held) - 1, -1, -1):
            step, result, extra = self._held[i]
            d = result.detections
            if d.tracker_id is None or not len(d):
                return
            free = np.flatnonzero(d.tracker_id < 1)
            if not len(free):
                return
            overlap = box_iou(chain[None], d.xyxy[free])[0]
            best = int(overlap.argmax())
            if overlap[best] < CLAIM_IOU:
                return
            k = int(free[best])
            ids = d.tracker_id.copy()
            ids[k] = track
            self._held[i] = (step, replace(result, detections=replace(d, tracker_id=ids)), extra)
            self.claimed += 1
            chain = d.xyxy[k].astype(np.float64)

    def flush(self) -> list[tuple[FrameResult, Extra]]:
        """Every held result, in order (the source ended or the run stopped)."""
        out = [(r, e) for _, r, e in self._held]
        self._held.clear()
        self._last.clear()
        return out

    def _fill(self, track: int, a: _Seen, b: _Seen) -> None:
        span = b.step - a.step
        for i, (step, result, extra) in enumerate(self._held):
            if not a.step < step < b.step:
                continue
            t = (step - a.step) / span
            box = (1 - t) * a.xyxy + t * b.xyxy
            score = (1 - t) * a.confidence + t * b.confidence
            detections = _with_box(result.detections, track, box, score, a.class_id)
            self._held[i] = (step, replace(result, detections=detections), extra)
            self.filled += 1


def _with_box(d: Detections, track: int, xyxy: np.ndarray, score: float, class_id: int | None) -> Detections:
    """``d`` with one more box owned by ``track``; box classes kept where every box has one."""
    n = len(d)
    tracker_id = np.full(n, -1, np.int64) if d.tracker_id is None else d.tracker_id
    class_ids = None
    if class_id is not None and (d.class_id is not None or n == 0):
        class_ids = np.append(np.zeros(0, np.int64) if d.class_id is None else d.class_id, class_id)
    return Detections(
        np.vstack([d.xyxy, xyxy[None].astype(np.float32)]),
        np.append(d.confidence, np.float32(score)),
        class_ids,
        np.append(tracker_id, track),
    )
