"""The one reader of an edge-xcnn ONNX file's self-description: metadata, precision, graph input.

Every place that opens an ONNX (ONNX Runtime backend, TensorRT build, compare, export steps) hands
the file's ``metadata_props`` here, however it read them (onnx protobuf or an ORT session), so the
checks and the error lines are the same everywhere. The precision is the stored key, never guessed
from the graph.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_xcnn.errors import BadModelFile, MissingDependency
from edge_xcnn.meta import MAP_CLASSIFIER_KEY, META_KEY, PRECISION_KEY, ModelMeta

PRECISIONS = ("fp32", "fp16", "int8")
INPUT_NAME = "images"
# The classifier alone, carried in the metadata (MAP_CLASSIFIER_KEY) by exports since session 14: raw
# maps in, their logits out, for the runner's box check (``edge_xcnn.box_evidence``). Optional: a file
# without it runs, unchecked.
MAPS_INPUT, MAPS_OUTPUT = "maps", "map_logits"


@dataclass(frozen=True)
class OnnxMeta:
    """What an edge-xcnn ONNX says about itself."""

    meta: ModelMeta
    precision: str  # fp32, fp16 (FP32 inputs and outputs) or int8 (Q/DQ)
    map_classifier: bytes | None = None  # the classifier alone, a serialized ONNX model (the box check's)


def parse_onnx_metadata(props: Mapping[str, str], name: str) -> OnnxMeta:
    """Metadata and precision from ``metadata_props``; a foreign or damaged entry is a bad model file."""
    if META_KEY not in props:
        raise BadModelFile(f"{name} is an ONNX model but not an edge-xcnn export (no '{META_KEY}' metadata)")
    meta = ModelMeta.from_json(props[META_KEY])
    precision = props.get(PRECISION_KEY, "fp32")
    if precision not in PRECISIONS:
        raise BadModelFile(f"{name}: unknown precision {precision!r} in its metadata (expected one of {PRECISIONS})")
    head = props.get(MAP_CLASSIFIER_KEY)
    try:
        map_classifier = base64.b64decode(head, validate=True) if head else None
    except ValueError as e:
        raise BadModelFile(f"{name}: its '{MAP_CLASSIFIER_KEY}' metadata is not base64") from e
    return OnnxMeta(meta, precision, map_classifier)


def check_graph(
    meta: ModelMeta,
    inputs: Sequence[tuple[str, Sequence[object], str]],
    outputs: Sequence[str],
    name: str,
) -> None:
    """Refuse a graph whose input or outputs disagree with its metadata, at load instead of at the first frame.

    Args:
        meta: the file's metadata.
        inputs: (name, shape, element type) of each graph input; dims may be ints, strings (symbolic) or None.
        outputs: the graph's output names.
        name: the file, for the message.
    """
    if len(inputs) != 1 or inputs[0][0] != INPUT_NAME:
        got = ", ".join(i[0] for i in inputs) or "none"
        raise BadModelFile(f"{name}: its graph takes {got}, not the one '{INPUT_NAME}' input of an edge-xcnn export")
    _, shape, dtype = inputs[0]
    if str(dtype).lower() not in ("tensor(float)", "float", "float32"):
        raise BadModelFile(f"{name}: input '{INPUT_NAME}' is {dtype}, an edge-xcnn export takes float32")
    expected = (meta.channels, *meta.input_size)
    dims = list(shape)
    fixed = [d if isinstance(d, int) and d > 0 else None for d in dims[1:]]
    if len(dims) != 4 or any(f is not None and f != e for f, e in zip(fixed, expected, strict=True)):
        shown = " x ".join(str(d) for d in dims)
        raise BadModelFile(f"{name}: graph input is {shown} but its metadata says N x {' x '.join(map(str, expected))}")
    if "logits" not in outputs:
        raise BadModelFile(f"{name}: its graph has no 'logits' output ({', '.join(outputs)}): not an edge-xcnn export")


def read_onnx_file(path: str | Path) -> OnnxMeta:
    """Metadata and precision of an ONNX file on disk, read with ``onnx`` (no session), graph checked too."""
    try:
        import onnx
    except ImportError as e:
        raise MissingDependency("onnx", "export") from e
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends for damaged files
        raise BadModelFile(f"{path} is not an ONNX model ({type(e).__name__})") from e
    described = parse_onnx_metadata({p.key: p.value for p in model.metadata_props}, str(path))
    initializers = {i.name for i in model.graph.initializer}
    inputs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in tensor.shape.dim]
        inputs.append((value.name, dims, onnx.TensorProto.DataType.Name(tensor.elem_type)))
    check_graph(described.meta, inputs, [o.name for o in model.graph.output], str(path))
    return described
