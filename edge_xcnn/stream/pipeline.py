"""The runner: decode, inference and drawing/encoding overlap in threads joined by bounded queues.

    readers (one thread per source) -> inference (this thread; one batch over all sources)
        -> writer thread (overlay, video/image/window sinks, JSON lines, MOT text)

Files deliver every frame (readers wait when inference is behind); live sources deliver their newest
frame. Every output is written as results arrive and closed properly at the end, on Ctrl-C, or when
a source or sink fails, so nothing produced is lost.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_xcnn.backends.base import Backend
from edge_xcnn.errors import EdgeXcnnError
from edge_xcnn.stream.overlay import Overlay, OverlayOptions
from edge_xcnn.stream.results import (
    FrameResult,
    LocalizeOptions,
    TrackedObject,
    crops,
    frame_boxes,
    softmax,
    tracked_objects,
)
from edge_xcnn.stream.sinks import (
    DisplaySink,
    FrameSink,
    JsonLinesSink,
    MotSink,
    open_frame_sink,
    per_source_path,
)
from edge_xcnn.stream.sources import Decoder, FrameReader
from edge_xcnn.stream.tracking import TrackerOptions, make_tracker, update_tracker
from edge_xcnn.stream.uri import SinkSpec, SourceSpec, parse_sink, parse_source

_END = object()


@dataclass
class RunOptions:
    """Everything ``edge-xcnn run`` takes besides the model."""

    sources: list[str]
    outputs: list[str] = field(default_factory=list)  # sink URIs; each source gets its own file
    json_path: Path | None = None
    mot_path: Path | None = None
    headless: bool = True
    max_frames: int | None = None  # per source
    duration: float | None = None  # seconds of wall time
    vid_stride: int = 1
    decoder: Decoder = "pyav"
    localize: LocalizeOptions = field(default_factory=LocalizeOptions)
    tracker: TrackerOptions = field(default_factory=TrackerOptions)
    overlay: OverlayOptions = field(default_factory=OverlayOptions)
    open_timeout: float = 10.0
    read_timeout: float = 10.0
    reconnect_window: float = 30.0
    queue_size: int = 8


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
class RunSummary:
    """What a run did: frame counts, stage times, latency, outputs, errors (printed and ``--summary`` JSON)."""

    sources: list[str]
    frames_in: int = 0  # decoded
    frames_out: int = 0  # results written
    dropped: int = 0  # live frames replaced before inference took them
    wall_seconds: float = 0.0
    stages: dict[str, StageTimes] = field(default_factory=dict)
    latency_ms: list[float] = field(default_factory=list)  # capture-to-result, every frame
    reconnects: int = 0
    outages: list[dict[str, float]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    interrupted: bool = False
    live: bool = False

    @property
    def end_to_end_fps(self) -> float | None:
        return self.frames_out / self.wall_seconds if self.wall_seconds > 0 else None

    @property
    def serial_fps(self) -> float | None:
        """The rate if the stages ran one after another (1 / sum of per-frame stage times)."""
        total = sum(s.ms_per_frame or 0.0 for s in self.stages.values())
        return 1000 / total if total > 0 else None

    def latency(self, q: float) -> float | None:
        return float(np.percentile(self.latency_ms, q)) if self.latency_ms else None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("latency_ms", "stages")}
        out["stages"] = {
            name: {"seconds": round(s.seconds, 4), "frames": s.frames, "ms_per_frame": s.ms_per_frame, "fps": s.fps}
            for name, s in self.stages.items()
        }
        out["end_to_end_fps"] = self.end_to_end_fps
        out["serial_fps"] = self.serial_fps
        out["latency_ms_p50"] = self.latency(50)
        out["latency_ms_p99"] = self.latency(99)
        return out


@dataclass
class _SourceState:
    spec: SourceSpec
    reader: FrameReader
    tracker: Any
    overlay: Overlay
    frame_sinks: list[FrameSink]
    mot: MotSink | None
    processed: int = 0
    done: bool = False


class Runner:
    """One run over one or more sources; ``run`` returns its summary (raise-free for source errors)."""

    def __init__(self, options: RunOptions, backend: Backend) -> None:
        self.options, self.backend = options, backend
        self.meta = backend.meta
        self.summary = RunSummary(sources=[])
        self._stop = threading.Event()
        self._results: queue.Queue[Any] = queue.Queue(maxsize=options.queue_size)
        self._writer_error: BaseException | None = None
        self._json: JsonLinesSink | None = None
        self._states: list[_SourceState] = []
        self._recent: deque[float] = deque(maxlen=30)
        self.on_result: Any = None  # optional callback(result) in the writer thread (progress bars)

    # -- setup -----------------------------------------------------------------------------------
    def _open(self) -> None:
        opts = self.options
        specs = [parse_source(s) for s in opts.sources]
        sinks = [parse_sink(o) for o in opts.outputs]
        if not opts.headless and not any(s.kind == "display" for s in sinks):
            sinks.append(SinkSpec("display", "display://0"))
        self.summary.sources = [str(s) for s in specs]
        self.summary.live = any(s.live for s in specs)
        names = _unique([s.name for s in specs])
        for index, (spec, name) in enumerate(zip(specs, names, strict=True)):
            reader = FrameReader(
                spec,
                index,
                stride=opts.vid_stride,
                decoder=opts.decoder,
                open_timeout=opts.open_timeout,
                read_timeout=opts.read_timeout,
                reconnect_window=opts.reconnect_window,
                queue_size=opts.queue_size,
            )
            info = reader.open()
            fps = info.fps / opts.vid_stride
            frame_sinks = [
                open_frame_sink(sink.for_source(index, len(specs), name), info.width, info.height, fps, name)
                for sink in sinks
            ]
            mot = MotSink(per_source_path(opts.mot_path, index, len(specs), name)) if opts.mot_path else None
            self._states.append(
                _SourceState(
                    spec=spec,
                    reader=reader,
                    tracker=make_tracker(opts.tracker, fps),
                    overlay=Overlay(opts.overlay, self.meta.polarity),
                    frame_sinks=frame_sinks,
                    mot=mot,
                )
            )
            self.summary.outputs += [_where(s) for s in frame_sinks] + ([str(mot.path)] if mot else [])
        if opts.json_path:
            self._json = JsonLinesSink(opts.json_path)
            self.summary.outputs.append(str(opts.json_path))

    @property
    def declared_frames(self) -> int | None:
        """Frames this run will process, when every source is a file that says how many it has."""
        total = 0
        for state in self._states:
            info = state.reader.info
            if state.spec.live or info is None or not info.frames:
                return None
            count = -(-info.frames // self.options.vid_stride)
            total += min(count, self.options.max_frames) if self.options.max_frames else count
        return total

    # -- run -------------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Process until the sources end, a limit is reached, Ctrl-C, or an error; always closes outputs."""
        started = time.monotonic()
        writer = threading.Thread(target=self._write_loop, name="writer", daemon=True)
        infer = self.summary.stages.setdefault("inference", StageTimes())
        post = self.summary.stages.setdefault("boxes+tracking", StageTimes())
        try:
            self._open()
        except BaseException:
            self._close_outputs()  # a later source or sink failed to open: close what the earlier ones made
            raise
        try:
            for state in self._states:
                state.reader.start()
            writer.start()
            started = time.monotonic()
            while not self._stop.is_set():
                if self.options.duration is not None and time.monotonic() - started >= self.options.duration:
                    break
                if self._writer_error is not None:
                    break
                batch = self._gather()
                if batch is None:
                    break
                if not batch:
                    continue
                tick = time.perf_counter()
                logits, heatmaps, geometries = self.backend.predict([f.image for _, f in batch])
                tock = time.perf_counter()
                infer.seconds += tock - tick
                infer.frames += len(batch)
                results = [
                    self._result(state, frame, logits[k], None if heatmaps is None else heatmaps[k], geometries[k])
                    for k, (state, frame) in enumerate(batch)
                ]
                post.seconds += time.perf_counter() - tock  # not the wait for the writer below
                post.frames += len(batch)
                for result in results:
                    self._put(result)
        except KeyboardInterrupt:
            self.summary.interrupted = True
        except EdgeXcnnError as e:
            self.summary.errors.append(str(e))
        finally:
            self._stop.set()
            for state in self._states:
                state.reader.stop()
            if writer.is_alive():
                self._results.put(_END)
                writer.join()
            self._close_outputs()
            self.summary.wall_seconds = time.monotonic() - started
            self._collect_reader_stats()
        if self._writer_error is not None:
            self.summary.errors.append(str(self._writer_error))
        return self.summary

    def stop(self) -> None:
        self._stop.set()

    def _gather(self) -> list[tuple[_SourceState, Any]] | None:
        """One frame from each source that has one (None when every source has ended)."""
        pending = [s for s in self._states if not s.done]
        if not pending:
            return None
        batch = []
        wait = 0.2 / len(pending)
        for state in pending:
            frame = state.reader.get(timeout=wait)
            if frame is not None:
                batch.append((state, frame))
                state.processed += 1
                if self.options.max_frames is not None and state.processed >= self.options.max_frames:
                    state.done = True
                    state.reader.stop()
            elif state.reader.exhausted:
                state.done = True
        return batch

    def _result(
        self, state: _SourceState, frame: Any, logits: np.ndarray, heatmap: np.ndarray | None, geometry: Any
    ) -> FrameResult:
        meta, opts = self.meta, self.options.localize
        probs = softmax(logits.astype(np.float64))
        class_id = int(probs.argmax())
        objects: list[TrackedObject] = []
        if heatmap is not None:
            xyxy, scores = frame_boxes(heatmap, geometry, meta, opts, frame.image.shape[:2])
            labels = None
            if opts.classify_boxes and len(xyxy):
                crop_logits, _, _ = self.backend.predict(crops(frame.image, xyxy))
                labels = crop_logits.argmax(axis=1)
            xyxy, scores, ids, labels = update_tracker(state.tracker, xyxy, scores, labels)
            objects = tracked_objects(xyxy, scores, ids, labels, meta.classes, tracking=state.tracker is not None)
        return FrameResult(
            source=state.reader.index,
            source_name=str(state.spec),
            frame=frame.index,
            pts=frame.pts,
            wall=frame.wall,
            captured=frame.captured,
            class_id=class_id,
            label=meta.classes[class_id],
            score=float(probs[class_id]),
            heatmap=heatmap,
            geometry=geometry,
            objects=objects,
            image=frame.image,
        )

    def _put(self, result: FrameResult) -> None:
        while self._writer_error is None:
            try:
                self._results.put(result, timeout=0.1)
                return
            except queue.Full:
                continue

    # -- writing ---------------------------------------------------------------------------------
    def _write_loop(self) -> None:
        draw = self.summary.stages.setdefault("draw+encode", StageTimes())
        while True:
            item = self._results.get()
            if item is _END:
                return
            if self._writer_error is not None:
                continue  # keep draining so inference never blocks
            result: FrameResult = item
            state = self._states[result.source]
            tick = time.perf_counter()
            try:
                if state.frame_sinks:
                    frame = state.overlay.draw(result, fps=self._rolling_fps())
                    for sink in state.frame_sinks:
                        sink.write(frame, result)
                        if isinstance(sink, DisplaySink) and sink.closed_by_user:
                            self._stop.set()
                if self._json is not None:
                    self._json.write(result)
                if state.mot is not None:
                    state.mot.write(result)
            except BaseException as e:  # a sink failed: stop the run, keep what is written
                self._writer_error = e
                self._stop.set()
                continue
            done = time.monotonic()
            draw.seconds += time.perf_counter() - tick
            draw.frames += 1
            self._recent.append(done)
            self.summary.frames_out += 1
            self.summary.latency_ms.append(1000 * (done - result.captured))
            if self.on_result is not None:
                self.on_result(result)

    def _rolling_fps(self) -> float | None:
        if len(self._recent) < 2:
            return None
        span = self._recent[-1] - self._recent[0]
        return (len(self._recent) - 1) / span if span > 0 else None

    def _close_outputs(self) -> None:
        errors = []
        for state in self._states:
            for sink in [*state.frame_sinks, state.mot]:
                if sink is None:
                    continue
                try:
                    sink.close()
                except Exception as e:
                    errors.append(f"closing {_where(sink)}: {e}")
        if self._json is not None:
            self._json.close()
        self.summary.errors += errors

    def _collect_reader_stats(self) -> None:
        decode = self.summary.stages.setdefault("decode", StageTimes())
        for state in self._states:
            stats = state.reader.stats
            decode.seconds += stats.decode_seconds
            decode.frames += stats.decoded
            self.summary.frames_in += stats.decoded
            self.summary.dropped += stats.dropped
            self.summary.reconnects += stats.reconnects
            self.summary.outages += stats.outages
            state.reader.join(timeout=2.0)
            if state.reader.error and not (state.done and self.options.max_frames):
                self.summary.errors.append(state.reader.error)
        order = ["decode", "inference", "boxes+tracking", "draw+encode"]
        self.summary.stages = {k: self.summary.stages[k] for k in order if k in self.summary.stages}


def _where(sink: Any) -> str:
    spec = getattr(sink, "spec", None)
    if spec is not None:
        from edge_xcnn.stream.uri import redact

        return redact(spec.location)
    return str(getattr(sink, "path", getattr(sink, "pattern", getattr(sink, "title", "display"))))


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name}-{count}")
    return out


def run_stream(options: RunOptions, backend: Backend) -> RunSummary:
    """Run ``backend`` over ``options.sources``; see :class:`Runner`."""
    return Runner(options, backend).run()
