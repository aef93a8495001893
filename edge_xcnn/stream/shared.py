"""Pieces several runners share in one process: one batched inference, one output, the metrics sink.

``SharedInference`` is a :class:`~edge_xcnn.backends.base.Backend` in front of the real one. Each
camera's runner calls it from its own thread; one inference thread merges the calls that arrive
together (up to ``max_batch`` frames, waiting at most ``window_s`` for the rest of the active
cameras) into one call of the real backend, and hands each caller its rows back. This is Triton's
dynamic batching inside the edge process: a GPU or a many-core CPU runs one batch of N frames faster
than N single frames, and no camera waits for another one that is down.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edge_xcnn.backends.base import Backend
from edge_xcnn.stream.results import FrameResult, TrackEvent
from edge_xcnn.stream.sink import Sink, SinkContext
from edge_xcnn.stream.uri import SinkSpec

if TYPE_CHECKING:
    from edge_xcnn.stream.metrics import RunMetrics

WINDOW_S = 0.005  # longest wait for the other cameras' frames: 1/8 of a 25 FPS frame interval


@dataclass
class _Request:
    batch: np.ndarray
    done: threading.Event = field(default_factory=threading.Event)
    logits: np.ndarray | None = None
    heatmap: np.ndarray | None = None
    error: BaseException | None = None


class SharedInference(Backend):
    """One real backend, called in merged batches by any number of threads.

    Args:
        inner: the backend that computes.
        max_batch: most frames per call of ``inner``.
        window_s: how long a batch waits for more requests once it has one.
        on_batch: called with each merged batch's size and seconds (metrics).
    """

    def __init__(
        self,
        inner: Backend,
        max_batch: int = 8,
        window_s: float = WINDOW_S,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.inner, self.max_batch, self.window_s, self.on_batch = inner, max_batch, window_s, on_batch
        self.meta, self.name, self.precision = inner.meta, inner.name, inner.precision
        # How many threads may be calling right now (the fleet counts its running cameras): once that many
        # requests are in, the batch is complete and waits no longer.
        self.clients: Callable[[], int] = lambda: 1
        self.batches: list[int] = []  # size of every merged call (for the summary)
        self._lock = threading.Lock()
        self._requests: queue.Queue[_Request | None] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="shared-inference", daemon=True)
        self._thread.start()

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        request = _Request(batch)
        self._requests.put(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.logits is not None
        return request.logits, request.heatmap

    def _serve(self) -> None:
        while True:
            first = self._requests.get()
            if first is None:
                return
            group, frames = [first], len(first.batch)
            deadline = time.monotonic() + self.window_s
            clients = max(1, self.clients())
            while frames < self.max_batch and len(group) < clients:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    more = self._requests.get(timeout=remaining)
                except queue.Empty:
                    break
                if more is None:  # close() was called meanwhile: finish this batch, then stop
                    self._requests.put(None)
                    break
                if frames + len(more.batch) > self.max_batch:
                    self._compute(group)
                    group, frames = [], 0
                group.append(more)
                frames += len(more.batch)
            self._compute(group)

    def _compute(self, group: list[_Request]) -> None:
        if not group:
            return
        tick = time.perf_counter()
        try:
            logits, heatmap = self.inner.infer(np.concatenate([r.batch for r in group]))
        except BaseException as e:  # every caller of the batch gets the error, raised in its own thread
            for request in group:
                request.error = e
                request.done.set()
            return
        seconds = time.perf_counter() - tick
        start = 0
        for request in group:
            stop = start + len(request.batch)
            request.logits = logits[start:stop]
            request.heatmap = None if heatmap is None else heatmap[start:stop]
            start = stop
            request.done.set()
        with self._lock:
            self.batches.append(start)
        if self.on_batch is not None:
            self.on_batch(start, seconds)

    def close(self) -> None:
        """Stop the inference thread (the inner backend is the caller's to close)."""
        if self._thread.is_alive():
            self._requests.put(None)
            self._thread.join(timeout=5)


class SharedSink(Sink):
    """One open sink written by several runners: writes are serialized, ``close`` is the owner's."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self._lock = threading.Lock()

    @classmethod
    def open(cls, spec: SinkSpec, context: SinkContext) -> SharedSink:
        from edge_xcnn.stream.sink import sink_class

        return cls(sink_class(spec).open(spec, context))

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        with self._lock:
            self.inner.write(result, image)

    def write_events(self, events: Sequence[TrackEvent]) -> None:
        with self._lock:
            self.inner.write_events(events)

    def close(self) -> None:
        """A runner is done with it; the sink stays open for the others (see ``close_shared``)."""

    def close_shared(self) -> None:
        with self._lock:
            self.inner.close()

    @property
    def where(self) -> list[str]:
        return self.inner.where


class MetricsSink(Sink):
    """Feeds every written result to the metrics: frames out, capture-to-result latency, rolling fps."""

    def __init__(self, metrics: RunMetrics) -> None:
        self.metrics = metrics

    @classmethod
    def open(cls, spec: SinkSpec, context: SinkContext) -> MetricsSink:
        raise TypeError("MetricsSink is made by the command, not from an -o URI")

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        self.metrics.observe_result(result.source.name, time.monotonic() - result.captured)

    def close(self) -> None:
        """The endpoint outlives each runner; the command stops it."""

    @property
    def where(self) -> list[str]:
        return [f"metrics on :{self.metrics.port}/metrics"] if self.metrics.port is not None else []
