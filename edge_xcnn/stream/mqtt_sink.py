"""``-o mqtt://[user@]host[:port]/topic``: every frame's result and every track event to an MQTT broker.

Topics (CONTRACTS "Results": the topic ends with the source's name):

- ``<topic>/frames/<source>``: the per-frame JSON object, one message per processed frame, in order;
- ``<topic>/tracks/<source>``: ``track_start`` / ``track_end`` events.

QoS 1 by default (at least once: subscribers that must not double-count keep the last ``frame`` per
``source``). While the broker is away, messages wait in a bounded buffer and are sent, in order, when
it is back; what does not fit is dropped and counted (``dropped`` in the summary and the metrics).
See :mod:`edge_xcnn.stream.mqtt` for the URI's options, TLS and where the password comes from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from edge_xcnn.stream.mqtt import MqttPublisher, MqttTarget, parse_mqtt_uri, read_password
from edge_xcnn.stream.results import FrameResult, TrackEvent
from edge_xcnn.stream.sink import Sink, SinkContext
from edge_xcnn.stream.uri import SinkSpec

CONNECT_WAIT_S = 3.0  # at open: long enough to hear a refusal, short enough not to delay a box whose broker is down
DRAIN_TIMEOUT_S = 10.0  # at close: how long the stored messages may take to reach the broker


def _payload(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class MqttSink(Sink):
    """One MQTT connection for all of a run's sources."""

    def __init__(self, target: MqttTarget, publisher: MqttPublisher) -> None:
        self.target = target
        self.publisher = publisher
        self._closed = False

    @classmethod
    def check(cls, spec: SinkSpec, overwrite: bool) -> None:
        """The URI, its option values and files, and the password file: all before the model loads."""
        read_password(parse_mqtt_uri(spec.location))

    @classmethod
    def open(cls, spec: SinkSpec, context: SinkContext) -> MqttSink:
        target = parse_mqtt_uri(spec.location)
        return cls(target, MqttPublisher(target, read_password(target), connect_wait=CONNECT_WAIT_S))

    def topic(self, kind: str, source_name: str) -> str:
        return f"{self.target.topic}/{kind}/{source_name}"

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        self.publisher.publish(self.topic("frames", result.source.name), _payload(result.to_json()))

    def write_events(self, events: Sequence[TrackEvent]) -> None:
        for event in events:
            self.publisher.publish(self.topic("tracks", event.source.name), _payload(event.to_json()))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.publisher.close(DRAIN_TIMEOUT_S)

    @property
    def where(self) -> list[str]:
        return [str(self.target)]
