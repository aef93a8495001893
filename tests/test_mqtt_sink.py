"""The MQTT sink against a real broker (mosquitto on 127.0.0.1) and a real subscriber."""

from __future__ import annotations

import json
import os
import subprocess
import time

import numpy as np
import pytest
from support.mosquitto import Broker, Subscriber, make_tls_files, mosquitto_available

from edge_xcnn.detections import Detections
from edge_xcnn.errors import EdgeXcnnError
from edge_xcnn.preprocess import Geometry
from edge_xcnn.stream.mqtt import PASSWORD_ENV, MqttError, parse_mqtt_uri, read_password
from edge_xcnn.stream.mqtt_sink import MqttSink
from edge_xcnn.stream.results import FrameResult, SourceRef, TrackEvent
from edge_xcnn.stream.sink import SinkContext
from edge_xcnn.stream.uri import SinkSpec

# CI installs mosquitto (.ci/run) and sets EDGE_XCNN_REQUIRE_MQTT so these cannot silently skip there.
if not mosquitto_available():
    if os.environ.get("EDGE_XCNN_REQUIRE_MQTT"):
        raise RuntimeError("EDGE_XCNN_REQUIRE_MQTT is set but mosquitto is not installed")
    pytest.skip("mosquitto is not installed (apt-get install mosquitto; .ci/run does)", allow_module_level=True)

CAM = SourceRef(index=0, name="cam1", uri="rtsp://***@10.0.0.2/main", width=64, height=48, fps=25.0, live=True)


def frame(k: int, source: SourceRef = CAM) -> FrameResult:
    return FrameResult(
        source=source,
        frame=k,
        pts=k / 25,
        wall=1_700_000_000 + k / 25,
        captured=time.monotonic(),
        class_id=3,
        label="3",
        score=0.9,
        detections=Detections(
            xyxy=np.array([[1, 2, 30, 40]], np.float32),
            confidence=np.array([0.8], np.float32),
            tracker_id=np.array([7]),
        ),
        classes=tuple(str(i) for i in range(10)),
        heatmap=None,
        geometry=Geometry(scale=(1.0, 1.0), offset=(0.0, 0.0)),
        image=np.zeros((48, 64, 3), np.uint8),
    )


def open_sink(uri: str) -> MqttSink:
    spec = SinkSpec("mqtt", uri)
    MqttSink.check(spec, False)
    return MqttSink.open(spec, SinkContext(sources=(CAM,)))


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


def test_frames_and_events_arrive_in_order_on_their_topics(broker):
    sub = Subscriber(broker.port, "edge/#")
    sink = open_sink(f"mqtt://127.0.0.1:{broker.port}/edge")
    for k in range(250):
        sink.write(frame(k), None)
        if k == 0:
            sink.write_events([TrackEvent("track_start", CAM, 7, "3", 0.8, 0, 0, (1, 2, 30, 40))])
    sink.write_events([TrackEvent("track_end", CAM, 7, "3", 0.8, 0, 249, (1, 2, 30, 40))])
    sink.close()
    got = sub.wait_for(252, timeout=20)
    sub.close()
    frames = [m for t, m in got if t == "edge/frames/cam1"]
    events = [m for t, m in got if t == "edge/tracks/cam1"]
    assert [m["frame"] for m in frames] == list(range(250))
    assert frames[5] == json.loads(json.dumps(frame(5).to_json()))  # exactly the CONTRACTS object
    assert [e["event"] for e in events] == ["track_start", "track_end"]
    assert events[1]["last_frame"] == 249 and events[1]["source"] == CAM.uri
    assert sink.publisher.stats.dropped == 0 and sink.publisher.stats.acknowledged == 252


def test_broker_killed_and_restarted_loses_nothing_within_the_buffer(tmp_path):
    # A persistent broker keeps the subscriber's session across its restart (saved every second), so what
    # the test measures is the publisher: whatever it stored while the broker was away must arrive.
    broker = Broker(tmp_path / "broker", persistent=True)
    broker.start()
    sub = Subscriber(broker.port, "edge/#", client_id="sub-restart")
    time.sleep(1.5)  # the broker saves the subscription
    sink = open_sink(f"mqtt://127.0.0.1:{broker.port}/edge?buffer=1000")
    try:
        for k in range(100):
            sink.write(frame(k), None)
        sub.wait_for(100, timeout=10)
        broker.kill()
        for k in range(100, 200):  # published into the buffer while there is no broker
            sink.write(frame(k), None)
        restarted = broker.start()
        for k in range(200, 250):
            sink.write(frame(k), None)
            time.sleep(0.01)
        sink.close()
        got = sub.wait_for(250, timeout=20)
    finally:
        sub.close()
        broker.stop()
    numbers = [m["frame"] for _, m in got]
    assert sorted(set(numbers)) == list(range(250))  # lost: 0 (QoS 1 may repeat one in flight at the kill)
    assert numbers == sorted(numbers) or len(numbers) > 250
    stats = sink.publisher.stats
    assert stats.dropped == 0 and stats.reconnects == 1
    print(f"reconnected {stats.connected_at[-1] - restarted:.2f} s after the broker listened again")


