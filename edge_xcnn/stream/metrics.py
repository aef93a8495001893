"""Prometheus metrics of a run (``--metrics-port N``), served by prometheus-client's HTTP server.

Two kinds of figures, fed two ways:

- Counts the runner already keeps (frames decoded / dropped per source, reconnects, busy seconds per
  stage) are read at scrape time from a snapshot function, so nothing is counted twice and the
  endpoint always agrees with the run summary.
- Distributions (capture-to-result latency, inference batch size) and per-result counts are observed
  as they happen: ``observe_result`` from the writer, ``observe_batch`` from inference.

Every metric lives in the run's own registry (not the process-global one), so two runs in one process,
as in the tests, never mix. Names follow Prometheus conventions: ``edge_xcnn_`` prefix, base units
(seconds), ``_total`` on counters.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from edge_xcnn.errors import BadData, MissingDependency

# Capture-to-result latency: 5 ms (a frame that waited for nothing) to 10 s (a stalled source).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
FPS_WINDOW = 30  # results per source in the rolling frame rate


@dataclass
class SourceCounts:
    """Cumulative counts of one source, as its reader keeps them."""

    name: str
    frames_in: int = 0
    dropped: int = 0
    reconnects: int = 0
    up: bool = True


@dataclass
class Snapshot:
    """What the runner knows right now (read at every scrape)."""

    sources: list[SourceCounts] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # busy seconds per stage
    stage_frames: dict[str, int] = field(default_factory=dict)
    sink_dropped: dict[str, int] = field(default_factory=dict)  # messages an output could not keep
    sink_reconnects: dict[str, int] = field(default_factory=dict)


class RunMetrics:
    """The metrics of one run and, once ``serve`` is called, the endpoint that exposes them."""

    def __init__(self, snapshot: Callable[[], Snapshot] | None = None) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        except ImportError as e:
            raise MissingDependency("prometheus-client", "fleet") from e
        self.registry = CollectorRegistry()
        self._snapshot = snapshot or Snapshot
        self._lock = threading.Lock()
        self._recent: dict[str, deque[float]] = {}
        self.frames_out = Counter(
            "edge_xcnn_frames_out", "Results written, per source.", ["source"], registry=self.registry
        )
        self.latency = Histogram(
            "edge_xcnn_capture_to_result_seconds",
            "From the frame's capture (decode) to its result being written, per source.",
            ["source"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "edge_xcnn_inference_batch_size",
            "Frames per inference call (one batch over all sources).",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.fps = Gauge(
            "edge_xcnn_fps", f"Results per second, per source, over the last {FPS_WINDOW}.", ["source"],
            registry=self.registry,
        )  # fmt: skip
        self.registry.register(_SnapshotCollector(self))
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    def set_snapshot(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    # observations --------------------------------------------------------------------------------
    def observe_result(self, source: str, latency_s: float | None, now: float | None = None) -> None:
        """One result written for ``source`` (``latency_s`` = capture to now, None when unknown)."""
        self.frames_out.labels(source).inc()
        if latency_s is not None and latency_s >= 0:
            self.latency.labels(source).observe(latency_s)
        t = time.monotonic() if now is None else now
        with self._lock:
            recent = self._recent.setdefault(source, deque(maxlen=FPS_WINDOW))
            recent.append(t)
            if len(recent) >= 2 and recent[-1] > recent[0]:
                self.fps.labels(source).set((len(recent) - 1) / (recent[-1] - recent[0]))

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)

    # serving -------------------------------------------------------------------------------------
    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Serve ``/metrics`` on ``addr:port`` from a daemon thread (port 0 = any free one); returns the port.

        ``0.0.0.0`` by default: Prometheus scrapes edge boxes from another machine.
        """
        from prometheus_client import start_http_server

        try:
            self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as e:
            raise BadData(f"--metrics-port {port}: cannot listen on {addr}:{port}: {e.strerror}") from e
        self.port = self._server.server_port
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _SnapshotCollector:
    """Turns the runner's cumulative counts into Prometheus families at scrape time."""

    def __init__(self, metrics: RunMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Any]:
        return []  # names are known only at collect time; an empty describe keeps registration lazy

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snap = self._metrics._snapshot()
        frames_in = CounterMetricFamily("edge_xcnn_frames_in", "Frames decoded, per source.", labels=["source"])
        dropped = CounterMetricFamily(
            "edge_xcnn_frames_dropped", "Live frames replaced by a newer one before inference took them.",
            labels=["source"],
        )  # fmt: skip
        reconnects = CounterMetricFamily(
            "edge_xcnn_source_reconnects", "Times a live source was opened again.", labels=["source"]
        )
        up = GaugeMetricFamily("edge_xcnn_source_up", "1 while the source delivers frames.", labels=["source"])
        for s in snap.sources:
            frames_in.add_metric([s.name], s.frames_in)
            dropped.add_metric([s.name], s.dropped)
            reconnects.add_metric([s.name], s.reconnects)
            up.add_metric([s.name], 1.0 if s.up else 0.0)
        stage = CounterMetricFamily(
            "edge_xcnn_stage_seconds", "Busy seconds per stage (queue waits excluded).", labels=["stage"]
        )
        stage_frames = CounterMetricFamily("edge_xcnn_stage_frames", "Frames per stage.", labels=["stage"])
        for name, seconds in snap.stage_seconds.items():
            stage.add_metric([name], seconds)
            stage_frames.add_metric([name], snap.stage_frames.get(name, 0))
        sink_dropped = CounterMetricFamily(
            "edge_xcnn_output_dropped", "Messages an output dropped (broker away, buffer full).", labels=["output"]
        )
        for name, count in snap.sink_dropped.items():
            sink_dropped.add_metric([name], count)
        sink_reconnects = CounterMetricFamily(
            "edge_xcnn_output_reconnects", "Times an output connected again.", labels=["output"]
        )
        for name, count in snap.sink_reconnects.items():
            sink_reconnects.add_metric([name], count)
        yield from (frames_in, dropped, reconnects, up, stage, stage_frames, sink_dropped, sink_reconnects)
