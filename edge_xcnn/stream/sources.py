"""Frame readers: each runs in its own thread so decoding overlaps inference.

Files and image folders hand over every frame in order through a bounded queue (the reader waits
when inference is behind). Live sources (RTSP, HTTP, V4L2, CSI) keep only the newest frame, so
latency never builds up; frames replaced before inference took them are counted as dropped. A live
source that fails is reopened with exponential backoff until ``reconnect_window`` passes without
frames.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from edge_xcnn.errors import EdgeXcnnError
from edge_xcnn.preprocess import LETTERBOX_FILL, Geometry
from edge_xcnn.stream.uri import SourceSpec, redact_text

Decoder = Literal["pyav", "gstreamer", "nvv4l2"]
# Put in a file's queue after its last frame, so a consumer waiting in ``get`` wakes at once at the end
# instead of at its timeout (which cost up to 0.2 s per file per run, 1/3 of a 250-frame run's time).
_END_OF_STREAM = object()
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


class SourceError(EdgeXcnnError):
    """A source that cannot be opened, or broke during the run (after its good frames were used)."""


@dataclass
class Frame:
    """One decoded frame and when it was captured.

    ``image`` is the full frame (RGB), None when nothing in the run needs it (nothing draws or crops):
    then only ``net``, the network's input made by the decoder, exists. ``net`` is None for sources
    that decode elsewhere (image folders, GStreamer, OpenCV): the step then preprocesses ``image``.
    """

    source: int
    index: int  # 0-based position in the source's decoded stream
    pts: float | None  # stream time in seconds, when the container says
    image: np.ndarray | None  # H x W x 3 uint8 RGB
    captured: float  # time.monotonic() when decoding finished (capture-to-result latency starts here)
    wall: float  # time.time() at the same moment
    net: np.ndarray | None = None  # network-size uint8 (H x W x 3 RGB or H x W gray), resized/letterboxed
    geometry: Geometry | None = None  # of ``net``: network <-> source pixels


# What a source's iterator yields: the full RGB frame (or None), pts, and (network input, its geometry) or None.
Decoded = tuple[np.ndarray | None, float | None, tuple[np.ndarray, Geometry] | None]


@dataclass(frozen=True)
class NetworkView:
    """The network's input, made by the decoder itself (libswscale scales and converts in one pass).

    A 64x64 input from a 1280x720 frame costs a fraction of converting the whole frame to RGB and
    resizing it (about 0.5 against 5 ms per frame here). Same geometry as
    :func:`edge_xcnn.preprocess.resize_image` (stretch or letterbox with grey 114 padding); the
    pixels differ from OpenCV's ``INTER_AREA`` by rounding only (swscale's area filter, from YUV).
    """

    size: tuple[int, int]  # (H, W)
    mode: str = "stretch"  # or letterbox
    color: str = "rgb"  # or gray

    @classmethod
    def of(cls, meta: object) -> NetworkView:
        return cls(tuple(meta.input_size), meta.resize, meta.color)  # type: ignore[attr-defined]

    def layout(self, height: int, width: int) -> tuple[int, int, int, int, Geometry]:
        """(scaled width, scaled height, left, top, geometry) for a ``height`` x ``width`` source."""
        th, tw = self.size
        if self.mode != "letterbox":
            return tw, th, 0, 0, Geometry(scale=(width / tw, height / th), offset=(0.0, 0.0), source=(height, width))
        r = min(th / height, tw / width)
        nh, nw = max(1, round(height * r)), max(1, round(width * r))
        top, left = (th - nh) // 2, (tw - nw) // 2
        geometry = Geometry(scale=(width / nw, height / nh), offset=(float(left), float(top)), source=(height, width))
        return nw, nh, left, top, geometry

    def make(self, frame: object, reformatter: object | None = None) -> tuple[np.ndarray, Geometry]:
        """The network input (uint8) of a PyAV ``VideoFrame`` and its geometry.

        ``reformatter``: a ``VideoReformatter`` kept for the whole stream (see :func:`scaler`); without
        one, PyAV makes a new swscale context for this frame alone.
        """
        height, width = frame.height, frame.width  # type: ignore[attr-defined]
        nw, nh, left, top, geometry = self.layout(height, width)
        fmt = "gray" if self.color == "gray" else "rgb24"
        if reformatter is None:
            reformatter = scaler()
        small = reformatter.reformat(frame, nw, nh, fmt, interpolation="AREA", threads=1).to_ndarray()  # type: ignore[attr-defined]
        if (nh, nw) == self.size:
            return small, geometry
        out = np.full((*self.size, *small.shape[2:]), LETTERBOX_FILL, np.uint8)
        out[top : top + nh, left : left + nw] = small
        return out, geometry


def scaler() -> object:
    """A PyAV ``VideoReformatter``: one swscale context, reused for every frame of a stream.

    ``VideoFrame.reformat`` and ``to_ndarray(format=...)`` make a new context (and, with FFmpeg 8's
    default of automatic threads, a new thread pool) for every frame: measured here on bikes.mp4
    (640x272), decoding + the 64x64 network input ran at 316 FPS that way and 1,770 FPS with one
    reformatter kept for the stream; the full-frame RGB conversion at 171 against 2,025 FPS.
    """
    from av.video.reformatter import VideoReformatter

    return VideoReformatter()


@dataclass
class SourceInfo:
    """What sinks need to know before the first frame: size and frame rate."""

    width: int
    height: int
    fps: float
    frames: int | None  # declared frame count of a file, when known


@dataclass
class ReaderStats:
    """Counters a reader keeps for the run summary."""

    decoded: int = 0
    dropped: int = 0
    decode_seconds: float = 0.0
    reconnects: int = 0
    outages: list[dict[str, float]] = field(default_factory=list)  # lost / back wall times of live sources


class FrameReader:
    """Decode one source in a background thread; ``get`` hands frames to the pipeline."""

    def __init__(
        self,
        spec: SourceSpec,
        index: int,
        *,
        stride: int = 1,
        decoder: Decoder = "pyav",
        open_timeout: float = 10.0,
        read_timeout: float = 10.0,
        reconnect_window: float = 30.0,
        queue_size: int = 8,
        view: NetworkView | None = None,
        full: bool = True,
        threads: int = 0,
        preview: int | None = None,
    ) -> None:
        """Set up the reader (nothing is opened yet).

        ``view``: make the network input in the decoder; ``full``: also the full RGB frame (something
        draws or crops it); ``threads``: FFmpeg decoding threads (0 = FFmpeg's choice, one per core);
        ``preview``: the largest side the decoder scales full frames to (``--preview-size``, see
        :func:`preview_size`).
        """
        self.spec, self.index, self.stride, self.decoder = spec, index, max(1, stride), decoder
        self.view, self.full, self.threads = view, full or view is None, threads
        self.preview = preview
        self.open_timeout, self.read_timeout, self.reconnect_window = open_timeout, read_timeout, reconnect_window
        self.stats = ReaderStats()
        # Set when the source broke (frames before it were delivered): a SourceError for a damaged or lost
        # source, any other exception is a bug; the runner raises it after finishing the outputs.
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._queue: queue.Queue[Frame | object] = queue.Queue(maxsize=queue_size)
        self._ended = False  # the consumer took the end-of-stream marker
        self._latest: Frame | None = None
        self._latest_lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._opened: Iterator[Decoded] | None = None
        self.info: SourceInfo | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> SourceInfo:
        """Open the source now, so a missing file or unreachable camera fails before the run starts."""
        self._opened, self.info = self._open_stream()
        return self.info

    def start(self) -> None:
        if self.info is None:
            self.open()
        self._thread = threading.Thread(target=self._run, name=f"reader-{self.index}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._latest_lock:
            self._latest_lock.notify_all()
        with contextlib.suppress(queue.Empty):
            while True:  # unblock a reader waiting on a full queue
                self._queue.get_nowait()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def exhausted(self) -> bool:
        """No frame will come any more (finished, and nothing left to take)."""
        if not self.finished.is_set():
            return False
        if self.spec.live:
            return self._latest is None
        return self._ended or self._queue.empty()

    def get(self, timeout: float) -> Frame | None:
        """The next frame (files) or the newest one (live); None when none came within ``timeout``."""
        if self.spec.live:
            with self._latest_lock:
                if self._latest is None:
                    self._latest_lock.wait(timeout)
                frame, self._latest = self._latest, None
        else:
            if self._ended:
                return None
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                return None
            if item is _END_OF_STREAM:
                self._ended = True
                return None
            frame = item  # type: ignore[assignment]
        return frame

    # -- reading ---------------------------------------------------------------------------------
    def _run(self) -> None:
        import av

        try:
            if self.spec.live:
                self._run_live()
            else:
                self._deliver_all(self._opened)
        except EdgeXcnnError as e:
            self.error = e
        except (av.error.FFmpegError, OSError) as e:  # a decoder error mid-file: keep what was decoded, say so
            reason = redact_text(str(getattr(e, "strerror", None) or e))
            self.error = SourceError(f"{self.spec}: stopped after {self.stats.decoded} frames: {reason}")
            self.error.__cause__ = e
        except BaseException as e:  # a bug: the runner re-raises it (exit 1, traceback with --debug)
            self.error = e
        finally:
            self.finished.set()
            with self._latest_lock:
                self._latest_lock.notify_all()
            if not self.spec.live:
                self._hand_over(_END_OF_STREAM)  # type: ignore[arg-type]

    def _deliver_all(self, frames: Iterator[Decoded] | None) -> None:
        assert frames is not None
        tick = time.perf_counter()
        for image, pts, net in frames:
            if self._stop.is_set():
                return
            now = time.perf_counter()
            self.stats.decode_seconds += now - tick
            position = self.stats.decoded  # counts on across reconnections: frame numbers never repeat
            self.stats.decoded += 1
            if position % self.stride == 0:
                small, geometry = net if net is not None else (None, None)
                frame = Frame(self.index, position, pts, image, time.monotonic(), time.time(), small, geometry)
                self._hand_over(frame)
            tick = time.perf_counter()
        declared = self.info.frames if self.info else None
        if not self.spec.live and declared and self.stats.decoded < declared * 0.98 and not self._stop.is_set():
            raise SourceError(f"{self.spec}: truncated or damaged, decoded {self.stats.decoded} of {declared} frames")

    def _hand_over(self, frame: Frame) -> None:
        if self.spec.live:
            with self._latest_lock:
                if self._latest is not None:
                    self.stats.dropped += 1
                self._latest = frame
                self._latest_lock.notify_all()
            return
        while not self._stop.is_set():
            try:
                self._queue.put(frame, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run_live(self) -> None:
        """Deliver frames; reopen a broken stream with backoff.

        Gives up when ``reconnect_window`` seconds pass without a new frame (reopening alone does not count).
        """
        import av

        frames = self._opened
        backoff, reason = 0.25, "the stream ended"
        silent_since: float | None = None  # when the last outage began (monotonic)
        while not self._stop.is_set():
            if frames is not None:
                before = self.stats.decoded
                try:
                    self._deliver_all(frames)
                except (av.error.FFmpegError, OSError, EdgeXcnnError) as e:  # an outage, like an end of stream
                    reason = redact_text(str(getattr(e, "strerror", None) or e))
                if self._stop.is_set():
                    return
                if self.stats.decoded > before or silent_since is None:
                    backoff, silent_since = 0.25, time.monotonic()
                    self.stats.outages.append({"lost": time.time()})
                frames = None
            assert silent_since is not None
            if time.monotonic() - silent_since > self.reconnect_window:
                raise SourceError(f"{self.spec}: stream lost, no frames for {self.reconnect_window:.0f} s ({reason})")
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 2.0)
            try:
                frames, _ = self._open_stream()
            except EdgeXcnnError as e:
                reason = str(e)
                continue
            self.stats.reconnects += 1
            self.stats.outages[-1].setdefault("reopened", time.time())
            frames = self._mark_first(frames)

    def _mark_first(self, frames: Iterator[Decoded]) -> Iterator[Decoded]:
        first = True
        for item in frames:
            if first:
                self.stats.outages[-1].setdefault("back", time.time())
                first = False
            yield item

    def _open_stream(self) -> tuple[Iterator[Decoded], SourceInfo]:
        kind = self.spec.kind
        if kind == "images":
            return _image_frames(self.spec)
        if kind == "csi":
            return _opencv_frames(csi_pipeline(int(self.spec.location)), self.spec, gstreamer=True)
        if self.decoder != "pyav" and kind in ("file", "rtsp"):
            return _gstreamer_frames(self.spec, self.decoder)
        options: dict[str, str] = {}
        fmt = None
        if kind == "rtsp":
            options = {"rtsp_transport": "tcp"}
        elif kind == "v4l2":
            fmt = "v4l2"
        return _pyav_frames(
            self.spec, options, fmt, (self.open_timeout, self.read_timeout),
            view=self.view, full=self.full, threads=self.threads, preview=self.preview,
        )  # fmt: skip


def _pyav_frames(
    spec: SourceSpec,
    options: dict[str, str],
    fmt: str | None,
    timeout: tuple[float, float],
    *,
    view: NetworkView | None = None,
    full: bool = True,
    threads: int = 0,
    preview: int | None = None,
) -> tuple[Iterator[Decoded], SourceInfo]:
    """Decode with PyAV.

    Full RGB frames only when ``full`` (scaled to ``preview`` pixels at most), the network input from
    ``view`` when given.
    """
    import av

    try:
        container = av.open(spec.location, options=options, format=fmt, timeout=timeout if spec.live else None)
    except FileNotFoundError as e:
        raise SourceError(f"input not found: {spec}") from e
    except (av.error.FFmpegError, OSError) as e:
        what = "cannot open stream" if spec.live else "not a readable video"
        reason = getattr(e, "strerror", None) or str(e)
        raise SourceError(f"{what}: {spec} ({redact_text(str(reason)).strip()})") from e
    if not container.streams.video:
        container.close()
        raise SourceError(f"no video stream in {spec}")
    stream = container.streams.video[0]
    if not stream.width or not stream.height:
        container.close()
        raise SourceError(f"{spec}: its video stream has no frame size ({stream.width}x{stream.height})")
    # FFmpeg's own threads. Files: frame and slice threading (AUTO), the fastest; live sources: slices
    # only, because each frame thread holds a frame back (latency) while slices do not.
    stream.thread_type = "SLICE" if spec.live else "AUTO"
    stream.codec_context.thread_count = max(0, threads)
    rate = stream.average_rate or stream.guessed_rate or 25
    info = SourceInfo(stream.width, stream.height, float(rate), stream.frames or None)
    picture = preview_size(stream.width, stream.height, preview)

    # One swscale context per picture kind for the whole stream (see ``scaler``).
    to_net, to_full = scaler(), scaler()

    def frames() -> Iterator[Decoded]:
        try:
            for packet in container.demux(stream):
                try:
                    decoded = packet.decode()
                except av.error.InvalidDataError:
                    continue  # one damaged packet: FFmpeg conceals it, we skip it like a player
                for frame in decoded:
                    pts = float(frame.time) if frame.time is not None else None
                    if not full:
                        image = None
                    elif picture is not None:
                        image = to_full.reformat(frame, *picture, "rgb24", interpolation="AREA").to_ndarray()
                    else:
                        image = to_full.reformat(frame, format="rgb24").to_ndarray()
                    yield image, pts, (view.make(frame, to_net) if view is not None else None)
        finally:
            container.close()

    return frames(), info


def preview_size(width: int, height: int, largest: int | None) -> tuple[int, int] | None:
    """(width, height) with the largest side at most ``largest``, aspect kept, even; None = no change."""
    if largest is None or max(width, height) <= largest:
        return None
    scale = largest / max(width, height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _image_frames(spec: SourceSpec) -> tuple[Iterator[Decoded], SourceInfo]:
    location = spec.location
    if glob.has_magic(location):
        paths = sorted(Path(p) for p in glob.glob(location) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
    else:
        paths = sorted(p for p in Path(location).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SourceError(f"no images in {location}")
    first = _read_image(paths[0])

    def frames() -> Iterator[Decoded]:
        for path in paths:
            yield _read_image(path), None, None

    return frames(), SourceInfo(first.shape[1], first.shape[0], 25.0, len(paths))


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"not a readable image: {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def opencv_has_gstreamer() -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


def csi_pipeline(sensor: int, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    """The nvarguscamerasrc pipeline jetson-inference and NVIDIA's samples use for CSI cameras."""
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM),width={width},height={height},"
        f"framerate={fps}/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
        "appsink drop=true max-buffers=1"
    )


