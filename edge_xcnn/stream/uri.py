"""Input and output URIs in the style of jetson-inference, and keeping credentials out of messages."""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from edge_xcnn.errors import BadData

SourceKind = Literal["file", "rtsp", "http", "v4l2", "csi", "images"]
SinkKind = Literal["video", "images", "stream", "display"]

VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts", ".mpg", ".mpeg", ".flv", ".wmv"})
LIVE_KINDS: frozenset[str] = frozenset({"rtsp", "http", "v4l2", "csi"})


# Query-string keys whose values are secrets (or identify the account): redacted wherever a URL is shown.
_SECRET_KEYS = r"[^=&;\s#/?]*(?:pass|pwd|token|key|auth|sig|secret|credential|session|user|login)[^=&;\s#/?]*"
_SECRET_QUERY = re.compile(rf"([?&;]{_SECRET_KEYS}=)[^&;\s#]*", re.IGNORECASE)
# scheme://userinfo@ where userinfo may itself hold '@' or ':' (greedy up to the last '@' before the path).
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s]*@")


def redact(uri: str) -> str:
    """``uri`` with its user name and password, and secret query values, replaced by ``***`` (safe to show)."""
    return redact_text(uri)


def redact_text(text: str) -> str:
    """Redact every URL's credentials inside a message (FFmpeg and GStreamer errors quote the URL)."""
    return _SECRET_QUERY.sub(r"\1***", _USERINFO.sub(r"\1***@", text))


def has_credentials(uri: str) -> bool:
    return redact(uri) != uri


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
        return redact(self.location)


def parse_source(uri: str) -> SourceSpec:
    """Classify an input URI.

    ``rtsp://``, ``http(s)://``, ``v4l2:///dev/video0`` or ``/dev/videoN``, ``csi://N``, an image folder
    or glob, or a video file.
    """
    if not uri or not uri.strip():
        raise BadData("an input must not be empty")
    scheme = _scheme(uri)
    if scheme in ("rtsp", "rtsps", "http", "https"):
        _check_url(uri)
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


# Output URI schemes and the sink kind each one selects (``edge_xcnn.stream.sink.SINKS`` maps kinds to classes).
SINK_SCHEMES: dict[str, str] = {
    "display": "display",
    "rtsp": "stream",
    "rtp": "stream",
    "srt": "stream",
    "udp": "stream",
    "rtmp": "stream",
    "mqtt": "mqtt",
    "mqtts": "mqtt",
}
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})


@dataclass(frozen=True)
class SinkSpec:
    """Where results go: ``kind`` picks the sink class, ``location`` is the path or URL as given."""

    kind: str
    location: str

    @property
    def is_file(self) -> bool:
        """A path on this machine (not a URL or a window)."""
        return self.kind in ("video", "images", "jsonl", "mot")

    def __str__(self) -> str:
        return redact(self.location)

    def for_source(self, source: int, count: int, name: str) -> str:
        """The path for one of ``count`` sources (``out.mp4`` -> ``out_0_cam.mp4``; folders get a subfolder)."""
        if count == 1:
            return self.location
        path = Path(self.location)
        if self.kind == "images":
            if "%" in self.location:
                return str(path.parent / name / path.name)
            return str(path / name)
        suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".mot.txt") else path.suffix
        stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
        return str(path.with_name(f"{stem}_{source}_{name}{suffix}"))


def parse_sink(uri: str, kind: str | None = None) -> SinkSpec:
    """Classify an output URI.

    ``display://0``, ``rtsp://``/``rtp://``/``srt://`` push, ``mqtt://``, a video file by suffix, JSON lines
    (``.jsonl``), else an image folder (``%06d.jpg`` frames inside; a pattern with ``%d`` is used as given).
    ``kind`` forces the kind (``--json`` and ``--mot`` paths).
    """
    if not uri or not uri.strip():
        raise BadData("an output must not be empty")
    if kind is not None:
        return SinkSpec(kind, uri)
    scheme = _scheme(uri)
    if scheme in SINK_SCHEMES:
        return SinkSpec(SINK_SCHEMES[scheme], uri)
    if scheme == "file":
        uri = uri.split("://", 1)[1]
    elif scheme:
        raise BadData(
            f"unsupported output {redact(uri)!r}: use a video file, a folder, a .jsonl file, display://0, "
            "rtsp:// or mqtt://"
        )
    suffix = Path(uri).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return SinkSpec("video", uri)
    if suffix in JSONL_SUFFIXES:
        return SinkSpec("jsonl", uri)
    return SinkSpec("images", uri)


def _scheme(uri: str) -> str:
    if "://" not in uri:
        return ""
    try:
        return urlsplit(uri).scheme.lower()
    except ValueError as e:
        raise BadData(f"not a valid URL: {redact(uri)} ({e})") from e


def _check_url(uri: str) -> None:
    """A stream URL must name a host and a valid port: one clear line instead of a decoder's error later."""
    try:
        parts = urlsplit(uri)
        host, port = parts.hostname, parts.port
    except ValueError as e:
        raise BadData(f"not a valid URL: {redact(uri)} ({e})") from e
    if not host:
        raise BadData(f"the URL names no host: {redact(uri)}")
    if port == 0:
        raise BadData(f"port 0 is not a valid port: {redact(uri)}")


def _url_name(uri: str) -> str:
    parts = urlsplit(uri)
    host = parts.hostname or "stream"
    tail = Path(parts.path).stem
    return _safe_name(f"{host}_{tail}" if tail else host)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "source"
