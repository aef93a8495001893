"""The one interface every output of ``run`` implements, and how an ``-o`` URI finds its sink.

A sink's life, driven by the runner (``edge_xcnn.stream.pipeline``):

1. ``check(spec, overwrite)`` (class method): cheap validation before anything is loaded or opened
   (paths, symlinks, existing files, URLs). Raises :class:`~edge_xcnn.errors.EdgeXcnnError`.
2. ``open(spec, context)`` (class method): called once, after the model loaded and every source gave
   its first good frame, so a run that fails earlier leaves existing files untouched.
3. ``write(result, image)`` for every frame of every source, in order per source, from one writer
   thread; ``write_events(events)`` with the track events (after the frame that caused them, and
   once more at the end with the tracks still open).
4. ``close()``: finish the output (also after Ctrl-C, SIGTERM or an error; must be idempotent).

Errors stay exceptions: a sink raises ``SinkError`` (an :class:`EdgeXcnnError`: exit 2) for an
output that cannot be written; anything else is a bug and ends the run with exit 1.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from edge_xcnn.errors import EdgeXcnnError
from edge_xcnn.stream.results import FrameResult, SourceRef, TrackEvent
from edge_xcnn.stream.uri import SinkSpec


class SinkError(EdgeXcnnError):
    """An output that cannot be written (path, permissions, symlink, existing file, unreachable server)."""


@dataclass(frozen=True)
class SinkContext:
    """What a sink knows when it is opened: every source of the run and the overwrite permission."""

    sources: tuple[SourceRef, ...]
    overwrite: bool = False
    encode_threads: int = 0  # threads per video encoder (the run's ThreadPlan; 0 = the encoder's own choice)


class Sink(abc.ABC):
    """Where a run's results go.

    Attributes:
        wants_image: True for sinks that show or store pictures; the runner then draws the overlay
            once per frame and passes it as ``image`` (else ``image`` is None and nothing is drawn).
    """

    wants_image: ClassVar[bool] = False

    @classmethod  # noqa: B027 - most sinks have nothing cheap to check
    def check(cls, spec: SinkSpec, overwrite: bool) -> None:
        """Refuse a bad output before any work starts (raise ``SinkError``)."""

    @classmethod
    @abc.abstractmethod
    def open(cls, spec: SinkSpec, context: SinkContext) -> Sink:
        """Open the output for every source in ``context``."""

    @abc.abstractmethod
    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        """Add one frame's result; ``image`` is the annotated RGB frame when ``wants_image``, else None."""

    def write_events(self, events: Sequence[TrackEvent]) -> None:  # noqa: B027 - only event sinks need them
        """Track starts and ends (ignored by sinks that only store frames)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Finish the output (idempotent)."""

    @property
    @abc.abstractmethod
    def where(self) -> list[str]:
        """The places written, credential-free (file paths, redacted URLs), for the summary."""

    @property
    def stop_requested(self) -> bool:
        """True when the sink's user asked to end the run (a window closed with q or Esc)."""
        return False


# Sink kind (from ``uri.parse_sink``) -> "module:Class", imported when first used, so optional
# dependencies (paho-mqtt, ...) load only for runs that write there.
SINKS: dict[str, str] = {
    "video": "edge_xcnn.stream.sinks:VideoSink",
    "stream": "edge_xcnn.stream.sinks:VideoSink",
    "images": "edge_xcnn.stream.sinks:ImageSink",
    "display": "edge_xcnn.stream.sinks:DisplaySink",
    "jsonl": "edge_xcnn.stream.sinks:JsonLinesSink",
    "mot": "edge_xcnn.stream.sinks:MotSink",
    "mqtt": "edge_xcnn.stream.mqtt_sink:MqttSink",
}


def register_sink(kind: str, target: str | type[Sink]) -> None:
    """Add or replace the sink for ``kind`` (``"module:Class"`` or the class itself)."""
    SINKS[kind] = target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


def sink_class(spec: SinkSpec) -> type[Sink]:
    """The class that writes ``spec``."""
    target = SINKS.get(spec.kind)
    if target is None:
        raise SinkError(f"no sink writes {spec.kind!r} outputs")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise SinkError(f"{spec.kind} outputs need a module that is not installed here ({e.name})") from e
    return getattr(module, class_name)
