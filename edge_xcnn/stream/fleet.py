"""``edge-xcnn run --config cameras.yaml``: every camera of the file in one process, one batched inference.

Each camera is one :class:`~edge_xcnn.stream.pipeline.Runner` (its reader, its tracker, its own
settings and outputs) in its own thread; all of them call one
:class:`~edge_xcnn.stream.shared.SharedInference`, which merges their frames into one batch per
call of the model. A camera that is down when the run starts, or goes away later, ends only its own
runner: it is opened again with backoff (1 s doubling to ``retry_max_s``) while the others go on,
and files it writes get a ``.N`` suffix per attempt so an earlier recording is never replaced.
Outputs shared by all cameras (``outputs:`` at the top: MQTT, JSON lines) are opened once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_xcnn.backends.base import Backend
from edge_xcnn.errors import EdgeXcnnError
from edge_xcnn.stream.cameras import CameraConfig, ConfigError, FleetConfig
from edge_xcnn.stream.metrics import RunMetrics, Snapshot, SourceCounts
from edge_xcnn.stream.pipeline import Runner, RunOptions, RunSummary, check_run
from edge_xcnn.stream.shared import MetricsSink, SharedInference, SharedSink
from edge_xcnn.stream.sink import Sink, SinkContext, sink_class
from edge_xcnn.stream.step import LocalizeOptions
from edge_xcnn.stream.tracking import TrackerOptions
from edge_xcnn.stream.uri import SinkSpec, parse_sink, parse_source

SHARED_KINDS = ("mqtt", "jsonl")  # outputs that take every camera's results in one place


@dataclass
class CameraState:
    """One camera over the whole run: its attempts, counts and last error."""

    config: CameraConfig
    live: bool
    attempts: int = 0
    summaries: list[RunSummary] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    runner: Runner | None = None
    finished: bool = False

    def total(self, key: str) -> int:
        return sum(int(getattr(s, key)) for s in self.summaries)


@dataclass
class FleetSummary:
    """What each camera did, and the sizes of the merged inference batches."""

    cameras: list[CameraState]
    batches: list[int]
    wall_seconds: float
    signal: int | None = None
    outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "wall_seconds": round(self.wall_seconds, 3),
            "signal": self.signal,
            "batches": {"calls": len(self.batches), "mean": sum(self.batches) / len(self.batches)}
            if self.batches
            else {"calls": 0, "mean": None},
            "outputs": self.outputs,
            "cameras": {
                c.config.name: {
                    "uri": str(parse_source(c.config.uri)) if c.live else c.config.uri,
                    "attempts": c.attempts,
                    "frames_in": c.total("frames_in"),
                    "frames_out": c.total("frames_out"),
                    "dropped": c.total("dropped"),
                    "reconnects": c.total("reconnects"),
                    "errors": c.errors,
                    "outputs": [o for s in c.summaries for o in s.outputs],
                }
                for c in self.cameras
            },
        }


def attempt_location(output: str, attempt: int) -> str:
    """The file an output writes on the camera's ``attempt``-th run (0: as given; then ``gate.1.mp4``...)."""
    spec = parse_sink(output)
    if attempt == 0 or not spec.is_file:
        return output
    path = Path(spec.location)
    return str(path.with_name(f"{path.stem}.{attempt}{path.suffix}"))


