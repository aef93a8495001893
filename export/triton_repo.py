"""``edge-xcnn export --format triton``: a Triton Inference Server model repository for a GPU server.

One server feeds many edge boxes: each box sends its preprocessed frames (``--backend triton``), the
server batches requests from all of them (dynamic batching) and runs the model on its GPU. Layout::

    OUT/                          # the model repository (tritonserver --model-repository OUT)
      edge_xcnn/
        config.pbtxt              # platform, shapes, dynamic batching, the model's metadata
        1/model.onnx              # or 1/model.plan (a TensorRT engine built for the server's GPU)
        edge_xcnn.json            # the same metadata, for people and tools that do not parse pbtxt

Platforms: ``onnxruntime`` (``onnxruntime_onnx``: the exported ONNX as is; Triton's ONNX Runtime may
hand it to TensorRT with ``--triton-trt fp16``, ``optimization { execution_accelerators }``) and
``tensorrt`` (``tensorrt_plan``: an engine; engines are tied to the GPU and TensorRT version they
were built with, so it must be built on, or for, the server, e.g. with ``trtexec`` there).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from edge_xcnn.errors import BadModelFile, EdgeXcnnError
from edge_xcnn.fileio import atomic_output
from edge_xcnn.meta import META_KEY, ModelMeta

PLATFORMS = {"onnxruntime": ("onnxruntime_onnx", "model.onnx"), "tensorrt": ("tensorrt_plan", "model.plan")}
DEFAULT_NAME = "edge_xcnn"
# Requests from many boxes are merged up to these sizes; waiting at most 2 ms for a batch to fill
# costs less than one 25 FPS frame interval (40 ms) and lets a GPU run batches instead of single frames.
PREFERRED_BATCHES = (4, 8, 16, 32)
QUEUE_DELAY_US = 2000


@dataclass(frozen=True)
class TritonOptions:
    """What goes into ``config.pbtxt`` besides the model's own shapes."""

    name: str = DEFAULT_NAME
    platform: str = "onnxruntime"
    max_batch: int = 32
    instances: int = 1
    kind: str = "KIND_GPU"  # KIND_CPU for a CPU-only server
    trt_accelerator: str | None = None  # onnxruntime platform: "fp16" / "fp32" hands the graph to TensorRT


def config_pbtxt(meta: ModelMeta, options: TritonOptions, *, heatmap: bool = True) -> str:
    """The model configuration in Triton's protobuf text format (checked against Triton's schema in the tests)."""
    if options.platform not in PLATFORMS:
        raise EdgeXcnnError(f"--platform must be one of {', '.join(PLATFORMS)}, got {options.platform!r}")
    if options.max_batch < 1:
        raise EdgeXcnnError(f"--max-batch must be >= 1, got {options.max_batch}")
    h, w = meta.input_size
    outputs = [f'  {{ name: "logits" data_type: TYPE_FP32 dims: [ {meta.num_classes} ] }}']
    if heatmap:
        outputs.append(f'  {{ name: "heatmap" data_type: TYPE_FP32 dims: [ 1, {h}, {w} ] }}')
    preferred = [b for b in PREFERRED_BATCHES if b <= options.max_batch] or [options.max_batch]
    lines = [
        f'name: "{options.name}"',
        f'platform: "{PLATFORMS[options.platform][0]}"',
        f"max_batch_size: {options.max_batch}",
        "input [",
        f'  {{ name: "images" data_type: TYPE_FP32 dims: [ {meta.channels}, {h}, {w} ] }}',
        "]",
        "output [",
        ",\n".join(outputs),
        "]",
        "dynamic_batching {",
        f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]",
        f"  max_queue_delay_microseconds: {QUEUE_DELAY_US}",
        "}",
        f"instance_group [ {{ count: {options.instances} kind: {options.kind} }} ]",
    ]
    if options.trt_accelerator is not None:
        if options.platform != "onnxruntime":
            raise EdgeXcnnError("--triton-trt applies to the onnxruntime platform (a plan is TensorRT already)")
        precision = options.trt_accelerator.upper()
        if precision not in ("FP16", "FP32"):
            raise EdgeXcnnError(f"--triton-trt must be fp16 or fp32, got {options.trt_accelerator!r}")
        lines += [
            "optimization { execution_accelerators {",
            '  gpu_execution_accelerator: [ { name: "tensorrt"',
            f'    parameters {{ key: "precision_mode" value: "{precision}" }} }} ]',
            "} }",
        ]
    # The model's metadata travels with it: clients read it back with the model configuration.
    lines.append(f"parameters {{ key: {_quoted(META_KEY)} value: {{ string_value: {_quoted(meta.to_json())} }} }}")
    return "\n".join(lines) + "\n"


