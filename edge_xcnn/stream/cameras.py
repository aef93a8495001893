"""``edge-xcnn run --config cameras.yaml``: many cameras as one file, checked completely before anything starts.

Example::

    model: runs/synthetic.onnx        # shared by every camera: one model, one batched inference
    backend: auto                     # or onnxruntime, tensorrt, triton (+ server: host:8001)
    batch: 8                          # at most this many frames per inference call
    metrics_port: 9100                # Prometheus /metrics (optional)
    outputs: [mqtt://broker/site-a]   # outputs every camera writes to (optional)
    cameras:
      - name: gate
        uri: rtsp://viewer@10.0.0.2/main    # ${VAR} is replaced from the environment (passwords)
        outputs: [runs/gate.mp4]
        threshold: 0.5
        stride: 2
        tracker: {name: bytetrack, track_thresh: 0.6, track_buffer: 30, match_iou: 0.1}  # fill_gaps: N (files: 12)
      - uri: rtsp://10.0.0.3/main

Unknown keys are refused with the closest known one ("cameras[0]: unknown key 'treshold' (did you
mean 'threshold'?)"), like Ultralytics' config check; every error is one line naming the file and the
place, so ``run --config`` exits 2 before a model loads or a camera is opened.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_xcnn.errors import BadData, MissingDependency

TRACKER_NAMES = ("bytetrack", "sort", "ocsort", "none")
TOP_KEYS = (
    "model", "backend", "server", "device", "threads", "batch", "metrics_port", "outputs", "json", "decoder",
    "reconnect_window", "cameras",
)  # fmt: skip
CAMERA_KEYS = ("name", "uri", "outputs", "threshold", "stride", "tracker", "min_area", "keep", "box_evidence")
TRACKER_KEYS = ("name", "track_thresh", "track_buffer", "match_iou", "fill_gaps")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ConfigError(BadData):
    """A camera file that cannot be run as written."""


@dataclass(frozen=True)
class TrackerSettings:
    """The tracker knobs of ``run`` (``--tracker``, ``--track-thresh``, ``--track-buffer``, ``--match-iou``, ...)."""

    name: str = "bytetrack"
    track_thresh: float = 0.6
    track_buffer: int = 30
    match_iou: float = 0.1
    fill_gaps: int | None = None  # None: run's default (files on, live sources off)


@dataclass(frozen=True)
class CameraConfig:
    """One camera: where it is, what to call it, where its results go, and its own settings."""

    name: str
    uri: str
    outputs: tuple[str, ...] = ()
    threshold: float | None = None  # None: the model's own
    stride: int = 1
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    min_area: float = 0.03
    keep: str = "all"
    box_evidence: float | None = None  # None: the model's own (run's --box-evidence)


@dataclass(frozen=True)
class FleetConfig:
    """The whole file: shared settings and the cameras."""

    cameras: tuple[CameraConfig, ...]
    model: str | None = None
    backend: str = "auto"
    server: str | None = None
    device: str | None = None
    threads: int | None = None
    batch: int = 8
    metrics_port: int | None = None
    outputs: tuple[str, ...] = ()
    json: str | None = None
    decoder: str = "pyav"
    reconnect_window: float = 30.0
    source: Path | None = None  # the file it was read from


def load_config(path: Path, environ: dict[str, str] | None = None) -> FleetConfig:
    """Read and check ``path``; every problem is a :class:`ConfigError` with one line naming where it is."""
    try:
        import yaml
    except ImportError as e:
        raise MissingDependency("pyyaml", "fleet") from e
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"--config {path}: {e.strerror or e}") from e
    try:
        data = yaml.safe_load(text)  # safe_load: a config file never constructs Python objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "not valid YAML"
        raise ConfigError(f"{path}{where}: {problem}") from e
    return parse_config(data, path, os.environ if environ is None else environ)


def parse_config(data: Any, path: Path, environ: Any) -> FleetConfig:
    where = str(path)
    top = _mapping(data, where, TOP_KEYS)
    raw_cameras = top.get("cameras")
    if not isinstance(raw_cameras, list) or not raw_cameras:
        raise ConfigError(f"{where}: 'cameras' must be a list with at least one camera")
    cameras = [_camera(item, f"{where}: cameras[{k}]", environ) for k, item in enumerate(raw_cameras)]
    names = [c.name for c in cameras]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{where}: camera names must be unique (topics and files use them): {', '.join(duplicates)}")
    backend = _string(top, "backend", where, "auto")
    server = _optional_string(top, "server", where)
    if backend == "triton" and server is None:
        raise ConfigError(f"{where}: backend triton needs 'server: HOST:PORT'")
    if server is not None and backend != "triton":
        raise ConfigError(f"{where}: 'server' is for backend: triton (got backend {backend!r})")
    return FleetConfig(
        cameras=tuple(cameras),
        model=_optional_string(top, "model", where),
        backend=backend,
        server=server,
        device=_optional_string(top, "device", where),
        threads=_optional_int(top, "threads", where, low=1),
        batch=_int(top, "batch", where, 8, low=1, high=256),
        metrics_port=_optional_int(top, "metrics_port", where, low=0, high=65535),
        outputs=_outputs(top, where, environ),
        json=_optional_string(top, "json", where),
        decoder=_choice(top, "decoder", where, "pyav", ("pyav", "gstreamer", "nvv4l2")),
        reconnect_window=_number(top, "reconnect_window", where, 30.0, low=0.0),
        source=path,
    )


def _camera(item: Any, where: str, environ: Any) -> CameraConfig:
    cam = _mapping(item, where, CAMERA_KEYS)
    if "uri" not in cam:
        raise ConfigError(f"{where}: every camera needs a 'uri'")
    uri = _expand(_string(cam, "uri", where, ""), where, environ)
    name = cam.get("name")
    if name is None:
        from edge_xcnn.stream.uri import parse_source

        name = parse_source(uri).name
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: name must be 1-64 letters, digits, '_', '.' or '-' (it ends topics and files)")
    tracker = TrackerSettings()
    if "tracker" in cam:
        t = _mapping(cam["tracker"], f"{where}.tracker", TRACKER_KEYS)
        tracker = TrackerSettings(
            name=_choice(t, "name", f"{where}.tracker", "bytetrack", TRACKER_NAMES),
            track_thresh=_number(t, "track_thresh", f"{where}.tracker", 0.6, low=0.0, high=1.0),
            track_buffer=_int(t, "track_buffer", f"{where}.tracker", 30, low=0, high=100_000),
            match_iou=_number(t, "match_iou", f"{where}.tracker", 0.1, low=0.0, high=1.0),
            fill_gaps=_optional_int(t, "fill_gaps", f"{where}.tracker", low=0, high=10_000),
        )
    threshold = cam.get("threshold")
    if threshold is not None:
        threshold = _number(cam, "threshold", where, 0.5, low=0.0, high=1.0, open_range=True)
    box_evidence = cam.get("box_evidence")
    if box_evidence is not None:
        box_evidence = _number(cam, "box_evidence", where, 0.0, low=0.0, high=0.999)
    return CameraConfig(
        name=name,
        uri=uri,
        outputs=_outputs(cam, where, environ),
        threshold=threshold,
        stride=_int(cam, "stride", where, 1, low=1, high=10_000),
        tracker=tracker,
        min_area=_number(cam, "min_area", where, CameraConfig.min_area, low=0.0, high=0.999),
        keep=_choice(cam, "keep", where, "all", ("all", "largest")),
        box_evidence=box_evidence,
    )


# -- checks ------------------------------------------------------------------------------------------
def _mapping(value: Any, where: str, known: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of {', '.join(known)}, got {type(value).__name__}")
    for key in value:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")
    return value


def _expand(text: str, where: str, environ: Any) -> str:
    """``${VAR}`` from the environment, so passwords stay out of the file (systemd EnvironmentFile=)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise ConfigError(f"{where}: the environment has no {name} (used as ${{{name}}})")
        return environ[name]

    return _ENV.sub(one, text)


