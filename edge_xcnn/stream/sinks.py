"""Where results go: annotated video (file or stream), images, a window, JSON lines, MOTChallenge text.

Every sink writes as it goes and ``close`` finishes the file properly, so a run stopped by Ctrl-C or
a broken source still leaves playable video and complete lines.
"""

from __future__ import annotations

import abc
import json
from fractions import Fraction
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from edge_xcnn.errors import EdgeXcnnError
from edge_xcnn.stream.results import FrameResult
from edge_xcnn.stream.uri import SinkSpec, redact, redact_text
from edge_xcnn.video import open_video_stream


class SinkError(EdgeXcnnError):
    """An output that cannot be written (path, permissions, unreachable server)."""


class FrameSink(abc.ABC):
    """Takes annotated RGB frames."""

    @abc.abstractmethod
    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        """Add one annotated frame (RGB, the source's size)."""

    def close(self) -> None:  # noqa: B027 - sinks with nothing to finish need not override it
        """Finish the output (idempotent)."""


class VideoSink(FrameSink):
    """H.264 through PyAV, same size and frame rate as the input; a file or an RTSP/RTP/SRT push."""

    def __init__(self, spec: SinkSpec, width: int, height: int, fps: float) -> None:
        import av

        self.spec = spec
        self.count = 0
        location = spec.location
        fmt = None
        options: dict[str, str] = {}
        if spec.kind == "stream":
            scheme = location.split("://", 1)[0].lower()
            fmt = {"rtsp": "rtsp", "rtp": "rtp", "srt": "mpegts", "udp": "mpegts", "rtmp": "flv"}[scheme]
            if scheme == "rtsp":
                options = {"rtsp_transport": "tcp"}
        else:
            path = Path(location)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "ab"):
                    pass
            except OSError as e:
                raise SinkError(f"cannot write {location}: {e.strerror}") from e
        try:
            self._container = av.open(location, mode="w", format=fmt, options=options)
            self._stream, self.codec = open_video_stream(
                self._container,
                Fraction(fps).limit_denominator(1001),
                width,
                height,
                # x264 at "veryfast" took 11 ms per 640x272 frame here, "ultrafast" 2.8 ms: the runner's
                # video is a preview of the results, so encoding must not set the pace.
                preset="ultrafast",
                crf=23,
            )
            if spec.kind == "stream":
                self._stream.codec_context.options = {"tune": "zerolatency"}
        except (av.error.FFmpegError, OSError) as e:
            raise SinkError(f"cannot open output {redact(location)}: {redact_text(str(e))}") from e
        self.width, self.height = width, height
        self._closed = False

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        import av

        if frame.shape[:2] != (self.height, self.width):
            frame = cv2.resize(frame, (self.width, self.height))
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts = self.count
        self.count += 1
        try:
            for packet in self._stream.encode(video_frame):
                self._container.mux(packet)
        except (av.error.FFmpegError, OSError) as e:
            raise SinkError(f"writing {redact(self.spec.location)} failed: {redact_text(str(e))}") from e

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()


class ImageSink(FrameSink):
    """Numbered JPEGs in a folder (``%06d.jpg``), or a printf pattern given by the user."""

    def __init__(self, spec: SinkSpec) -> None:
        location = spec.location
        self.pattern = location if "%" in location else str(Path(location) / "%06d.jpg")
        try:
            Path(self.pattern).parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SinkError(f"cannot write {location}: {e.strerror}") from e

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        path = self.pattern % result.frame
        if not cv2.imwrite(path, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
            raise SinkError(f"cannot write {path}")


class DisplaySink(FrameSink):
    """An OpenCV window; needs a GUI-enabled OpenCV and a display."""

    def __init__(self, spec: SinkSpec, title: str) -> None:
        import os

        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            raise SinkError("display://: no display here (no $DISPLAY); use --headless or -o FILE")
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as e:
            raise SinkError("display://: this OpenCV has no GUI support (opencv-python-headless)") from e
        self.closed_by_user = False

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        cv2.imshow(self.title, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if cv2.waitKey(1) & 0xFF in (27, ord("q")):
            self.closed_by_user = True

    def close(self) -> None:
        cv2.destroyWindow(self.title)


def open_frame_sink(spec: SinkSpec, width: int, height: int, fps: float, title: str) -> FrameSink:
    if spec.kind in ("video", "stream"):
        return VideoSink(spec, width, height, fps)
    if spec.kind == "images":
        return ImageSink(spec)
    return DisplaySink(spec, title)


class TextSink:
    """A line-per-record text file, flushed after every frame so that a crash loses nothing."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file: TextIO = open(path, "w", encoding="utf-8")  # noqa: SIM115 - kept open for the run
        except OSError as e:
            raise SinkError(f"cannot write {path}: {e.strerror}") from e
        self.path = path

    def _write_lines(self, lines: list[str]) -> None:
        if lines:
            self._file.write("".join(lines))
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class JsonLinesSink(TextSink):
    """One JSON object per frame (CONTRACTS.md), all sources in one file."""

    def write(self, result: FrameResult) -> None:
        self._write_lines([json.dumps(result.to_json(), separators=(",", ":")) + "\n"])


class MotSink(TextSink):
    """MOTChallenge text ``frame,id,x,y,w,h,score,-1,-1,-1``, frames 1-based; unconfirmed boxes are left out."""

    def write(self, result: FrameResult) -> None:
        lines = []
        for obj in result.objects:
            if obj.id is None:
                continue
            x0, y0, x1, y1 = (float(v) for v in obj.xyxy)
            lines.append(
                f"{result.frame + 1},{obj.id},{x0:.2f},{y0:.2f},{x1 - x0:.2f},{y1 - y0:.2f},{obj.score:.4f},-1,-1,-1\n"
            )
        self._write_lines(lines)


def per_source_path(path: Path, index: int, count: int, name: str) -> Path:
    """One results file per source when several run together (``out.jsonl`` -> ``out_0_cam.jsonl``)."""
    return path if count == 1 else path.with_name(f"{path.stem}_{index}_{name}{path.suffix}")