class Fleet:
    """Runs a :class:`FleetConfig` until every camera that can end has ended, ``stop()``, or ``duration``.

    Args:
        config: the checked camera file.
        backend: the loaded model (shared; wrapped in one :class:`SharedInference`); None to only ``check``.
        metrics: the endpoint's registry, fed by every camera (optional).
        overwrite: outputs may replace existing files.
        max_frames: per camera run (tests, benchmarks).
        duration: seconds for the whole fleet.
        retry_max_s: the longest wait before a down camera is tried again.
        on_event: called with (camera name, message) when a camera fails or is retried (the CLI logs it).
    """

    def __init__(
        self,
        config: FleetConfig,
        backend: Backend | None,
        *,
        metrics: RunMetrics | None = None,
        overwrite: bool = False,
        max_frames: int | None = None,
        duration: float | None = None,
        retry_max_s: float = 30.0,
        open_timeout: float = 10.0,
        on_event: Callable[[str, str], None] | None = None,
    ) -> None:
        self.config, self.metrics, self.overwrite = config, metrics, overwrite
        self.max_frames, self.duration, self.retry_max_s, self.open_timeout = (
            max_frames,
            duration,
            retry_max_s,
            open_timeout,
        )
        self.on_event = on_event or (lambda name, message: None)
        self.backend = backend
        self.inference: SharedInference | None = None
        self.cameras = [CameraState(c, parse_source(c.uri).live) for c in config.cameras]
        self._shared_specs = self._shared_outputs()
        self._shared: list[SharedSink] = []
        self._stop = threading.Event()
        self._signal: int | None = None
        self._lock = threading.Lock()
        if metrics is not None:
            metrics.set_snapshot(self.snapshot)

    # -- checks ----------------------------------------------------------------------------------
    def _shared_outputs(self) -> list[SinkSpec]:
        specs = [parse_sink(o) for o in self.config.outputs]
        if self.config.json is not None:
            specs.append(parse_sink(self.config.json, kind="jsonl"))
        for spec in specs:
            if spec.kind not in SHARED_KINDS:
                raise ConfigError(
                    f"{self.config.source}: shared outputs take mqtt:// or .jsonl, not {spec}; "
                    "put video and image outputs under each camera"
                )
        return specs

    def options(self, camera: CameraConfig, attempt: int) -> RunOptions:
        """The runner options of one camera's ``attempt``-th run."""
        tracker = camera.tracker
        return RunOptions(
            sources=[camera.uri],
            names=[camera.name],
            outputs=[attempt_location(o, attempt) for o in camera.outputs],
            overwrite=self.overwrite,
            max_frames=self.max_frames,
            vid_stride=camera.stride,
            decoder=self.config.decoder,  # type: ignore[arg-type]
            localize=LocalizeOptions(
                threshold=camera.threshold,
                keep=camera.keep,  # type: ignore[arg-type]
                min_area=camera.min_area,
                box_evidence=camera.box_evidence,
            ),
            tracker=TrackerOptions(
                name=tracker.name,  # type: ignore[arg-type]
                track_activation_threshold=tracker.track_thresh,
                lost_track_buffer=tracker.track_buffer,
                minimum_iou_threshold=tracker.match_iou,
                fill_gaps=tracker.fill_gaps,
            ),
            open_timeout=self.open_timeout,
            reconnect_window=self.config.reconnect_window,
        )

    def check(self) -> None:
        """Every camera's options and outputs and the shared outputs, before the model is used."""
        for state in self.cameras:
            if not state.config.outputs and not self._shared_specs:
                raise ConfigError(f"{self.config.source}: camera {state.config.name!r} writes nowhere (no outputs)")
            check_run(self.options(state.config, 0))
        for spec in self._shared_specs:
            sink_class(spec).check(spec, self.overwrite)

    # -- run -------------------------------------------------------------------------------------
    def run(self) -> FleetSummary:
        self.check()
        if self.backend is None:
            raise ValueError("Fleet.run needs a backend")
        metrics = self.metrics
        on_batch = (lambda size, seconds: metrics.observe_batch(size)) if metrics is not None else None
        self.inference = SharedInference(self.backend, max_batch=self.config.batch, on_batch=on_batch)
        self.inference.clients = lambda: sum(1 for state in self.cameras if _streaming(state))
        started = time.monotonic()
        try:
            for spec in self._shared_specs:
                self._shared.append(SharedSink(sink_class(spec).open(spec, SinkContext((), self.overwrite))))
            threads = [
                threading.Thread(
                    target=self._camera_loop, args=(state,), name=f"camera-{state.config.name}", daemon=True
                )
                for state in self.cameras
            ]
            for thread in threads:
                thread.start()
            while any(t.is_alive() for t in threads):
                if self.duration is not None and time.monotonic() - started >= self.duration:
                    self.stop()
                for thread in threads:
                    thread.join(timeout=0.1)
        except KeyboardInterrupt:
            import signal

            self.stop(signal.SIGINT)
            for state in self.cameras:
                if state.runner is not None:
                    state.runner.stop()
            raise
        finally:
            self.stop()
            for sink in self._shared:
                try:
                    sink.close_shared()
                except Exception as e:  # keep closing the others; the error is reported with its output
                    self.cameras[0].errors.append(f"closing {', '.join(sink.where)}: {e}")
            self.inference.close()
        return FleetSummary(
            cameras=self.cameras,
            batches=list(self.inference.batches),
            wall_seconds=time.monotonic() - started,
            signal=self._signal,
            outputs=[w for sink in self._shared for w in sink.where],
        )

    def stop(self, signum: int | None = None) -> bool:
        """End every camera's run, finishing its outputs (safe from a signal handler)."""
        if signum is not None and self._signal is None:
            self._signal = signum
        self._stop.set()
        for state in self.cameras:
            runner = state.runner
            if runner is not None:
                runner.stop(signum)
        return True

    def _camera_loop(self, state: CameraState) -> None:
        wait = 1.0
        while not self._stop.is_set():
            extra: list[Sink] = [*self._shared]
            if self.metrics is not None:
                extra.append(MetricsSink(self.metrics))
            options = self.options(state.config, state.attempts)
            options.sinks = extra
            assert self.inference is not None
            runner = Runner(options, self.inference)
            with self._lock:
                state.runner = runner
                state.attempts += 1
            if self._stop.is_set():
                return
            try:
                state.summaries.append(runner.run())
                wait = 1.0
                if not state.live or self.max_frames is not None or self._stop.is_set():
                    state.finished = True
                    return
                self.on_event(state.config.name, "stream ended; opening it again")
            except Exception as e:  # this camera's failure ends this camera's run only
                state.summaries.append(runner.summary)
                message = str(e) if isinstance(e, EdgeXcnnError) else f"internal error: {type(e).__name__}: {e}"
                state.errors.append(message)
                if not state.live:
                    state.finished = True
                    self.on_event(state.config.name, message)
                    return
                self.on_event(state.config.name, f"{message}; trying again in {wait:.0f} s")
            if self._stop.wait(wait):
                return
            wait = min(2 * wait, self.retry_max_s)

    # -- metrics -----------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """Counts of every camera right now: finished runs plus the running one (read at each scrape)."""
        total = Snapshot()
        for state in self.cameras:
            counts = SourceCounts(
                state.config.name, state.total("frames_in"), state.total("dropped"), state.total("reconnects")
            )
            for summary in state.summaries:
                _add_stages(total, {k: (v.seconds, v.frames) for k, v in summary.stages.items()})
            runner = state.runner
            running = runner is not None and not any(runner.summary is s for s in state.summaries)
            if running:
                assert runner is not None
                live = runner_snapshot(runner, state.config.name)
                counts.frames_in += live.sources[0].frames_in
                counts.dropped += live.sources[0].dropped
                counts.reconnects += live.sources[0].reconnects
                counts.up = live.sources[0].up
                _add_stages(total, {k: (v, live.stage_frames[k]) for k, v in live.stage_seconds.items()})
            else:
                counts.up = False
            total.sources.append(counts)
        from edge_xcnn.stream.mqtt_sink import MqttSink  # no paho import until a publisher is made

        for sink in self._shared:
            if isinstance(sink.inner, MqttSink):
                stats = sink.inner.publisher.stats
                for where in sink.where:
                    total.sink_dropped[where] = stats.dropped
                    total.sink_reconnects[where] = stats.reconnects
        return total


