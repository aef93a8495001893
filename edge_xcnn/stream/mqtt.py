"""MQTT for event sinks: the ``mqtt://`` / ``mqtts://`` URI, credentials, a publisher that rides out outages.

``mqtt://[user@]host[:port]/topic[?option=value&...]``; ``mqtts://`` is TLS (port 8883 by default).
The password never comes from the command line (it would show in ``ps``, shell history and service
definitions): it is read from ``$EDGE_XCNN_MQTT_PASSWORD``, or from a file named by
``?password_file=PATH`` or ``$EDGE_XCNN_MQTT_PASSWORD_FILE`` (systemd's ``LoadCredential=``, Docker
secrets). Options: ``ca``, ``cert``, ``key`` (TLS files), ``password_file``, ``client_id``,
``buffer`` (messages kept while the broker is away), ``qos`` (0 or 1; default 1).

Publishing is paho-mqtt's: QoS 1 messages stay in paho's outgoing store until the broker acknowledges
them, so a broker that goes away and comes back gets every stored message again, in order (at least
once: a message whose acknowledgement was lost with the connection is sent twice, marked ``dup``). The
store is bounded by ``buffer``; when it is full, new messages are dropped and counted, never silently.

Order across an outage: paho writes a new message to a fresh socket as soon as it exists, before the
broker's CONNACK makes it resend its stored backlog, so a message published during the reconnect could
overtake the ones stored during the outage (seen once in a test on a loaded machine). So with QoS 1,
from a lost connection until everything paho already holds is acknowledged again, new messages wait in
the publisher's own queue (within the same ``buffer``) and are handed to paho after it, in order.
"""

from __future__ import annotations

import difflib
import logging
import os
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from edge_xcnn.errors import BadData, EdgeXcnnError, MissingDependency

PASSWORD_ENV = "EDGE_XCNN_MQTT_PASSWORD"
PASSWORD_FILE_ENV = "EDGE_XCNN_MQTT_PASSWORD_FILE"
QUERY_KEYS = ("ca", "cert", "key", "password_file", "client_id", "buffer", "qos")
DEFAULT_BUFFER = 10_000  # messages: 400 s of one 25 FPS camera, about 3 MB of frame JSON
# Reconnect backoff: paho doubles the wait after each failed try, from MIN to MAX. A 5 s ceiling keeps
# the time from "the broker is back" to "messages flow again" under 5 s at a cost of one TCP SYN per 5 s.
RECONNECT_MIN_S = 0.25
RECONNECT_MAX_S = 5.0
LOG = logging.getLogger("edge_xcnn.mqtt")  # warnings reach stderr through Python's last-resort handler
MAX_INFLIGHT = 100  # unacknowledged QoS 1 messages on the wire at once (paho's default of 20 caps throughput)


class MqttError(EdgeXcnnError):
    """A broker that refuses us (bad credentials, TLS) or an MQTT URI that cannot work."""


