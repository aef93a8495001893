"""The JSON file beside every TensorRT engine: what built it, for which GPU, from which ONNX.

A TensorRT engine runs only with the TensorRT version and on the GPU model that built it, and it
knows nothing of the model it came from. The sidecar (``<engine>.json``) records both, plus the
model's metadata, so the exporter can tell a stale engine (its ONNX changed) or a foreign one (other
TensorRT, other GPU) from a good one, and the runtime can refuse a foreign engine with one clear line
instead of a deserialization error. Pure Python: no tensorrt, no torch, so all of it is tested here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_xcnn.errors import BadModelFile
from edge_xcnn.fileio import atomic_output
from edge_xcnn.meta import ModelMeta

SIDECAR_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
TYPINGS = ("strong", "weak")
ENGINE_SUFFIXES = frozenset({".engine", ".plan", ".trt"})


@dataclass(frozen=True)
class GpuInfo:
    """The device an engine is built for: its name and compute capability (``"8.7"`` on Jetson Orin)."""

    name: str
    compute_capability: str

    def __str__(self) -> str:
        return f"{self.name} (compute capability {self.compute_capability})"


@dataclass(frozen=True)
class TrtRuntime:
    """What this machine offers: the TensorRT version string (``tensorrt.__version__``) and the GPU."""

    tensorrt: str
    gpu: GpuInfo


@dataclass(frozen=True)
class EngineSidecar:
    """Everything needed to check and use an engine without opening it.

    Attributes:
        tensorrt: ``tensorrt.__version__`` of the builder.
        gpu: the GPU it was built on.
        precision: ``fp32``, ``fp16`` or ``int8``.
        typing: ``strong`` (types from the ONNX) or ``weak`` (builder precision flags).
        input_name: the engine's input tensor.
        outputs: our output names (``logits``, ``heatmap``) to the engine's tensor names.
        shapes: the input's optimization profile, ``{"min": [N, C, H, W], "opt": [...], "max": [...]}``.
        source_onnx: file name of the ONNX it was built from (empty for torch-tensorrt builds).
        source_sha256: sha256 of that ONNX (or of the checkpoint, for torch-tensorrt builds).
        engine_sha256: sha256 of the engine file, to tell a damaged or replaced engine.
        dla_core: the DLA core it runs on (with GPU fallback), or None for the GPU.
        built_with: ``tensorrt`` (ONNX parser) or ``torch-tensorrt``.
        meta: the model's metadata, as in the checkpoint and the ONNX.
    """

    tensorrt: str
    gpu: GpuInfo
    precision: str
    typing: str
    input_name: str
    outputs: dict[str, str]
    shapes: dict[str, list[int]]
    source_onnx: str
    source_sha256: str
    engine_sha256: str
    meta: ModelMeta
    dla_core: int | None = None
    built_with: str = "tensorrt"
    created: str = ""
    sidecar_version: int = SIDECAR_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.typing not in TYPINGS:
            raise ValueError(f"typing must be one of {TYPINGS}, got {self.typing!r}")
        if set(self.shapes) != {"min", "opt", "max"} or len({len(s) for s in self.shapes.values()}) != 1:
            raise ValueError(f"shapes needs min, opt and max of one rank, got {self.shapes}")
        low, opt, high = (self.shapes[k] for k in ("min", "opt", "max"))
        if not all(a <= b <= c for a, b, c in zip(low, opt, high, strict=True)):
            raise ValueError(f"shapes must satisfy min <= opt <= max, got {self.shapes}")
        if "logits" not in self.outputs:
            raise ValueError(f"outputs must name the engine's logits tensor, got {self.outputs}")

    @property
    def batch_range(self) -> tuple[int, int]:
        return self.shapes["min"][0], self.shapes["max"][0]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["meta"] = self.meta.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineSidecar:
        """Build from stored JSON; anything missing or malformed is a :class:`BadModelFile`."""
        try:
            version = int(data.get("sidecar_version", 0))
            if version > SIDECAR_VERSION:
                raise BadModelFile(
                    f"engine sidecar format {version} is newer than this edge-xcnn understands ({SIDECAR_VERSION})"
                )
            fields = dict(data)
            fields["gpu"] = GpuInfo(str(data["gpu"]["name"]), str(data["gpu"]["compute_capability"]))
            fields["meta"] = ModelMeta.from_dict(data["meta"])
            fields["shapes"] = {k: [int(v) for v in data["shapes"][k]] for k in ("min", "opt", "max")}
            fields["outputs"] = {str(k): str(v) for k, v in data["outputs"].items()}
            fields["dla_core"] = None if data.get("dla_core") is None else int(data["dla_core"])
            return cls(**fields)
        except BadModelFile:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise BadModelFile(f"engine sidecar is malformed: {type(e).__name__}: {e}") from e


def sidecar_path(engine: str | os.PathLike[str]) -> Path:
    """``model.fp16.engine`` -> ``model.fp16.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_sidecar(engine: str | os.PathLike[str]) -> EngineSidecar:
    """The sidecar of ``engine``; a missing, unreadable or malformed one is a :class:`BadModelFile`."""
    path = sidecar_path(engine)
    if not Path(engine).is_file():
        raise BadModelFile(f"engine file not found: {engine}")
    if not path.is_file():
        raise BadModelFile(
            f"{engine} has no sidecar {path.name}: edge-xcnn needs it to know the model and check the engine "
            "(build engines with edge-xcnn export --format engine)"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadModelFile(f"engine sidecar {path} is not readable JSON") from e
    if not isinstance(data, dict):
        raise BadModelFile(f"engine sidecar {path} is not a JSON object")
    return EngineSidecar.from_dict(data)


def write_sidecar(engine: str | os.PathLike[str], sidecar: EngineSidecar) -> Path:
    path = sidecar_path(engine)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(sidecar.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def foreign_reason(sidecar: EngineSidecar, here: TrtRuntime) -> str | None:
    """Why an engine cannot run here (other TensorRT version or other GPU), or None if it can."""
    if sidecar.tensorrt != here.tensorrt:
        return f"it was built with TensorRT {sidecar.tensorrt} and this machine has TensorRT {here.tensorrt}"
    if sidecar.gpu != here.gpu:
        return f"it was built for {sidecar.gpu} and this GPU is {here.gpu}"
    return None


def engine_problem(
    engine: str | os.PathLike[str],
    sidecar: EngineSidecar,
    here: TrtRuntime | None = None,
    *,
    source_sha256: str | None = None,
) -> str | None:
    """One line saying what is wrong with ``engine`` (damaged, foreign, stale), or None if nothing is.

    Args:
        engine: the engine file.
        sidecar: its sidecar.
        here: this machine's TensorRT and GPU; None skips the foreign check.
        source_sha256: sha256 of the ONNX (or checkpoint) it should have been built from; None skips
            the staleness check (the runtime has no ONNX at hand).
    """
    name = Path(engine).name
    if file_sha256(engine) != sidecar.engine_sha256:
        return f"engine {name} does not match its sidecar (damaged, or replaced by another file)"
    if here is not None and (reason := foreign_reason(sidecar, here)):
        return f"engine {name} is foreign: {reason}; engines run only where they were built: rebuild it here"
    if source_sha256 is not None and source_sha256 != sidecar.source_sha256:
        return (
            f"engine {name} is stale: the model it was built from changed "
            f"(sha256 {sidecar.source_sha256[:12]} when built, {source_sha256[:12]} now)"
        )
    return None
