"""The built-in sinks: annotated video (file or stream push), JPEG frames, a window, JSON lines, MOT text.

Every one writes as it goes and survives being stopped: the mp4 is fragmented (a keyframe and a new
fragment at least every second), so after SIGKILL it plays up to its last complete fragment; text
lines go out in one ``write`` each, so a line is there whole or not at all.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import cv2
import numpy as np

from edge_xcnn.outputs import OutputError, check_output, open_output
from edge_xcnn.stream.results import FrameResult, SourceRef
from edge_xcnn.stream.sink import Sink, SinkContext, SinkError
from edge_xcnn.stream.uri import SinkSpec, redact, redact_text
from edge_xcnn.video import open_video_stream

# Container for each video suffix (PyAV writes into our own file object, so it must be told).
# (.webm is missing on purpose: WebM takes VP8/VP9/AV1, not the H.264 written here.)
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi", ".ts": "mpegts",
              ".mpg": "mpeg", ".mpeg": "mpeg", ".flv": "flv", ".wmv": "asf"}  # fmt: skip
# Fragmented MP4: an empty moov up front and one moof+mdat per keyframe, so a killed run leaves a file
# that plays up to its last fragment; flush_packets sends each packet to the file at once.
FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}
# Pictures waiting for a video output's encoder thread.
ENCODE_QUEUE = 2
# A stream push sends each packet at its presentation time (what GStreamer's network sinks do with
# sync=true, and FFmpeg's ``-re``), at most this many seconds of encoded packets ahead of the clock.
# Sent as fast as the runner goes, a file (400+ FPS) or a live source's backlog after a stall arrives
# as one burst: GStreamer's RECORD server was seen to lose all 40 frames of such a burst at TEARDOWN.
PUSH_AHEAD_SECONDS = 2.0


def _file_spec_check(spec: SinkSpec, overwrite: bool, folder: bool = False) -> None:
    try:
        check_output(spec.location, overwrite=overwrite, folder=folder, what="-o" if spec.kind != "jsonl" else "--json")
    except OutputError as e:
        raise SinkError(str(e)) from e


def _locations(spec: SinkSpec, sources: Sequence[SourceRef]) -> list[str]:
    return [spec.for_source(s.index, len(sources), s.name) for s in sources]


class _VideoOut:
    """One encoder and container (one source's video)."""

    def __init__(self, location: str, kind: str, source: SourceRef, overwrite: bool, threads: int = 0) -> None:
        import av

        self.location, self.count = location, 0
        self.width, self.height = source.picture_size
        self._file: BinaryIO | None = None
        self._created = False
        fps = Fraction(source.fps).limit_denominator(1001)
        options: dict[str, str] = {}
        if kind == "stream":
            scheme = location.split("://", 1)[0].lower()
            fmt = {"rtsp": "rtsp", "rtp": "rtp", "srt": "mpegts", "udp": "mpegts", "rtmp": "flv"}[scheme]
            if scheme == "rtsp":
                options = {"rtsp_transport": "tcp"}
            target: Any = location
        else:
            suffix = Path(location).suffix.lower()
            fmt = CONTAINERS.get(suffix, "mp4")
            if fmt in ("mp4", "mov"):
                options = dict(FRAGMENTED)
            self._created = not os.path.lexists(location)
            try:
                self._file = open_output(location, overwrite=overwrite)
            except OutputError as e:
                raise SinkError(str(e)) from e
            target = self._file
        try:
            self._container = av.open(target, mode="w", format=fmt, options=options)
            self._stream, self.codec = open_video_stream(
                self._container, fps, self.width, self.height,
                # x264 at "veryfast" took 11 ms per 640x272 frame here, "ultrafast" 2.8 ms: the runner's
                # video is a preview of the results, so encoding must not set the pace.
                preset="ultrafast", crf=23,
            )  # fmt: skip
            context = self._stream.codec_context
            # A keyframe (and so a new fragment) at least every second: what a SIGKILL can cost.
            context.gop_size = max(1, round(float(fps)))
            extra = dict(context.options)
            # No frame threading: x264 then holds no frames back, so the file keeps up with the JSON lines.
            extra["tune"] = "zerolatency"
            context.options = extra
            # Its share of the cores (the run's ThreadPlan): x264 alone would start 1.5 threads per core.
            if threads:
                context.thread_count = threads
            self.settings = (
                f"{self.codec} {self.width}x{self.height} {extra.get('preset', '')} crf {extra.get('crf', '-')} "
                f"{extra['tune']} {self._stream.pix_fmt}, {threads or 'auto'} thread{'s' if threads != 1 else ''}"
            ).replace("  ", " ")
        except (av.error.FFmpegError, OSError, ValueError) as e:
            self._abandon(remove=True)
            raise SinkError(f"cannot open output {redact(location)}: {redact_text(str(e))}") from e
        self._closed = False
        # Encoding runs in its own thread (x264 and the muxer release the GIL), beside drawing and the
        # next frames' boxes and tracking; at most ENCODE_QUEUE pictures wait, so the file stays within a
        # few frames of the JSON lines.
        self._pending: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=ENCODE_QUEUE)
        self._worker: threading.Thread | None = None
        self._error: BaseException | None = None
        self._pacer = _PacedMuxer(self._container, location, float(fps)) if kind == "stream" else None

    def _abandon(self, remove: bool = False) -> None:
        if self._file is not None:
            self._file.close()
            if remove and self._created:  # nothing was written: leave no empty file behind
                Path(self.location).unlink(missing_ok=True)

    def write(self, image: np.ndarray) -> None:
        """Hand ``image`` to this output's encoder thread (waits while ``ENCODE_QUEUE`` pictures are pending).

        An encoder failure is raised here at the next picture, or by ``close``.
        """
        if self._error is not None:
            raise self._error
        if self._worker is None:
            self._worker = threading.Thread(target=self._encode_loop, name=f"encode-{self.location}", daemon=True)
            self._worker.start()
        self._pending.put(image)

    def _encode_loop(self) -> None:
        while True:
            image = self._pending.get()
            if image is None:
                return
            if self._error is not None:
                continue  # keep draining: the writer never blocks on a failed encoder
            try:
                self._encode(image)
            except BaseException as e:  # a SinkError, or a bug: raised in the writer's thread
                self._error = e

    def _encode(self, image: np.ndarray) -> None:
        import av

        if image.shape[:2] != (self.height, self.width):
            image = cv2.resize(image, (self.width, self.height))
        if self._stream.pix_fmt == "yuv420p":
            # OpenCV's RGB -> I420 (BT.601, limited range: swscale's own default for untagged frames) took
            # 0.55 ms per 1280x720 frame here, swscale inside the encoder 2.2 ms.
            frame = av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420), format="yuv420p")
        else:  # odd sizes: 4:4:4, converted by the encoder
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.count
        self.count += 1
        try:
            for packet in self._stream.encode(frame):
                self._mux(packet)
        except (av.error.FFmpegError, OSError) as e:
            raise SinkError(f"writing {redact(self.location)} failed: {redact_text(str(e))}") from e

    def _mux(self, packet: Any) -> None:
        if self._pacer is None:
            self._container.mux(packet)
        else:
            self._pacer.send(packet)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._worker is not None:
                self._pending.put(None)
                self._worker.join()
            if self._error is not None:
                raise self._error
            for packet in self._stream.encode():
                self._mux(packet)
        finally:
            try:
                if self._pacer is not None:
                    self._pacer.close()  # the last packets go out at their time, then TEARDOWN
            finally:
                self._container.close()
                self._abandon()