@dataclass(frozen=True)
class MqttTarget:
    """Where events go, parsed from the URI; holds no password."""

    tls: bool
    host: str
    port: int
    topic: str
    username: str | None = None
    password_file: Path | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    client_id: str | None = None
    buffer: int = DEFAULT_BUFFER
    qos: int = 1

    def __str__(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        user = "***@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}/{self.topic}"


def is_mqtt_uri(uri: str) -> bool:
    return uri.lower().startswith(("mqtt://", "mqtts://"))


def parse_mqtt_uri(uri: str) -> MqttTarget:
    """Parse ``mqtt(s)://[user@]host[:port]/topic[?opts]``; every problem is one line without secrets."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in ("mqtt", "mqtts"):
        raise BadData(f"not an MQTT URI (mqtt:// or mqtts://): {scheme}://...")
    shown = f"{scheme}://{parts.hostname or ''}"
    if parts.password is not None:
        raise BadData(
            f"{shown}: a password in the URI would show in process lists and logs; "
            f"put it in ${PASSWORD_ENV} or a file (?password_file=PATH)"
        )
    if not parts.hostname:
        raise BadData(f"{scheme}:// needs a broker host, e.g. {scheme}://127.0.0.1/edge-xcnn")
    try:
        port = parts.port or (8883 if scheme == "mqtts" else 1883)
    except ValueError as e:
        raise BadData(f"{shown}: the port must be a number from 1 to 65535") from e
    topic = parts.path.strip("/")
    if not topic:
        raise BadData(f"{shown}: give a topic after the host, e.g. {shown}/edge-xcnn")
    if "#" in uri or any(c in topic for c in "+\0"):
        raise BadData(f"{shown}: the topic {topic!r} must not contain '+', '#' (they are for subscribers)")
    options: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in QUERY_KEYS:
            close = difflib.get_close_matches(key, QUERY_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(QUERY_KEYS)})"
            raise BadData(f"{shown}: unknown option {key!r}{hint}")
        options[key] = value
    buffer = _int_option(options, "buffer", DEFAULT_BUFFER, 1, 65_000, shown)  # MQTT message ids are 16-bit
    qos = _int_option(options, "qos", 1, 0, 1, shown)
    files = {k: Path(options[k]) for k in ("ca", "cert", "key", "password_file") if k in options}
    if not files.get("password_file") and os.environ.get(PASSWORD_FILE_ENV):
        files["password_file"] = Path(os.environ[PASSWORD_FILE_ENV])
    for name, path in files.items():
        if not path.is_file():
            raise BadData(f"{shown}: {name} file not found: {path}")
    if ("cert" in files) != ("key" in files):
        raise BadData(f"{shown}: a client certificate needs both ?cert= and ?key=")
    if not scheme.endswith("s") and {"ca", "cert"} & files.keys():
        raise BadData(f"{shown}: TLS files given to plain mqtt://; use mqtts://")
    return MqttTarget(
        tls=scheme == "mqtts",
        host=parts.hostname,
        port=port,
        topic=topic,
        username=unquote(parts.username) if parts.username else None,
        password_file=files.get("password_file"),
        ca=files.get("ca"),
        cert=files.get("cert"),
        key=files.get("key"),
        client_id=options.get("client_id") or None,
        buffer=buffer,
        qos=qos,
    )


def _int_option(options: dict[str, str], key: str, default: int, low: int, high: int, shown: str) -> int:
    if key not in options:
        return default
    try:
        value = int(options[key])
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise BadData(f"{shown}: ?{key}= must be a whole number from {low} to {high}, got {options[key]!r}")
    return value


def read_password(target: MqttTarget, environ: dict[str, str] | None = None) -> str | None:
    """The broker password: the file (``password_file``) first, then ``$EDGE_XCNN_MQTT_PASSWORD``.

    One trailing newline is stripped from a file (``echo secret > file`` adds one).
    """
    env = os.environ if environ is None else environ
    if target.password_file is not None:
        try:
            text = target.password_file.read_text(encoding="utf-8")
        except OSError as e:
            raise BadData(f"cannot read the MQTT password file {target.password_file}: {e.strerror}") from e
        return text[:-1] if text.endswith("\n") else text
    return env.get(PASSWORD_ENV) or None


@dataclass
class PublisherStats:
    """What the publisher did; read by the run summary and the metrics endpoint."""

    published: int = 0  # accepted into the outgoing store
    acknowledged: int = 0  # PUBACK from the broker (QoS 1) or written to the socket (QoS 0)
    dropped: int = 0  # refused because the store was full, or still unsent when the run ended
    connects: int = 0
    reconnects: int = 0  # connections after the first
    outages_s: list[float] = field(default_factory=list)  # disconnected -> connected again, seconds
    connected_at: list[float] = field(default_factory=list)  # unix time of each connection
    connected: bool = False
    last_error: str | None = None


def tls_context(target: MqttTarget) -> ssl.SSLContext:
    """Verify the broker against ``?ca=`` (or the system's CAs), with the client certificate if given."""
    try:
        context = ssl.create_default_context(cafile=str(target.ca) if target.ca else None)
        if target.cert is not None and target.key is not None:
            context.load_cert_chain(str(target.cert), str(target.key))
    except (ssl.SSLError, OSError) as e:
        raise MqttError(f"{target}: cannot load the TLS files: {e}") from e
    return context


def probe_tls(target: MqttTarget, context: ssl.SSLContext, timeout: float) -> None:
    """One TLS handshake before paho takes over: an untrusted certificate is an error now, not a silent retry loop.

    A broker that does not answer at all is not an error (it may come up later; messages wait).
    """
    try:
        with (
            socket.create_connection((target.host, target.port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=target.host),
        ):
            pass
    except ssl.SSLCertVerificationError as e:
        raise MqttError(f"{target}: the broker's certificate is not trusted ({e.verify_message}); give ?ca=FILE") from e
    except ssl.SSLError as e:
        raise MqttError(f"{target}: TLS handshake failed ({e.reason or e})") from e
    except OSError:
        return


class MqttPublisher:
    """One paho client on its own network thread: connects, reconnects with backoff, keeps QoS 1 messages.

    ``publish`` never blocks on the network, so a slow or absent broker never slows the video path.
    """

    def __init__(self, target: MqttTarget, password: str | None, *, connect_wait: float = 5.0) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError as e:
            raise MissingDependency("paho-mqtt", "fleet") from e
        self.target = target
        self.stats = PublisherStats()
        self._lock = threading.Lock()
        self._first = threading.Event()
        self._refused: str | None = None
        self._down_since: float | None = None
        self._closed = False
        # Until connected, and after a lost connection (QoS 1): new messages wait here until paho's backlog
        # is acknowledged (a broker that is down at the start has the same reconnect race).
        self._held: deque[tuple[str, bytes]] = deque()
        self._holding = target.qos > 0
        self._handed = 0  # messages given to paho (its store holds handed - acknowledged)
        self._send = threading.Lock()  # one sender at a time, so the hand-over keeps order (never in callbacks)
        client_id = target.client_id or f"edge-xcnn-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if target.username is not None:
            self._client.username_pw_set(target.username, password)
        elif password is not None:
            raise BadData(f"{target}: a password was given but no user name (mqtt://USER@host/topic)")
        if target.tls:
            context = tls_context(target)
            probe_tls(target, context, timeout=connect_wait)
            self._client.tls_set_context(context)
        self._client.max_queued_messages_set(target.buffer)
        self._client.max_inflight_messages_set(MAX_INFLIGHT)
        self._client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.connect_async(target.host, target.port, keepalive=30)
        self._client.loop_start()
        # Wait briefly for the first connection so that a refusal (bad password, TLS) is one clear error
        # before any work; a broker that is merely not up yet is not an error: messages wait in the buffer.
        self._first.wait(connect_wait)
        if self._refused is not None:
            self._client.loop_stop()
            raise MqttError(f"{target}: the broker refused the connection: {self._refused}")

    # paho callbacks (its network thread) ---------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            text = str(reason)
            # Refusals that will not change by retrying: stop at once instead of hammering the broker.
            if any(w in text.lower() for w in ("not authorized", "bad user name", "identifier rejected")):
                self._refused = text
                client.disconnect()
            with self._lock:
                self.stats.last_error = text
            self._first.set()
            return
        with self._lock:
            self.stats.connects += 1
            self.stats.connected_at.append(time.time())
            if self.stats.connects > 1:
                self.stats.reconnects += 1
            if self._down_since is not None:
                self.stats.outages_s.append(time.monotonic() - self._down_since)
                self._down_since = None
                LOG.warning("%s: connected again after %.1f s", self.target, self.stats.outages_s[-1])
            self.stats.connected = True
        self._first.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._lock:
            if self.stats.connected and not self._closed:
                self._down_since = time.monotonic()
                self.stats.last_error = str(reason)
                LOG.warning(
                    "%s: lost the broker (%s); keeping up to %d messages until it is back",
                    self.target, reason, self.target.buffer,
                )  # fmt: skip
            self.stats.connected = False
            if self.target.qos > 0:
                self._holding = True

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self._lock:
            self.stats.acknowledged += 1

    # ---------------------------------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes) -> bool:
        """Queue one message; False (and counted as dropped) when the buffer is full."""
        if self._refused is not None:
            raise MqttError(f"{self.target}: the broker refused the connection: {self._refused}")
        with self._send:
            self._release()
            with self._lock:
                holding = self._holding
                if holding:
                    if len(self._held) + self._handed - self.stats.acknowledged >= self.target.buffer:
                        self.stats.dropped += 1
                        return False
                    self._held.append((topic, payload))
                    self.stats.published += 1
            return True if holding else self._hand(topic, payload)

    def _hand(self, topic: str, payload: bytes, *, held: bool = False) -> bool:
        """One message to paho (the caller holds ``_send``); ``held``: already counted as published."""
        import paho.mqtt.client as mqtt

        info = self._client.publish(topic, payload, qos=self.target.qos)
        with self._lock:
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                self.stats.dropped += 1
                if held:  # counted as published when it was held; paho refused it after all
                    self.stats.published -= 1
                return False
            if not held:
                self.stats.published += 1
            self._handed += 1
        return True

    def _release(self) -> None:
        """Hand the held messages to paho once it is connected and its backlog acknowledged (caller holds ``_send``)."""
        with self._lock:
            if not self._holding or not self.stats.connected or self._handed > self.stats.acknowledged:
                return
            held = list(self._held)
            self._held.clear()
            self._holding = False
        for topic, payload in held:
            self._hand(topic, payload, held=True)

    @property
    def pending(self) -> int:
        """Messages not yet acknowledged by the broker."""
        with self._lock:
            return self.stats.published - self.stats.acknowledged

    def close(self, drain_timeout: float = 10.0) -> None:
        """Wait up to ``drain_timeout`` s for the broker to take what is stored, then disconnect.

        What is still unacknowledged then is counted as dropped (idempotent).
        """
        if self._closed:
            return
        deadline = time.monotonic() + drain_timeout
        while self.pending > 0 and time.monotonic() < deadline and self._refused is None:
            with self._send:
                self._release()
            time.sleep(0.02)
        with self._lock:
            self._closed = True
            self.stats.dropped += max(0, self.stats.published - self.stats.acknowledged)
            if self.stats.dropped:
                LOG.warning(
                    "%s: %d of %d messages dropped (the broker was away longer than ?buffer=%d holds)",
                    self.target, self.stats.dropped, self.stats.published + self.stats.dropped, self.target.buffer,
                )  # fmt: skip
        self._client.disconnect()
        self._client.loop_stop()
