"""The runner: decode, the per-frame step and writing overlap in threads joined by bounded queues.

    readers (one thread per source) -> infer_batch (this thread; one batch over all sources)
        -> writer thread (boxes + tracking, overlay once per frame if a sink wants pictures, every sink)

The runner only schedules. What a frame becomes is :mod:`edge_xcnn.stream.step`; where it goes is the
:class:`~edge_xcnn.stream.sink.Sink` interface. Order of a run, so that a failure costs nothing:

1. :func:`check_run`: option ranges, inputs, every output (paths, symlinks, existing files), cheaply,
   before the caller loads the model;
2. sources opened, their first frames decoded and inferred;
3. only then the sinks opened; results written as they come;
4. at the end, on a limit, SIGINT/SIGTERM (``stop``), or an error: readers stopped, everything already
   inferred written, track ends sent, every sink closed; then a reader's or sink's exception is raised.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_xcnn.backends.base import Backend
from edge_xcnn.errors import EdgeXcnnError
from edge_xcnn.stream.gapfill import GapFiller
from edge_xcnn.stream.overlay import Overlay, OverlayOptions
from edge_xcnn.stream.results import FrameResult, SourceRef, TrackEvent
from edge_xcnn.stream.sink import Sink, SinkContext, SinkError, sink_class
from edge_xcnn.stream.sources import Decoder, Frame, FrameReader, NetworkView, ReaderStats, SourceError, preview_size
from edge_xcnn.stream.step import (
    BatchTimes,
    FrameStep,
    InferredBatch,
    LocalizeOptions,
    StageTimes,
    can_classify_maps,
    finish_batch,
    infer_batch,
    source_steps,
)
from edge_xcnn.stream.threads import ThreadPlan
from edge_xcnn.stream.tracking import TRACKERS, TrackerOptions, fill_gaps_for
from edge_xcnn.stream.uri import SinkSpec, SourceSpec, parse_sink, parse_source

_END = object()
DECODERS: tuple[str, ...] = ("pyav", "gstreamer", "nvv4l2")


@dataclass
class RunOptions:
    """Everything ``edge-xcnn run`` takes besides the model.

    ``outputs`` are sink URIs as given (``-o``), already including ``display://0`` when a window is
    wanted (the CLI decides that, with ``sinks.wants_window``); ``json_path`` and ``mot_path`` add the
    JSON-lines and MOT sinks. ``overwrite`` lets outputs replace existing files.
    """

    sources: list[str]
    outputs: list[str] = field(default_factory=list)
    json_path: Path | None = None
    mot_path: Path | None = None
    overwrite: bool = False
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
    # Sinks opened by the caller and written with the others (metrics, outputs shared by several runners);
    # the runner calls their close() too, so shared ones must make it a no-op.
    sinks: list[Sink] = field(default_factory=list)
    names: list[str] | None = None  # the sources' short names (cameras.yaml); default: from their URIs
    # Consecutive frames of a file per inference call (live sources: always their newest frame alone,
    # so their latency stays one frame). Several sources are batched together in any case.
    batch: int = 1
    # Decode/encode threads; None = ThreadPlan.for_run for this run (inference threads are the backend's).
    threads: ThreadPlan | None = None
    # Largest side of drawn/encoded pictures (pixels); None = the frames' own size. Results stay in source pixels.
    preview_size: int | None = None


@dataclass(frozen=True)
class RunPlan:
    """What :func:`check_run` found: the parsed inputs (with unique names) and outputs."""

    sources: tuple[SourceSpec, ...]
    names: tuple[str, ...]
    sinks: tuple[SinkSpec, ...]


def _positive(value: float | None, name: str, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        raise EdgeXcnnError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def check_tracker(options: TrackerOptions) -> None:
    if options.name not in TRACKERS:
        raise EdgeXcnnError(f"--tracker must be one of {', '.join(TRACKERS)}, got {options.name!r}")
    if not 0.0 <= options.track_activation_threshold <= 1.0:
        raise EdgeXcnnError(f"--track-thresh must be in [0, 1], got {options.track_activation_threshold}")
    if not 0.0 <= options.minimum_iou_threshold <= 1.0:
        raise EdgeXcnnError(f"--match-iou must be in [0, 1], got {options.minimum_iou_threshold}")
    if options.lost_track_buffer < 1:
        raise EdgeXcnnError(f"--track-buffer must be >= 1 frame, got {options.lost_track_buffer}")
    if options.fill_gaps is not None and options.fill_gaps < 0:
        raise EdgeXcnnError(f"--fill-gaps must be >= 0 frames (0 = off), got {options.fill_gaps}")


def check_run(options: RunOptions) -> RunPlan:
    """Every cheap check of a run, before any model is loaded or any file opened; raises ``EdgeXcnnError``."""
    if not options.sources:
        raise EdgeXcnnError("run needs at least one input")
    if options.decoder not in DECODERS:
        raise EdgeXcnnError(f"--decoder must be one of {', '.join(DECODERS)}, got {options.decoder!r}")
    if options.vid_stride < 1:
        raise EdgeXcnnError(f"--vid-stride must be >= 1, got {options.vid_stride}")
    if options.max_frames is not None and options.max_frames < 1:
        raise EdgeXcnnError(f"--max-frames must be >= 1, got {options.max_frames}")
    _positive(options.duration, "--duration")
    _positive(options.reconnect_window, "--reconnect-window", allow_zero=True)
    _positive(options.open_timeout, "open timeout")
    _positive(options.read_timeout, "read timeout")
    if options.queue_size < 1:
        raise EdgeXcnnError(f"queue size must be >= 1, got {options.queue_size}")
    if options.batch < 1:
        raise EdgeXcnnError(f"--batch must be >= 1, got {options.batch}")
    if options.preview_size is not None and options.preview_size < 16:
        raise EdgeXcnnError(f"--preview-size must be >= 16 pixels, got {options.preview_size}")
    check_tracker(options.tracker)
    specs = tuple(parse_source(s) for s in options.sources)
    names = tuple(_unique(list(options.names) if options.names else [s.name for s in specs]))
    if len(names) != len(specs):
        raise EdgeXcnnError(f"{len(names)} source names for {len(specs)} inputs")
    sinks = [parse_sink(o) for o in options.outputs]
    if options.json_path is not None:
        sinks.append(parse_sink(str(options.json_path), kind="jsonl"))
    if options.mot_path is not None:
        sinks.append(parse_sink(str(options.mot_path), kind="mot"))
    inputs = {os.path.realpath(s.location) for s in specs if s.kind in ("file", "images")}
    written: dict[str, str] = {}
    for spec in sinks:
        cls = sink_class(spec)
        if not spec.is_file:
            cls.check(spec, options.overwrite)
            continue
        for index, name in enumerate(names):
            location = spec.for_source(index, len(names), name)
            real = os.path.realpath(location)
            if real in inputs:
                raise SinkError(f"output {location} is one of the inputs: refusing to overwrite it")
            if real in written:
                raise SinkError(f"{location} is given as two outputs ({written[real]} and {spec.kind})")
            written[real] = spec.kind
            cls.check(SinkSpec(spec.kind, location), options.overwrite)
    return RunPlan(specs, names, tuple(sinks))


def wants_full_frames(options: RunOptions) -> bool:
    """Whether the run decodes full RGB frames: a sink draws or stores pictures, or boxes are classified."""
    plan = check_run(options)
    pictures = any(sink_class(spec).wants_image for spec in plan.sinks) or any(s.wants_image for s in options.sinks)
    return pictures or options.localize.classify_boxes


def describe_box_check(localize: LocalizeOptions, backend: Backend) -> str:
    """The box check a run applies, for its summary: ``p >= 0.2``, ``off``, or why it cannot."""
    asked = backend.meta.box_evidence if localize.box_evidence is None else localize.box_evidence
    if asked <= 0 and localize.score != "evidence":
        return "off"
    if not can_classify_maps(backend):
        return "not available (the model file carries no classifier for it, or an engine or server runs it)"
    return f"p >= {asked:g}" if asked > 0 else "scores only"


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
    signal: int | None = None  # SIGINT or SIGTERM that ended the run
    live: bool = False
    runtime: str = ""  # the backend (``onnxruntime cpu``, ``pytorch eager cpu`` ...)
    precision: str = ""
    threads: dict[str, int | None] = field(default_factory=dict)  # inference / decode (per source) / encode
    thread_note: str = ""  # how inference's share was chosen, when measured (ThreadPlan.note)
    batch: int = 1  # most frames of one file per inference call
    drawn: bool = False  # whether anything was drawn (a sink wanted pictures)
    encoders: list[str] = field(default_factory=list)  # each video output's encoder and settings
    box_check: str = ""  # the box check (edge_xcnn.box_evidence): its least probability, off, or why not
    fill_gaps: list[int] = field(default_factory=list)  # per source: frames of track gap filled (0 = off)
    filled_boxes: int = 0  # boxes the gap fill interpolated
    claimed_boxes: int = 0  # unconfirmed boxes the gap fill gave their track's id

    @property
    def end_to_end_fps(self) -> float | None:
        return self.frames_out / self.wall_seconds if self.wall_seconds > 0 else None

    @property
    def serial_fps(self) -> float | None:
        """The rate if the stages ran one after another (1 / sum of per-frame stage times)."""
        total = sum(s.ms_per_frame or 0.0 for s in self.stages.values())
        return 1000 / total if total > 0 else None

    def runtime_line(self) -> str:
        """Which runtime, precision, batch, threads and encoder the run used (printed under the table)."""
        t = self.threads
        threads = f"threads: inference {t.get('inference') or 'runtime default'}, decode {t.get('decode')} per source"
        if t.get("encode"):
            threads += f", encode {t['encode']} per video"
        line = f"runtime: {self.runtime} {self.precision}, batch {self.batch}; {threads} ({t.get('cores')} cores)"
        if self.thread_note:
            line += f" [{self.thread_note}]"
        if self.encoders:
            line += "; encoder: " + "; ".join(dict.fromkeys(self.encoders))
        if not self.drawn:
            line += "; results only (nothing drawn or encoded)"
        if self.box_check:
            line += f"; box check: {self.box_check}"
        if any(self.fill_gaps):
            frames = "/".join(str(n) for n in dict.fromkeys(self.fill_gaps))
            line += (
                f"; gap fill: up to {frames} frames ({self.filled_boxes} boxes filled, {self.claimed_boxes} "
                f"first boxes claimed; results {frames} frames late)"
            )
        return line

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
class _Source:
    spec: SourceSpec
    ref: SourceRef | None
    reader: FrameReader
    step: FrameStep | None = None
    overlay: Overlay | None = None
    gaps: GapFiller[list[TrackEvent]] | None = None
    processed: int = 0
    done: bool = False


class Runner:
    """One run over one or more sources.

    ``run`` returns the summary, or raises (after finishing every output) the exception of a source
    or sink that failed: ``EdgeXcnnError`` for bad input or a damaged source, anything else is a bug.
    """

    def __init__(self, options: RunOptions, backend: Backend) -> None:
        self.options, self.backend = options, backend
        self.meta = backend.meta
        self.summary = RunSummary(sources=[])
        self._stop = threading.Event()
        self._results: queue.Queue[Any] = queue.Queue(maxsize=options.queue_size)
        self._writer_error: BaseException | None = None
        self._sources: list[_Source] = []
        self._sinks: list[Sink] = []
        self._times = BatchTimes()
        self._recent: deque[float] = deque(maxlen=30)
        self._pictures = False  # set by run(): does any sink want annotated pictures
        self._batch = options.batch  # set by run(): 1 when a sink plays frames live
        self._threads = ThreadPlan.for_run()  # set by run() for its sources and outputs
        self.on_result: Any = None  # optional callback(result) in the writer thread (progress bars)

    def live_stats(self) -> list[tuple[str, ReaderStats, bool]]:
        """(name, reader counters, opened) per source while the run goes on; the summary fills in at the end.

        For the metrics endpoint, which reads a running runner at every scrape.
        """
        return [(s.ref.name if s.ref else s.spec.name, s.reader.stats, s.ref is not None) for s in self._sources]

    def stage_times(self) -> dict[str, StageTimes]:
        """Busy time per stage so far, after decode (decode's is in each source's ``live_stats``)."""
        times = {"inference": self._times.inference, "boxes+tracking": self._times.boxes_tracking}
        for name in ("draw+encode", "write"):
            if name in self.summary.stages:
                times[name] = self.summary.stages[name]
        return times

    def stop(self, signum: int | None = None) -> bool:
        """End the run soon, finishing every output (safe from a signal handler); True = taken care of."""
        if signum is not None and self.summary.signal is None:
            self.summary.signal, self.summary.interrupted = signum, True
        self._stop.set()
        return True

    @property
    def declared_frames(self) -> int | None:
        """Frames this run will process, when every source is a file that says how many it has."""
        total = 0
        for source in self._sources:
            info = source.reader.info
            if source.spec.live or info is None or not info.frames:
                return None
            count = -(-info.frames // self.options.vid_stride)
            total += min(count, self.options.max_frames) if self.options.max_frames else count
        return total

    # -- run -------------------------------------------------------------------------------------
    def _plan_threads(self, plan: RunPlan) -> ThreadPlan:
        """The run's thread shares: the options' plan, or one for this machine and these outputs."""
        if self.options.threads is not None:
            return self.options.threads
        encodes = any(spec.kind in ("video", "stream") for spec in plan.sinks)
        inference = getattr(self.backend, "threads", None)
        return ThreadPlan.for_run(sources=len(plan.sources), encodes=encodes, inference=inference)

    def _wants_pictures(self, plan: RunPlan) -> bool:
        """True when a sink draws or stores pictures: only then is the overlay drawn (and full frames kept)."""
        own = any(sink_class(spec).wants_image for spec in plan.sinks)
        return own or any(sink.wants_image for sink in self.options.sinks)

    def run(self) -> RunSummary:
        """Process until the sources end, a limit, ``stop()`` or an error; outputs are always finished."""
        plan = check_run(self.options)
        self.summary.sources = [str(s) for s in plan.sources]
        self.summary.live = any(s.live for s in plan.sources)
        self._threads = self._plan_threads(plan)
        self._pictures = self._wants_pictures(plan)
        # Batches are for files written to files: a stream push or a window plays frames as they come,
        # so bursts of N frames would play as stutter (and an RTSP receiver lost the last ones in a test).
        if any(spec.kind in ("stream", "display") for spec in plan.sinks):
            self._batch = 1
        else:
            self._batch = self.options.batch
        summary = self.summary
        summary.runtime = getattr(self.backend, "name", "") or type(self.backend).__name__
        summary.precision = getattr(self.backend, "precision", "")
        summary.batch, summary.drawn = self._batch, self._pictures
        summary.threads = {"inference": getattr(self.backend, "threads", None), "decode": self._threads.decode,
                           "encode": self._threads.encode, "cores": self._threads.cores}  # fmt: skip
        summary.thread_note = self._threads.note
        summary.box_check = describe_box_check(self.options.localize, self.backend)
        started = time.monotonic()
        writer = threading.Thread(target=self._write_loop, name="writer", daemon=True)
        error: BaseException | None = None
        try:
            first = self._start(plan)
            if first is not None:
                self._open_sinks(plan)
                writer.start()
                started = time.monotonic()
                self._put(first)
                self._loop(started)
        except KeyboardInterrupt:
            self.stop(signal.SIGINT)
        except BaseException as e:
            error = e
        finally:
            self._stop.set()
            for source in self._sources:
                source.reader.stop()
            if writer.is_alive():
                self._results.put(_END)
                writer.join()
            self.summary.wall_seconds = time.monotonic() - started
            close_error = self._finish()
            self._collect_reader_stats()
        failure = error or self._writer_error or self._reader_error() or close_error
        if failure is not None and self.summary.signal is not None and isinstance(failure, EdgeXcnnError):
            self.summary.errors.append(_message(failure))  # e.g. a stream open cut short by the signal
            return self.summary
        if failure is not None:
            self.summary.errors.insert(0, _message(failure))
            raise failure
        return self.summary

    def _start(self, plan: RunPlan) -> InferredBatch | None:
        """Open every source, take its first frame and infer the first batch; None when stopped meanwhile."""
        opts = self.options
        # Full RGB frames only when something draws them or crops boxes from them; the network's input
        # is made in the decoder in every case (so results are the same whether a video is written or not).
        full = self._pictures or opts.localize.classify_boxes
        view = NetworkView.of(self.meta)
        for index, (spec, name) in enumerate(zip(plan.sources, plan.names, strict=True)):
            reader = FrameReader(
                spec, index, stride=opts.vid_stride, decoder=opts.decoder, open_timeout=opts.open_timeout,
                read_timeout=opts.read_timeout, reconnect_window=opts.reconnect_window,
                queue_size=max(opts.queue_size, 2 * opts.batch), view=view, full=full, threads=self._threads.decode,
                # Crops for --classify-boxes need the full frame; the sinks then scale it to the preview.
                preview=None if opts.localize.classify_boxes else opts.preview_size,
            )  # fmt: skip
            self._sources.append(_Source(spec, None, reader))
            info = reader.open()
            picture = preview_size(info.width, info.height, opts.preview_size)
            ref = SourceRef(
                index,
                name,
                str(spec),
                info.width,
                info.height,
                info.fps / opts.vid_stride,
                spec.live,
                picture,
                stills=spec.kind == "images",
            )
            self._sources[-1].ref = ref
        refs = [s.ref for s in self._sources if s.ref is not None]
        for source, step in zip(self._sources, source_steps(refs, self.meta, opts.localize, opts.tracker), strict=True):
            source.step, source.overlay = step, Overlay(opts.overlay)
            source.gaps = GapFiller(
                fill_gaps_for(opts.tracker, step.source.sequence), backfill=opts.tracker.claim_first_frames
            )
        self.summary.fill_gaps = [s.gaps.frames for s in self._sources if s.gaps is not None]
        for source in self._sources:
            source.reader.start()
        batch: list[tuple[FrameStep, Frame]] = []
        for source in self._sources:
            frame = None
            while frame is None and not self._stop.is_set():
                frame = source.reader.get(timeout=0.1)
                if frame is None and source.reader.exhausted:
                    source.reader.join(timeout=2.0)
                    if source.reader.error is not None:
                        raise source.reader.error
                    raise SourceError(f"{source.spec}: no frames")
            if frame is None:
                return None
            assert source.step is not None
            batch.append((source.step, frame))
            self._count(source)
        return infer_batch(self.backend, batch, self._times)

    def _open_sinks(self, plan: RunPlan) -> None:
        refs = tuple(s.ref for s in self._sources if s.ref is not None)
        context = SinkContext(refs, self.options.overwrite, encode_threads=self._threads.encode)
        for spec in plan.sinks:
            sink = sink_class(spec).open(spec, context)
            self._sinks.append(sink)
        self._sinks.extend(self.options.sinks)
        self.summary.outputs = [where for sink in self._sinks for where in sink.where]
        self.summary.encoders = [e for sink in self._sinks for e in getattr(sink, "encoders", [])]

    def _loop(self, started: float) -> None:
        while not self._stop.is_set():
            if self.options.duration is not None and time.monotonic() - started >= self.options.duration:
                break
            if self._writer_error is not None:
                break
            batch = self._gather()
            if batch is None:
                break
            if batch:
                self._put(infer_batch(self.backend, batch, self._times))

    def _count(self, source: _Source) -> None:
        source.processed += 1
        if self.options.max_frames is not None and source.processed >= self.options.max_frames:
            source.done = True
            source.reader.stop()

    def _gather(self) -> list[tuple[FrameStep, Frame]] | None:
        """The next batch (None when every source has ended).

        Up to ``batch`` consecutive frames of each file, the newest frame of each live source.
        """
        pending = [s for s in self._sources if not s.done]
        if not pending:
            return None
        batch = []
        wait = 0.2 / len(pending)
        for source in pending:
            want = 1 if source.spec.live else self._batch
            for _ in range(want):
                frame = source.reader.get(timeout=wait)
                if frame is None:
                    if source.reader.exhausted:
                        source.done = True
                    break
                assert source.step is not None
                batch.append((source.step, frame))
                self._count(source)
                if source.done:
                    break
        return batch

    def _put(self, item: InferredBatch) -> None:
        while self._writer_error is None:
            try:
                self._results.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    # -- writing ---------------------------------------------------------------------------------
    def _write_loop(self) -> None:
        draw = self.summary.stages.setdefault("draw+encode" if self._pictures else "write", StageTimes())
        pictures = any(sink.wants_image for sink in self._sinks)
        while True:
            item = self._results.get()
            if item is _END:
                for source in self._sources:  # the frames the gap fill still holds
                    if source.gaps is not None:
                        self.summary.filled_boxes += source.gaps.filled
                        self.summary.claimed_boxes += source.gaps.claimed
                        for result, events in source.gaps.flush():
                            self._write_one(result, events, draw, pictures)
                return
            if self._writer_error is not None:
                continue  # keep draining so inference never blocks
            try:
                # Boxes and tracking here, not in the inference thread: the two overlap (a third busy
                # thread beside decoding), and each source's tracker still sees its frames in order.
                results = finish_batch(item, self._times)
            except BaseException as e:  # a bug: stop the run, keep what is written, raise it at the end
                self._writer_error = e
                self._stop.set()
                continue
            for result, events in results:
                gaps = self._sources[result.source.index].gaps
                released = [(result, events)] if gaps is None else gaps.push(result, events)
                for ready, ready_events in released:
                    self._write_one(ready, ready_events, draw, pictures)

    def _write_one(self, result: FrameResult, events: list[TrackEvent], draw: StageTimes, pictures: bool) -> None:
        if self._writer_error is None:
            tick = time.perf_counter()
            try:
                source = self._sources[result.source.index]
                image = source.overlay.draw(result, fps=self._rolling_fps()) if pictures and source.overlay else None
                for sink in self._sinks:
                    sink.write(result, image if sink.wants_image else None)
                    if events:
                        sink.write_events(events)
                    if sink.stop_requested:
                        self._stop.set()
            except BaseException as e:  # a sink failed: stop the run, keep what is written, raise it at the end
                self._writer_error = e
                self._stop.set()
                return
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

    def _finish(self) -> BaseException | None:
        """Send the open tracks' ends and close every sink; returns the first failure (all are closed)."""
        first: BaseException | None = None
        ends = [event for source in self._sources if source.step is not None for event in source.step.end()]
        for sink in self._sinks:
            try:
                if ends and self._writer_error is None:
                    sink.write_events(ends)
            except Exception as e:
                first = first or e
                self.summary.errors.append(f"{', '.join(sink.where)}: {_message(e)}")
            try:
                sink.close()
            except Exception as e:
                first = first or e
                self.summary.errors.append(f"closing {', '.join(sink.where)}: {_message(e)}")
        return first

    def _reader_error(self) -> BaseException | None:
        for source in self._sources:
            error = source.reader.error
            if error is not None and not (source.done and self.options.max_frames):
                return error
        return None

    def _collect_reader_stats(self) -> None:
        stages = self.summary.stages
        decode = StageTimes()
        for source in self._sources:
            source.reader.join(timeout=2.0)
            stats = source.reader.stats
            decode.seconds += stats.decode_seconds
            decode.frames += stats.decoded
            self.summary.frames_in += stats.decoded
            self.summary.dropped += stats.dropped
            self.summary.reconnects += stats.reconnects
            self.summary.outages += stats.outages
            error = source.reader.error
            if error is not None and not (source.done and self.options.max_frames):
                self.summary.errors.append(_message(error))
        ordered = {"decode": decode, "inference": self._times.inference, "boxes+tracking": self._times.boxes_tracking}
        for name in ("draw+encode", "write"):
            if name in stages:
                ordered[name] = stages[name]
        self.summary.stages = ordered


def _message(error: BaseException) -> str:
    return str(error) if isinstance(error, EdgeXcnnError) else f"{type(error).__name__}: {error}"


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name}-{count}")
    return out