def write_triton_repo(model_file: Path, meta: ModelMeta, out: Path, options: TritonOptions, *, heatmap: bool) -> Path:
    """Write the repository under ``out`` from an ONNX (onnxruntime) or an engine (tensorrt); returns the model folder.

    Refuses to mix into a folder that already holds something other than a model repository of ours.
    """
    suffix = model_file.suffix.lower()
    if options.platform == "onnxruntime" and suffix != ".onnx":
        raise BadModelFile(f"the onnxruntime platform serves an .onnx file, not {model_file.name}")
    if options.platform == "tensorrt" and suffix not in (".engine", ".plan"):
        raise BadModelFile(
            f"the tensorrt platform serves an engine built for the server's GPU, not {model_file.name}: build one "
            "there (edge-xcnn export --format engine, or trtexec) and pass it with --model"
        )
    folder = out / options.name
    if out.exists() and not out.is_dir():
        raise EdgeXcnnError(f"--out {out} is a file; a Triton model repository is a folder")
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    with atomic_output(version / PLATFORMS[options.platform][1]) as tmp:
        shutil.copyfile(model_file, tmp)
    with atomic_output(folder / "config.pbtxt") as tmp:
        tmp.write_text(config_pbtxt(meta, options, heatmap=heatmap))
    with atomic_output(folder / f"{META_KEY}.json") as tmp:
        tmp.write_text(json.dumps(json.loads(meta.to_json()), indent=2) + "\n")
    return folder


def _quoted(text: str) -> str:
    """A protobuf text-format string: UTF-8 kept as is, quotes, backslashes and line ends escaped."""
    return json.dumps(text, ensure_ascii=False)


def export_triton(
    model: Path | None,
    out: Path,
    *,
    platform: str = "onnxruntime",
    max_batch: int = 32,
    fp16: bool = False,
    overwrite: bool = False,
) -> Path:
    """``edge-xcnn export --format triton``: the repository for ``model`` (None = the shipped default).

    A checkpoint is exported to ONNX with a dynamic batch first (Triton's batching needs one); an ONNX
    file is taken as it is if its batch is dynamic; the tensorrt platform takes an engine and its
    sidecar's metadata. ``fp16`` on the onnxruntime platform asks Triton to run it through TensorRT in FP16.
    """
    import tempfile

    from edge_xcnn.checkpoint import resolve_model
    from edge_xcnn.engine_sidecar import ENGINE_SUFFIXES, read_sidecar
    from edge_xcnn.outputs import check_output

    source = resolve_model(model)
    check_output(out, overwrite=overwrite, folder=True, what="--out")
    if (out / DEFAULT_NAME).exists() and not overwrite:
        raise EdgeXcnnError(f"--out {out} already holds a model {DEFAULT_NAME}/: pass --overwrite to replace it")
    options = TritonOptions(
        platform=platform, max_batch=max_batch, trt_accelerator="fp16" if fp16 and platform == "onnxruntime" else None
    )
    suffix = source.suffix.lower()
    if platform == "tensorrt":
        if suffix not in ENGINE_SUFFIXES:
            raise BadModelFile(
                f"--platform tensorrt serves an engine built on the server's GPU, not {source.name}: build it there "
                "(edge-xcnn export --format engine) and pass it with --model"
            )
        sidecar = read_sidecar(source)
        _, high = sidecar.batch_range
        if max_batch > high:
            raise EdgeXcnnError(f"the engine takes batches up to {high}; use --max-batch {high} or less")
        return write_triton_repo(source, sidecar.meta, out, options, heatmap=sidecar.meta.arch.kind == "xcnn")
    if suffix == ".onnx":
        meta, batch_dim = _onnx_meta_and_batch(source)
        if isinstance(batch_dim, int):
            raise BadModelFile(
                f"{source} has a static batch of {batch_dim}; Triton's dynamic batching needs a dynamic one "
                "(edge-xcnn export without --batch)"
            )
        return write_triton_repo(source, meta, out, options, heatmap=meta.arch.kind == "xcnn")
    from edge_xcnn.checkpoint import read_meta
    from edge_xcnn.export.onnx_export import export_onnx

    meta = read_meta(source)
    with tempfile.TemporaryDirectory() as work:
        onnx_file = export_onnx(source, Path(work) / "model.onnx")
        return write_triton_repo(onnx_file, meta, out, options, heatmap=meta.arch.kind == "xcnn")


def _onnx_meta_and_batch(path: Path) -> tuple[ModelMeta, object]:
    import onnxruntime as ort

    from edge_xcnn.onnx_meta import parse_onnx_metadata

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own Fail/InvalidGraph types for damaged files
        raise BadModelFile(f"{path} is not an ONNX model ONNX Runtime can load ({type(e).__name__})") from e
    meta = parse_onnx_metadata(session.get_modelmeta().custom_metadata_map, str(path)).meta
    return meta, session.get_inputs()[0].shape[0]
