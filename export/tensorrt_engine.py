"""Build TensorRT engines: the thin layer that turns a :class:`BuildPlan` into TensorRT 10 calls.

Written against TensorRT's documented Python API (10.3 as in JetPack 6, 10.12+ and 11 strongly typed):
``Builder.create_network(flags)``, ``OnnxParser.parse_from_file``, ``IBuilderConfig.set_memory_pool_limit``
(``MemoryPoolType.WORKSPACE``), one optimization profile, a timing cache kept per TensorRT version and
GPU, DLA with GPU fallback, ``build_serialized_network``. Optional route: Torch-TensorRT straight from the
checkpoint. What to build is decided in :mod:`edge_xcnn.export.tensorrt_plan` (tested without a GPU);
this module needs TensorRT and a GPU and is not exercised by the test suite.
"""

from __future__ import annotations

import hashlib
import inspect
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

from edge_xcnn.engine_sidecar import EngineSidecar, TrtRuntime, file_sha256, write_sidecar
from edge_xcnn.errors import BadModelFile, EdgeXcnnError
from edge_xcnn.export.tensorrt_plan import BuildPlan
from edge_xcnn.fileio import atomic_output
from edge_xcnn.meta import ModelMeta
from edge_xcnn.onnx_meta import read_onnx_file

OUTPUTS = ("logits", "heatmap")


def onnx_info(path: Path) -> tuple[ModelMeta, str]:
    """An edge-xcnn ONNX export's metadata and precision (``fp32``, ``fp16`` or ``int8``): the one reader."""
    described = read_onnx_file(path)
    return described.meta, described.precision


def _save_timing_cache(config: object, path: Path) -> None:
    """Write the builder's timing cache, merged with what another build may have saved meanwhile."""
    cache = config.get_timing_cache()
    if path.is_file():
        on_disk = config.create_timing_cache(path.read_bytes())
        cache.combine(on_disk, False)  # same TensorRT and GPU by construction of the path: no mismatch to ignore
    with atomic_output(path) as tmp:
        tmp.write_bytes(bytes(cache.serialize()))