def test_full_buffer_drops_new_messages_and_counts_them(tmp_path):
    broker = Broker(tmp_path / "broker")
    broker.start()
    sink = open_sink(f"mqtt://127.0.0.1:{broker.port}/edge?buffer=10")
    broker.kill()
    for k in range(25):
        sink.write(frame(k), None)
    stats = sink.publisher.stats
    assert stats.published == 10 and stats.dropped == 15
    sub_broker_started = broker.start()
    sub = Subscriber(broker.port, "edge/#", client_id="sub-buffer")
    sink.close()
    got = sub.wait_for(10, timeout=5)
    sub.close()
    broker.stop()
    assert sub_broker_started > 0
    # What was kept is the oldest ten, delivered once the broker returned (or counted dropped at close).
    assert [m["frame"] for _, m in got] == list(range(len(got)))
    assert stats.published + 15 == 25 and stats.dropped == 15 + (10 - stats.acknowledged)


def test_password_from_environment_and_file_with_a_broker_that_checks(tmp_path, monkeypatch):
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "edge", "s3cret-pw"], check=True)
    broker = Broker(tmp_path / "broker", allow_anonymous=False, extra=[f"password_file {passwd}"])
    broker.start()
    try:
        sub = Subscriber(broker.port, "edge/#", username="edge", password="s3cret-pw")
        monkeypatch.setenv(PASSWORD_ENV, "s3cret-pw")
        sink = open_sink(f"mqtt://edge@127.0.0.1:{broker.port}/edge")
        sink.write(frame(0), None)
        sink.close()
        monkeypatch.delenv(PASSWORD_ENV)
        secret = tmp_path / "mqtt_password"
        secret.write_text("s3cret-pw\n")
        sink = open_sink(f"mqtt://edge@127.0.0.1:{broker.port}/edge?password_file={secret}")
        sink.write(frame(1), None)
        sink.close()
        assert [m["frame"] for _, m in sub.wait_for(2, timeout=10)] == [0, 1]
        sub.close()
        monkeypatch.setenv(PASSWORD_ENV, "wrong")
        with pytest.raises(MqttError, match="refused") as refused:
            open_sink(f"mqtt://edge@127.0.0.1:{broker.port}/edge")
        assert "wrong" not in str(refused.value) and "s3cret" not in str(refused.value)
    finally:
        broker.stop()


def test_tls_mqtts_with_the_servers_ca(tmp_path):
    ca, cert, key = make_tls_files(tmp_path / "tls")
    broker = Broker(tmp_path / "broker", extra=[f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"])
    broker.start()
    try:
        sub = Subscriber(broker.port, "edge/#", tls_ca=ca)
        sink = open_sink(f"mqtts://127.0.0.1:{broker.port}/edge?ca={ca}")
        for k in range(5):
            sink.write(frame(k), None)
        sink.close()
        assert [m["frame"] for _, m in sub.wait_for(5, timeout=10)] == list(range(5))
        sub.close()
        with pytest.raises(MqttError):  # the system's CAs do not know this server: refused, not ignored
            untrusted = open_sink(f"mqtts://127.0.0.1:{broker.port}/edge")
            untrusted.close()
    finally:
        broker.stop()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("mqtt://user:hunter2@host/t", "password in the URI"),
        ("mqtt://host", "give a topic"),
        ("mqtt://host/a/#", "must not contain"),
        ("mqtt://host:99999/t", "port must be"),
        ("mqtt://host/t?bufer=5", "did you mean 'buffer'"),
        ("mqtt://host/t?buffer=0", "buffer= must be"),
        ("mqtt://host/t?qos=2", "qos= must be"),
        ("mqtt://host/t?ca=/nonexistent.pem", "ca file not found"),
        ("mqtt:///t", "needs a broker host"),
    ],
)
def test_bad_uris_are_one_line_without_the_secret(uri, message):
    with pytest.raises(EdgeXcnnError, match=message) as error:
        MqttSink.check(SinkSpec("mqtt", uri), False)
    assert "hunter2" not in str(error.value) and "\n" not in str(error.value)


def test_uri_parts_and_password_sources(tmp_path):
    target = parse_mqtt_uri("mqtts://edge@broker.local/site/a?buffer=500&client_id=box7")
    assert (target.tls, target.host, target.port, target.topic, target.username) == (
        True, "broker.local", 8883, "site/a", "edge",
    )  # fmt: skip
    assert (target.buffer, target.client_id, str(target)) == (500, "box7", "mqtts://***@broker.local:8883/site/a")
    assert read_password(target, {PASSWORD_ENV: "pw"}) == "pw"
    assert read_password(target, {}) is None
    secret = tmp_path / "pw"
    secret.write_text("from-file")
    with_file = parse_mqtt_uri(f"mqtt://edge@h/t?password_file={secret}")
    assert read_password(with_file, {PASSWORD_ENV: "env"}) == "from-file"
