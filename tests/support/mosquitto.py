"""A real MQTT broker (Debian's ``mosquitto``) on 127.0.0.1 and a real subscriber, for the tests.

The broker runs as a child process on a free port with its own config file in the test's folder, so
it can be killed and started again on the same port (what a broker restart looks like to a client).
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def mosquitto_available() -> bool:
    return Path(MOSQUITTO).exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {log.read_text()[-500:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{port} within {timeout} s")


@dataclass
class Broker:
    """``mosquitto -c <folder>/mosquitto.conf``; ``extra`` lines go into the listener's config."""

    folder: Path
    port: int = field(default_factory=free_port)
    extra: list[str] = field(default_factory=list)
    allow_anonymous: bool = True
    # persistent=True keeps subscriptions and queued QoS 1 messages across a restart: a subscriber's
    # session then survives the broker's restart. The store is saved after every change, not every
    # second: with a 1 s autosave a SIGKILL lost the messages the broker had acknowledged (PUBACK) in its
    # last second but not yet delivered (seen: 4 of 250 in CI), a loss no publisher can see or repair.
    persistent: bool = False
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start (or start again) on the same port; returns the time it listened."""
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "mosquitto.conf"
        store = (
            [f"persistence_location {self.folder}/", "autosave_on_changes true", "autosave_interval 1"]
            if self.persistent
            else []
        )
        lines = [
            f"persistence {'true' if self.persistent else 'false'}",
            *store,
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            # Started as root, mosquitto drops to the "mosquitto" user, who cannot read the test's folder.
            f"user {getpass.getuser()}",
            *self.extra,
            "log_dest stdout",
            "max_queued_messages 100000",
        ]
        conf.write_text("\n".join(lines) + "\n")
        log = open(self.folder / "mosquitto.log", "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        _wait_listening(self.port, self.process, self.folder / "mosquitto.log")
        return time.time()

    def kill(self) -> float:
        """SIGKILL: the broker vanishes without a goodbye, as a crash or a power cut does."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
        return time.time()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None


class Subscriber:
    """A paho client subscribed to ``topic`` at QoS 1 (persistent session), keeping every message in order."""

    def __init__(
        self,
        port: int,
        topic: str,
        *,
        client_id: str = "edge-xcnn-test-subscriber",
        tls_ca: Path | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.topic = topic
        # clean_session=False: while this client is away the broker keeps its messages (and, when the broker
        # is persistent, its subscription survives the broker's restart).
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, protocol=mqtt.MQTTv311
        )
        if tls_ca is not None:
            self.client.tls_set(ca_certs=str(tls_ca))
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("the subscriber could not subscribe")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append((message.topic, json.loads(message.payload)))

    def wait_for(self, count: int, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        """Wait until ``count`` messages arrived (or ``timeout``); returns a copy of what arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    break
            time.sleep(0.05)
        with self._lock:
            return list(self.messages)

    def resubscribed(self, timeout: float = 20.0) -> None:
        """After a broker restart: wait until this client is back and subscribed again."""
        self._subscribed.clear()
        if not self._subscribed.wait(timeout):
            raise RuntimeError("the subscriber did not come back after the broker restart")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def make_tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl), returns (ca, cert, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca = folder / "ca.key", folder / "ca.crt"
    key, csr, cert = folder / "server.key", folder / "server.csr", folder / "server.crt"
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    quiet: dict[str, Any] = {
        "check": True,
        "capture_output": True,
        "env": {**os.environ, "RANDFILE": str(folder / ".rnd")},
    }
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=edge-xcnn test CA",
         "-keyout", str(ca_key), "-out", str(ca)], **quiet,
    )  # fmt: skip
    subprocess.run(
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key),
         "-out", str(csr)], **quiet,
    )  # fmt: skip
    subprocess.run(
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
         "-days", "2", "-extfile", str(ext), "-out", str(cert)], **quiet,
    )  # fmt: skip
    return ca, cert, key