def _opencv_frames(pipeline: str, spec: SourceSpec, *, gstreamer: bool) -> tuple[Iterator[Decoded], SourceInfo]:
    if gstreamer and not opencv_has_gstreamer():
        raise SourceError(
            f"{spec.kind}://{spec.location} needs OpenCV built with GStreamer (JetPack's OpenCV is); this one is not"
        )
    capture = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER if gstreamer else cv2.CAP_ANY)
    if not capture.isOpened():
        raise SourceError(f"cannot open camera {spec.kind}://{spec.location}")
    info = SourceInfo(
        int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        float(capture.get(cv2.CAP_PROP_FPS) or 30.0),
        None,
    )

    def frames() -> Iterator[Decoded]:
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None, None
        finally:
            capture.release()

    return frames(), info


def gstreamer_decode_pipeline(spec: SourceSpec, decoder: Decoder) -> str:
    """The GStreamer pipeline that decodes ``spec`` to raw RGBx on stdout; its source element is ``src``.

    The location is not in the text: the helper sets it as a property, so a stream's password is never
    on any process's command line. ``nvv4l2`` is the Jetson hardware decoder (``nvv4l2decoder`` +
    ``nvvidconv``); ``gstreamer`` lets ``decodebin`` pick (software ``avdec_*`` on a PC).
    """
    if spec.kind == "rtsp":
        head = "rtspsrc name=src protocols=tcp latency=200 ! rtph264depay ! h264parse ! "
    else:
        head = f"filesrc name=src ! {'parsebin' if decoder == 'nvv4l2' else 'decodebin'} ! "
    body = "nvv4l2decoder ! nvvidconv ! " if decoder == "nvv4l2" else "avdec_h264 ! " if spec.kind == "rtsp" else ""
    return head + body + "videoconvert ! video/x-raw,format=RGBx ! fdsink fd=1 sync=false"