def build_engine(
    onnx_path: Path,
    plan: BuildPlan,
    out: Path,
    meta: ModelMeta,
    *,
    trt: ModuleType,
    here: TrtRuntime,
    timing_cache: Path | None = None,
) -> EngineSidecar:
    """Parse ``onnx_path``, build as ``plan`` says, write ``out`` and its sidecar (both atomically)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise BadModelFile(f"TensorRT's ONNX parser rejected {onnx_path.name}: {errors}")
    if network.num_inputs != 1:
        raise BadModelFile(f"{onnx_path.name} has {network.num_inputs} inputs; an edge-xcnn export has one")
    images = network.get_input(0)
    batch = images.shape[0]
    if batch >= 0 and not plan.profile.min[0] == plan.profile.max[0] == batch:
        raise EdgeXcnnError(f"{onnx_path.name} has a static batch of {batch}: export it with a dynamic batch")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    for name in plan.builder_flags:
        flag = getattr(trt.BuilderFlag, name, None)
        if flag is None:
            raise EdgeXcnnError(f"TensorRT {trt.__version__} has no BuilderFlag.{name}")
        config.set_flag(flag)
    if plan.dla_core is not None:
        if plan.dla_core >= builder.num_DLA_cores:
            raise EdgeXcnnError(f"--dla-core {plan.dla_core}: this device has {builder.num_DLA_cores} DLA cores")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    profile = builder.create_optimization_profile()
    profile.set_shape(images.name, plan.profile.min, plan.profile.opt, plan.profile.max)
    config.add_optimization_profile(profile)
    if timing_cache is not None:
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
        config.set_timing_cache(cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT could not build the engine (see its log above)")
    if timing_cache is not None:
        _save_timing_cache(config, timing_cache)
    outputs = {network.get_output(i).name: network.get_output(i).name for i in range(network.num_outputs)}
    digest = file_sha256(onnx_path)
    return _write(out, bytes(serialized), plan, meta, here, images.name, outputs, onnx_path.name, digest)


def _write(
    out: Path,
    engine: bytes,
    plan: BuildPlan,
    meta: ModelMeta,
    here: TrtRuntime,
    input_name: str,
    outputs: dict[str, str],
    source: str,
    source_sha256: str,
    built_with: str = "tensorrt",
    typing: str | None = None,
) -> EngineSidecar:
    sidecar = EngineSidecar(
        tensorrt=here.tensorrt,
        gpu=here.gpu,
        precision=plan.precision,
        typing=typing or plan.typing,
        input_name=input_name,
        outputs=outputs,
        shapes=plan.profile.to_dict(),
        source_onnx=source,
        source_sha256=source_sha256,
        engine_sha256=hashlib.sha256(engine).hexdigest(),
        meta=meta,
        dla_core=plan.dla_core,
        built_with=built_with,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        extra={"workspace_bytes": plan.workspace_bytes, "builder_flags": list(plan.builder_flags)},
    )
    with atomic_output(out) as tmp:
        tmp.write_bytes(engine)
    write_sidecar(out, sidecar)
    return sidecar


def build_engine_torch_tensorrt(
    checkpoint: Path, plan: BuildPlan, out: Path, *, trt: ModuleType, here: TrtRuntime
) -> EngineSidecar:
    """The optional route: Torch-TensorRT compiles the checkpoint's network into a plain TensorRT engine.

    FP32 or FP16 (the weights cast to half, inputs and outputs kept float32); INT8 and DLA go through
    the ONNX route, which has the calibrated Q/DQ model.
    """
    try:
        import torch
        import torch_tensorrt
    except ImportError as e:
        raise EdgeXcnnError(
            "--via torch-tensorrt needs the torch-tensorrt package built for your torch (pip install torch-tensorrt)"
        ) from e
    if plan.precision == "int8":
        raise EdgeXcnnError("INT8 engines come from the calibrated Q/DQ ONNX: drop --via torch-tensorrt for --int8")
    if plan.dla_core is not None:
        raise EdgeXcnnError("--dla-core goes through the ONNX route: drop --via torch-tensorrt")
    from edge_xcnn.checkpoint import load_model

    net, meta = load_model(checkpoint, "cuda")
    dtype = torch.float16 if plan.precision == "fp16" else torch.float32
    net = net.to(dtype)

    class Float32IO(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.net(images.to(dtype))
            return tuple(o.float() for o in (out if isinstance(out, tuple) else (out,)))

    low, opt, high = (tuple(s) for s in (plan.profile.min, plan.profile.opt, plan.profile.max))
    dynamic = None if plan.profile.static else {"images": {0: torch.export.Dim("batch", min=low[0], max=high[0])}}
    with torch.no_grad():
        exported = torch.export.export(Float32IO().eval(), (torch.rand(opt, device="cuda"),), dynamic_shapes=dynamic)
    convert = torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine
    accepts = inspect.signature(convert).parameters
    options: dict[str, object] = {
        "arg_inputs": [torch_tensorrt.Input(min_shape=low, opt_shape=opt, max_shape=high, dtype=torch.float32)]
    }
    if "use_explicit_typing" in accepts:  # strongly typed: the half weights are the precision
        options["use_explicit_typing"] = True
        typing = "strong"
    else:
        options["enabled_precisions"] = {torch.float32, dtype}
        typing = "weak"
    if "workspace_size" in accepts:
        options["workspace_size"] = plan.workspace_bytes
    engine = bytes(convert(exported, **options))
    # Torch-TensorRT names tensors after the graph (images, output0, ...): map ours onto them.
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    built = runtime.deserialize_cuda_engine(engine)
    names = [built.get_tensor_name(i) for i in range(built.num_io_tensors)]
    inputs = [n for n in names if built.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if n not in inputs]
    if len(inputs) != 1 or len(outputs) not in (1, 2):
        raise RuntimeError(f"Torch-TensorRT built an engine with tensors {names}")
    return _write(
        out, engine, plan, meta, here, inputs[0], dict(zip(OUTPUTS, outputs, strict=False)),
        "", file_sha256(checkpoint), built_with="torch-tensorrt", typing=typing,
    )  # fmt: skip