def _streaming(state: CameraState) -> bool:
    """The camera's runner is past opening its source (so it will call the shared inference)."""
    runner = state.runner
    if runner is None or any(runner.summary is s for s in state.summaries):
        return False
    return any(opened for _, _, opened in runner.live_stats())


def _add_stages(total: Snapshot, stages: dict[str, tuple[float, int]]) -> None:
    for name, (seconds, frames) in stages.items():
        total.stage_seconds[name] = total.stage_seconds.get(name, 0.0) + seconds
        total.stage_frames[name] = total.stage_frames.get(name, 0) + frames


def runner_snapshot(runner: Runner, name: str | None = None) -> Snapshot:
    """A running runner's counts, read from its readers and stage timers (its summary fills in only at the end).

    ``name`` folds all of the runner's sources into one (a fleet camera); None keeps one entry per source.
    """
    snap = Snapshot()
    for label, stats, opened in runner.live_stats():
        snap.sources.append(SourceCounts(label, stats.decoded, stats.dropped, stats.reconnects, opened))
        snap.stage_seconds["decode"] = snap.stage_seconds.get("decode", 0.0) + stats.decode_seconds
        snap.stage_frames["decode"] = snap.stage_frames.get("decode", 0) + stats.decoded
    for stage_name, stage in runner.stage_times().items():
        snap.stage_seconds[stage_name] = stage.seconds
        snap.stage_frames[stage_name] = stage.frames
    if name is not None:
        merged = SourceCounts(name, up=any(s.up for s in snap.sources))
        for s in snap.sources:
            merged.frames_in += s.frames_in
            merged.dropped += s.dropped
            merged.reconnects += s.reconnects
        snap.sources = [merged]
    return snap