# Runs a pipeline read from stdin (one JSON line: pipeline text and the source's location) in a Python
# that has GStreamer's bindings. Unlike gst-launch-1.0's arguments, stdin is not readable by other users.
GST_HELPER = """
import json, sys
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
request = json.loads(sys.stdin.readline())
pipeline = Gst.parse_launch(request["pipeline"])
pipeline.get_by_name("src").set_property("location", request["location"])
pipeline.set_state(Gst.State.PLAYING)
message = pipeline.get_bus().timed_pop_filtered(Gst.CLOCK_TIME_NONE, Gst.MessageType.ERROR | Gst.MessageType.EOS)
code = 0
if message is not None and message.type == Gst.MessageType.ERROR:
    error, _ = message.parse_error()
    sys.stderr.write(error.message + "\\n")
    code = 1
pipeline.set_state(Gst.State.NULL)
sys.exit(code)
"""


@functools.cache
def gstreamer_python() -> str | None:
    """A Python interpreter with GStreamer's bindings (the system one, usually), or None."""
    for candidate in ("/usr/bin/python3", shutil.which("python3"), sys.executable):
        if not candidate:
            continue
        probe = subprocess.run(
            [candidate, "-c", "import gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst"],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return candidate
    return None


def _gstreamer_frames(spec: SourceSpec, decoder: Decoder) -> tuple[Iterator[Decoded], SourceInfo]:
    python = gstreamer_python()
    if python is None:
        raise SourceError(
            "--decoder gstreamer needs GStreamer's Python bindings (apt install python3-gi gir1.2-gstreamer-1.0)"
        )
    probed, info = _pyav_frames(spec, {"rtsp_transport": "tcp"} if spec.kind == "rtsp" else {}, None, (10.0, 10.0))
    with contextlib.suppress(StopIteration):
        next(probed)  # starts the generator so that closing it closes the container
    probed.close()
    width, height = info.width, info.height
    size = width * height * 4
    process = subprocess.Popen(
        [python, "-c", GST_HELPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=size
    )
    assert process.stdin is not None
    request = {"pipeline": gstreamer_decode_pipeline(spec, decoder), "location": spec.location}
    process.stdin.write((json.dumps(request) + "\n").encode())
    process.stdin.close()

    def frames() -> Iterator[Decoded]:
        index = 0
        try:
            assert process.stdout is not None
            while True:
                data = process.stdout.read(size)
                if len(data) < size:
                    break
                rgbx = np.frombuffer(data, np.uint8).reshape(height, width, 4)
                yield np.ascontiguousarray(rgbx[..., :3]), index / info.fps, None
                index += 1
            if process.wait(timeout=5) != 0:
                message = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
                raise SourceError(f"GStreamer could not decode {spec}: {redact_text(message)[:300]}")
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()

    return frames(), info
