"""Input and output URIs in the style of jetson-inference, and keeping credentials out of messages."""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from edge_xcnn.errors import BadData

SourceKind = Literal["file", "rtsp", "http", "v4l2", "csi", "images"]
SinkKind = Literal["video", "images", "stream", "display"]

VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts", ".mpg", ".mpeg", ".flv", ".wmv"})
LIVE_KINDS: frozenset[str] = frozenset({"rtsp", "http", "v4l2", "csi"})


def redact(uri: str) -> str:
    """``uri`` with any user name and password replaced by ``***`` (safe to print or log)."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def redact_text(text: str) -> str:
    """Redact every URL with credentials inside a message (FFmpeg errors quote the URL)."""
    return re.sub(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@", r"\1***@", text)


@dataclass(frozen=True)
class SourceSpec:
    """Where frames come from: ``kind`` decides the reader, ``location`` is what it opens."""

    kind: SourceKind
    location: str
    name: str  # short, credential-free, for file names and messages

    @property
    def live(self) -> bool:
        return self.kind in LIVE_KINDS

    def __str__(self) -> str:
        return redact(self.location) if self.kind in ("rtsp", "http") else self.location


def parse_source(uri: str) -> SourceSpec:
    """Classify an input URI.

    ``rtsp://``, ``http(s)://``, ``v4l2:///dev/video0`` or ``/dev/videoN``, ``csi://N``, an image folder
    or glob, or a video file.
    """
    scheme = urlsplit(uri).scheme.lower() if "://" in uri else ""
    if scheme in ("rtsp", "rtsps"):
        return SourceSpec("rtsp", uri, _url_name(uri))
    if scheme in ("http", "https"):
        return SourceSpec("http", uri, _url_name(uri))
    if scheme == "v4l2":
        device = uri.split("://", 1)[1]
        return SourceSpec("v4l2", device if device.startswith("/") else f"/{device}", Path(device).name)
    if uri.startswith("/dev/video"):
        return SourceSpec("v4l2", uri, Path(uri).name)
    if scheme == "csi":
        sensor = uri.split("://", 1)[1] or "0"
        if not sensor.isdigit():
            raise BadData(f"csi:// takes a sensor number, e.g. csi://0, got {uri!r}")
        return SourceSpec("csi", sensor, f"csi{sensor}")
    if scheme == "file":
        uri = uri.split("://", 1)[1]
    elif scheme:
        raise BadData(f"unsupported input {redact(uri)!r}: use a file, a folder, rtsp://, http(s)://, v4l2://, csi://")
    if glob.has_magic(uri):
        return SourceSpec("images", uri, _safe_name(Path(uri).parent.name or "images"))
    path = Path(uri)
    if path.is_dir():
        return SourceSpec("images", uri, _safe_name(path.resolve().name))
    if not path.exists():
        raise BadData(f"input not found: {uri}")
    return SourceSpec("file", uri, _safe_name(path.stem))


@dataclass(frozen=True)
class SinkSpec:
    """Where annotated frames go."""

    kind: SinkKind
    location: str

    def for_source(self, index: int, count: int, name: str) -> SinkSpec:
        """The location for one of ``count`` sources (files get a per-source suffix)."""
        if count == 1 or self.kind in ("display", "stream"):
            return self
        path = Path(self.location)
        if self.kind == "images":
            return SinkSpec("images", str(path / name))
        return SinkSpec("video", str(path.with_name(f"{path.stem}_{index}_{name}{path.suffix}")))


def parse_sink(uri: str) -> SinkSpec:
    """Classify an output URI.

    ``display://0``, ``rtsp://``/``rtp://``/``srt://`` push, a video file by suffix, else an image folder
    (``%06d.jpg`` frames inside; a pattern with ``%d`` is used as given).
    """
    scheme = urlsplit(uri).scheme.lower() if "://" in uri else ""
    if scheme == "display":
        return SinkSpec("display", uri)
    if scheme in ("rtsp", "rtp", "srt", "udp", "rtmp"):
        return SinkSpec("stream", uri)
    if scheme == "file":
        uri = uri.split("://", 1)[1]
    elif scheme:
        raise BadData(f"unsupported output {redact(uri)!r}: use a video file, a folder, display://0 or rtsp://")
    if Path(uri).suffix.lower() in VIDEO_SUFFIXES:
        return SinkSpec("video", uri)
    return SinkSpec("images", uri)


def _url_name(uri: str) -> str:
    parts = urlsplit(uri)
    host = parts.hostname or "stream"
    tail = Path(parts.path).stem
    return _safe_name(f"{host}_{tail}" if tail else host)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "source"