def _outputs(d: dict[str, Any], where: str, environ: Any) -> tuple[str, ...]:
    value = d.get("outputs", [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: outputs must be a list of output URIs or paths")
    return tuple(_expand(v, where, environ) for v in value)


def _string(d: dict[str, Any], key: str, where: str, default: str) -> str:
    value = d.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key} must be a non-empty string")
    return value


def _optional_string(d: dict[str, Any], key: str, where: str) -> str | None:
    return None if d.get(key) is None else _string(d, key, where, "")


def _choice(d: dict[str, Any], key: str, where: str, default: str, allowed: tuple[str, ...]) -> str:
    value = d.get(key, default)
    if value not in allowed:
        raise ConfigError(f"{where}: {key} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _number(
    d: dict[str, Any], key: str, where: str, default: float, *, low: float, high: float | None = None,
    open_range: bool = False,
) -> float:  # fmt: skip
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
    inside = (low < value if open_range else low <= value) and (
        high is None or (value < high if open_range else value <= high)
    )
    if not inside:
        brackets = ("(", ")") if open_range else ("[", "]")
        bound = f"{brackets[0]}{low}, {high}{brackets[1]}" if high is not None else f">= {low}"
        raise ConfigError(f"{where}: {key} must be in {bound}, got {value}")
    return float(value)


def _int(d: dict[str, Any], key: str, where: str, default: int, *, low: int, high: int | None = None) -> int:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: {key} must be a whole number, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ConfigError(f"{where}: {key} must be {bound}, got {value}")
    return value


def _optional_int(d: dict[str, Any], key: str, where: str, *, low: int, high: int | None = None) -> int | None:
    return None if d.get(key) is None else _int(d, key, where, 0, low=low, high=high)