class _PacedMuxer:
    """Muxes a stream push's packets in its own thread, each at its presentation time.

    The clock starts at the first packet; a packet already due (the runner fell behind) goes at once.
    The encoder is never held back by more than ``PUSH_AHEAD_SECONDS`` of packets, so results keep
    flowing at the runner's pace while the push plays at the stream's.
    """

    def __init__(self, container: Any, location: str, fps: float) -> None:
        self._container, self._location = container, location
        self._packets: queue.Queue[Any] = queue.Queue(maxsize=max(1, round(PUSH_AHEAD_SECONDS * fps)))
        self._error: BaseException | None = None
        self._start: float | None = None
        self._thread = threading.Thread(target=self._loop, name=f"push-{redact(location)}", daemon=True)
        self._thread.start()

    def send(self, packet: Any) -> None:
        if self._error is not None:
            raise self._error
        self._packets.put(packet)

    def _loop(self) -> None:
        import av

        while (packet := self._packets.get()) is not None:
            if self._error is not None:
                continue  # keep draining: the encoder never blocks on a failed push
            stamp = packet.dts if packet.dts is not None else packet.pts
            if stamp is not None and packet.time_base is not None:
                due = float(stamp * packet.time_base)
                now = time.monotonic()
                if self._start is None:
                    self._start = now - due
                if (wait := self._start + due - now) > 0:
                    time.sleep(wait)
            try:
                self._container.mux(packet)
            except (av.error.FFmpegError, OSError) as e:
                self._error = SinkError(f"writing {redact(self._location)} failed: {redact_text(str(e))}")

    def close(self) -> None:
        self._packets.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


