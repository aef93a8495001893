"""What a TensorRT build should do, decided without TensorRT: flags, ONNX, profile, reuse.

TensorRT 10.12 deprecated weak typing (``BuilderFlag.FP16/INT8`` over an FP32 network) and TensorRT 11
removed it: precision then comes from the ONNX itself, an FP16 ONNX for FP16 and a Q/DQ ONNX for INT8,
built as a strongly typed network. JetPack 6 ships TensorRT 10.3, where the same Q/DQ ONNX is built
with the INT8 flag (and FP16, so layers outside Q/DQ pairs may use half precision) and FP16 comes from
the flag over the FP32 ONNX. Everything here is pure so it is tested without a GPU; the thin layer in
:mod:`edge_xcnn.export.tensorrt_engine` only turns a :class:`BuildPlan` into TensorRT calls.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from edge_xcnn.engine_sidecar import PRECISIONS, EngineSidecar, TrtRuntime, engine_problem, read_sidecar
from edge_xcnn.errors import BadModelFile, EdgeXcnnError

MIN_TENSORRT = (10, 0)
STRONG_TYPING_SINCE = (10, 12)  # weak typing deprecated in 10.12, removed in 11.0
DEFAULT_MAX_BATCH = 16
DEFAULT_WORKSPACE_GIB = 1.0
_VERSION = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?")


def parse_trt_version(text: str) -> tuple[int, int, int]:
    """``"10.3.0.30"`` -> ``(10, 3, 0)``; anything without a leading ``major.minor`` is a ValueError."""
    match = _VERSION.match(text or "")
    if not match:
        raise ValueError(f"not a TensorRT version: {text!r}")
    return int(match[1]), int(match[2]), int(match[3] or 0)


def network_typing(version: tuple[int, int, int]) -> str:
    """``strong`` from TensorRT 10.12 on (precision from the ONNX), ``weak`` before (precision flags)."""
    if version[:2] < MIN_TENSORRT:
        raise EdgeXcnnError(
            f"TensorRT {'.'.join(map(str, version))} is older than 10.0: edge-xcnn builds engines with the "
            "TensorRT 10 API (JetPack 6 ships 10.3)"
        )
    return "strong" if version[:2] >= STRONG_TYPING_SINCE else "weak"


@dataclass(frozen=True)
class Profile:
    """One optimization profile for the ``images`` input: min, opt and max N x C x H x W."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @property
    def static(self) -> bool:
        return self.min == self.max

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def profile_shapes(
    channels: int,
    input_size: tuple[int, int],
    *,
    batch: int | None = None,
    dynamic: bool = False,
    max_batch: int = DEFAULT_MAX_BATCH,
    dla: bool = False,
) -> Profile:
    """The batch range the engine accepts, from ``--batch N`` (static) or ``--dynamic`` (the default).

    A dynamic engine takes 1 to ``max_batch`` frames and is tuned for half of ``max_batch`` (several
    streams batched together); a static one takes exactly ``batch``. DLA has no dynamic shapes, so for
    ``dla`` the default is a static batch of 1.
    """
    if batch is not None and dynamic:
        raise EdgeXcnnError("--batch N (static) and --dynamic exclude each other: pick one")
    if dla and dynamic:
        raise EdgeXcnnError("DLA has no dynamic shapes: drop --dynamic for --dla-core (or give --batch N)")
    if dla and batch is None:
        batch = 1
    if batch is not None and batch < 1:
        raise EdgeXcnnError(f"--batch must be >= 1, got {batch}")
    if max_batch < 1:
        raise EdgeXcnnError(f"--max-batch must be >= 1, got {max_batch}")
    chw = (channels, *input_size)
    if batch is not None:
        return Profile((batch, *chw), (batch, *chw), (batch, *chw))
    return Profile((1, *chw), (max(1, max_batch // 2), *chw), (max_batch, *chw))


@dataclass(frozen=True)
class BuildPlan:
    """How to build one engine.

    Attributes:
        precision: ``fp32``, ``fp16`` or ``int8``.
        typing: ``strong`` or ``weak`` (see :func:`network_typing`).
        onnx: which ONNX to parse: ``fp32`` (the export), ``fp16`` (FP16 inside, FP32 inputs and outputs)
            or ``int8`` (the calibrated Q/DQ export).
        network_flags: ``tensorrt.NetworkDefinitionCreationFlag`` member names.
        builder_flags: ``tensorrt.BuilderFlag`` member names.
        profile: the input's optimization profile.
        workspace_bytes: limit of ``MemoryPoolType.WORKSPACE``.
        dla_core: DLA core (``DeviceType.DLA`` by default, GPU fallback), or None for the GPU.
    """

    precision: str
    typing: str
    onnx: str
    network_flags: tuple[str, ...]
    builder_flags: tuple[str, ...]
    profile: Profile
    workspace_bytes: int
    dla_core: int | None = None


def plan_build(
    tensorrt_version: str,
    precision: str,
    profile: Profile,
    *,
    dla_core: int | None = None,
    workspace_gib: float = DEFAULT_WORKSPACE_GIB,
) -> BuildPlan:
    """The flags and ONNX for ``precision`` on this TensorRT version; bad combinations are user errors."""
    if precision not in PRECISIONS:
        raise EdgeXcnnError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if workspace_gib <= 0:
        raise EdgeXcnnError(f"--workspace must be > 0 GiB, got {workspace_gib}")
    typing = network_typing(parse_trt_version(tensorrt_version))
    if typing == "strong":
        network_flags: tuple[str, ...] = ("STRONGLY_TYPED",)
        builder_flags: tuple[str, ...] = ()
        onnx = precision
    else:
        network_flags = ()
        builder_flags = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}[precision]
        onnx = "int8" if precision == "int8" else "fp32"
    if dla_core is not None:
        if dla_core < 0:
            raise EdgeXcnnError(f"--dla-core must be >= 0, got {dla_core}")
        if precision == "fp32":
            raise EdgeXcnnError("DLA runs FP16 or INT8 only: add --fp16 or --int8 to --dla-core")
        if not profile.static:
            raise EdgeXcnnError("DLA has no dynamic shapes: give a static batch with --batch N for --dla-core")
        builder_flags = (*builder_flags, "GPU_FALLBACK")
    return BuildPlan(
        precision=precision,
        typing=typing,
        onnx=onnx,
        network_flags=network_flags,
        builder_flags=builder_flags,
        profile=profile,
        workspace_bytes=int(workspace_gib * (1 << 30)),
        dla_core=dla_core,
    )


def default_engine_path(model: Path, precision: str, folder: Path | None = None) -> Path:
    """``runs/x/best.safetensors`` + fp16 -> ``best.fp16.engine`` (in ``folder``, default the working directory)."""
    stem = model.name.split(".")[0]
    return (folder or Path()) / f"{stem}.{precision}.engine"


def timing_cache_path(here: TrtRuntime, cache_dir: Path | None = None) -> Path:
    """One timing cache per TensorRT version and GPU, under ``$XDG_CACHE_HOME/edge-xcnn`` by default.

    Tactic timings are only valid for the TensorRT build and GPU that measured them, so the key names both.
    """
    if cache_dir is None:
        cache_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edge-xcnn"
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", here.gpu.name).strip("-").lower() or "gpu"
    sm = here.gpu.compute_capability.replace(".", "")
    return cache_dir / f"tensorrt-{here.tensorrt}-{gpu}-sm{sm}.timing-cache"


def existing_engine_action(
    engine: Path, plan: BuildPlan, here: TrtRuntime, source_sha256: str, *, rebuild: bool = False
) -> tuple[str, str]:
    """Whether to ``build``, ``reuse`` or ``refuse`` (with the one line to show) for ``engine``.

    An existing engine is reused only when it is intact, was built here (same TensorRT, same GPU), from
    the same ONNX, for the same precision, batch range and device. Otherwise the export stops with the
    reason and ``--rebuild`` replaces it.
    """
    if rebuild or not engine.exists():
        return "build", f"rebuilding {engine.name} (--rebuild)" if engine.exists() else ""
    hint = "; pass --rebuild to replace it"
    try:
        sidecar = read_sidecar(engine)
    except BadModelFile as e:
        return "refuse", f"{e}{hint}"
    problem = engine_problem(engine, sidecar, here, source_sha256=source_sha256)
    if problem:
        return "refuse", problem + hint
    if differences := request_differences(sidecar, plan):
        return "refuse", f"engine {engine.name} was built {differences}{hint} (or choose another --out)"
    return "reuse", f"{engine} is up to date (same TensorRT, GPU and ONNX); --rebuild builds it again"


def request_differences(sidecar: EngineSidecar, plan: BuildPlan) -> str:
    """How the engine's build settings differ from this request, as a phrase; empty when they agree."""
    said = []
    if sidecar.precision != plan.precision:
        said.append(f"for {sidecar.precision}, not {plan.precision}")
    if sidecar.shapes != plan.profile.to_dict():
        low, high = sidecar.batch_range
        said.append(f"for batch {low}..{high}, not {plan.profile.min[0]}..{plan.profile.max[0]}")
    if sidecar.dla_core != plan.dla_core:
        where = "the GPU" if sidecar.dla_core is None else f"DLA core {sidecar.dla_core}"
        said.append(f"for {where}")
    return ", ".join(said)