class VideoSink(Sink):
    """H.264 through PyAV, same size and frame rate as the input; a file per source, or an RTSP/RTP/SRT push."""

    wants_image: ClassVar[bool] = True

    def __init__(self, outs: dict[int, _VideoOut]) -> None:
        self._outs = outs

    @classmethod
    def check(cls, spec: SinkSpec, overwrite: bool) -> None:
        if spec.kind == "video":
            if Path(spec.location).suffix.lower() not in CONTAINERS:
                raise SinkError(
                    f"-o {spec.location}: cannot write H.264 video into {Path(spec.location).suffix or 'that'} "
                    f"(use one of {', '.join(sorted(CONTAINERS))})"
                )
            _file_spec_check(spec, overwrite)

    @classmethod
    def open(cls, spec: SinkSpec, context: SinkContext) -> VideoSink:
        if spec.kind == "stream" and len(context.sources) > 1:
            raise SinkError(f"-o {spec}: a stream push takes one source; this run has {len(context.sources)}")
        outs: dict[int, _VideoOut] = {}
        try:
            for source, location in zip(context.sources, _locations(spec, context.sources), strict=True):
                outs[source.index] = _VideoOut(location, spec.kind, source, context.overwrite, context.encode_threads)
        except BaseException:
            for out in outs.values():
                out.close()
            raise
        return cls(outs)

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        assert image is not None
        self._outs[result.source.index].write(image)

    def close(self) -> None:
        errors = []
        for out in self._outs.values():
            try:
                out.close()
            except Exception as e:  # finish the others first; the first failure is raised below
                errors.append(e)
        if errors:
            raise errors[0]

    @property
    def where(self) -> list[str]:
        return [redact(out.location) for out in self._outs.values()]

    @property
    def encoders(self) -> list[str]:
        """Each output's encoder and its settings, for the run summary."""
        return [out.settings for out in self._outs.values()]


class ImageSink(Sink):
    """Numbered JPEGs in a folder (``%06d.jpg``, a subfolder per source), or a printf pattern given by the user."""

    wants_image: ClassVar[bool] = True

    def __init__(self, patterns: dict[int, str]) -> None:
        self._patterns = patterns

    @staticmethod
    def _pattern(location: str) -> str:
        return location if "%" in location else str(Path(location) / "%06d.jpg")

    @classmethod
    def check(cls, spec: SinkSpec, overwrite: bool) -> None:
        pattern = cls._pattern(spec.location)
        try:
            pattern % 0
        except (TypeError, ValueError) as e:
            raise SinkError(f"-o {spec.location}: a frame pattern needs one %d (e.g. frames/%06d.jpg)") from e
        _file_spec_check(SinkSpec("images", str(Path(pattern).parent)), overwrite, folder=True)

    @classmethod
    def open(cls, spec: SinkSpec, context: SinkContext) -> ImageSink:
        patterns = {}
        for source, location in zip(context.sources, _locations(spec, context.sources), strict=True):
            pattern = cls._pattern(location)
            folder = Path(pattern).parent
            if folder.is_symlink():
                raise SinkError(f"-o {folder} is a symlink; outputs never follow symlinks")
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise SinkError(f"cannot write {folder}: {e.strerror}") from e
            patterns[source.index] = pattern
        return cls(patterns)

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        assert image is not None
        path = self._patterns[result.source.index] % result.frame
        ok, data = cv2.imencode(Path(path).suffix or ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if not ok:
            raise SinkError(f"cannot encode {path}")
        try:
            with open_output(path, overwrite=True) as f:  # a frame number seen twice replaces its own file
                f.write(data.tobytes())
        except OutputError as e:
            raise SinkError(str(e)) from e

    def close(self) -> None:
        pass

    @property
    def where(self) -> list[str]:
        return [str(Path(p).parent) for p in self._patterns.values()]


class DisplaySink(Sink):
    """An OpenCV window per source; needs a GUI-enabled OpenCV and a display (q or Esc ends the run)."""

    wants_image: ClassVar[bool] = True

    def __init__(self, titles: dict[int, str]) -> None:
        self._titles = titles
        self._stop = False

    @classmethod
    def check(cls, spec: SinkSpec, overwrite: bool) -> None:
        if not has_display():
            raise SinkError("display://: no display here (no $DISPLAY); use --headless or -o FILE")

    @classmethod
    def open(cls, spec: SinkSpec, context: SinkContext) -> DisplaySink:
        cls.check(spec, context.overwrite)
        titles = {s.index: f"edge-xcnn: {s.name}" for s in context.sources}
        try:
            for title in titles.values():
                cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as e:
            raise SinkError("display://: this OpenCV has no GUI support (opencv-python-headless)") from e
        return cls(titles)

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        assert image is not None
        cv2.imshow(self._titles[result.source.index], cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if cv2.waitKey(1) & 0xFF in (27, ord("q")):
            self._stop = True

    @property
    def stop_requested(self) -> bool:
        return self._stop

    def close(self) -> None:
        for title in self._titles.values():
            cv2.destroyWindow(title)
        self._titles = {}

    @property
    def where(self) -> list[str]:
        return ["display"] if self._titles else []


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def wants_window(headless: bool, outputs: Sequence[str]) -> bool:
    """The one display rule: a window when not ``--headless``, a display exists and none was asked for already."""
    return not headless and has_display() and not any(o.startswith("display://") for o in outputs)


class _Lines:
    """A text file written one whole line (or frame's lines) per ``write`` system call."""

    def __init__(self, path: str, overwrite: bool) -> None:
        try:
            self._file = open_output(path, overwrite=overwrite)
        except OutputError as e:
            raise SinkError(str(e)) from e
        self.path = path

    def write(self, text: str) -> None:
        data = text.encode()
        view = memoryview(data)
        while view:  # a regular file takes it in one call; the loop is for the odd short write
            written = os.write(self._file.fileno(), view)
            view = view[written:]

    def close(self) -> None:
        self._file.close()


class JsonLinesSink(Sink):
    """One JSON object per frame (CONTRACTS.md), every source in one file."""

    def __init__(self, lines: _Lines) -> None:
        self._lines = lines

    @classmethod
    def check(cls, spec: SinkSpec, overwrite: bool) -> None:
        _file_spec_check(spec, overwrite)

    @classmethod
    def open(cls, spec: SinkSpec, context: SinkContext) -> JsonLinesSink:
        return cls(_Lines(spec.location, context.overwrite))

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        self._lines.write(json.dumps(result.to_json(), separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._lines.close()

    @property
    def where(self) -> list[str]:
        return [self._lines.path]


def mot_lines(result: FrameResult) -> str:
    """MOTChallenge rows ``frame,id,x,y,w,h,score,-1,-1,-1`` (frames 1-based) of the confirmed tracks."""
    rows = []
    d = result.detections
    for k in range(len(d)):
        track = result.track_id(k)
        if track is None:
            continue
        x0, y0, x1, y1 = (float(v) for v in d.xyxy[k])
        score = float(d.confidence[k])
        rows.append(f"{result.frame + 1},{track},{x0:.2f},{y0:.2f},{x1 - x0:.2f},{y1 - y0:.2f},{score:.4f},-1,-1,-1\n")
    return "".join(rows)


class MotSink(Sink):
    """MOTChallenge text, one file per source; unconfirmed boxes are left out."""

    def __init__(self, files: dict[int, _Lines]) -> None:
        self._files = files

    @classmethod
    def check(cls, spec: SinkSpec, overwrite: bool) -> None:
        try:
            check_output(spec.location, overwrite=overwrite, what="--mot")
        except OutputError as e:
            raise SinkError(str(e)) from e

    @classmethod
    def open(cls, spec: SinkSpec, context: SinkContext) -> MotSink:
        files: dict[int, _Lines] = {}
        try:
            for source, location in zip(context.sources, _locations(spec, context.sources), strict=True):
                files[source.index] = _Lines(location, context.overwrite)
        except BaseException:
            for f in files.values():
                f.close()
            raise
        return cls(files)

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        rows = mot_lines(result)
        if rows:
            self._files[result.source.index].write(rows)

    def close(self) -> None:
        for f in self._files.values():
            f.close()

    @property
    def where(self) -> list[str]:
        return [f.path for f in self._files.values()]
