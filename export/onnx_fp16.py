"""FP32 ONNX to FP16 ONNX with FP32 inputs and outputs: the strongly typed TensorRT route's FP16.

TensorRT >= 10.12 builds strongly typed networks, which take their precision from the ONNX: FP16
means FP16 tensors in the graph. The conversion is ONNX Runtime's ``float16`` tool (a maintained copy
of onnxconverter-common's, which also keeps Resize's scales in FP32), with ``keep_io_types`` so the
graph still takes and returns float32 (a Cast at each end) and every runtime feeds it the same arrays.
Ops that lose too much in FP16 stay FP32 (the tool's block list). The model's metadata is copied over.
"""

from __future__ import annotations

import collections
from pathlib import Path

from edge_xcnn.errors import BadModelFile, MissingDependency
from edge_xcnn.export.onnx_export import save_checked_onnx
from edge_xcnn.meta import PRECISION_KEY
from edge_xcnn.onnx_meta import parse_onnx_metadata


def convert_fp16(fp32: Path, out: Path) -> Path:
    """Write ``out``, the FP16 version of the edge-xcnn FP32 export ``fp32``, fully checked."""
    try:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as e:
        raise MissingDependency(e.name or "onnx", "export") from e
    model = onnx.load(str(fp32))
    props = {p.key: p.value for p in model.metadata_props}
    precision = parse_onnx_metadata(props, str(fp32)).precision  # the one reader (edge_xcnn.onnx_meta)
    if precision != "fp32":
        raise BadModelFile(f"{fp32} is a {precision} export; FP16 is made from the FP32 one")
    half = convert_float_to_float16(model, keep_io_types=True)
    _sort_nodes(half.graph)  # the tool appends its input Casts after their consumers
    return save_checked_onnx(half, out, {**props, PRECISION_KEY: "fp16"})


def _sort_nodes(graph) -> None:  # graph: onnx.GraphProto (onnx is imported lazily)
    """Order ``graph.node`` topologically (Kahn's algorithm, ready nodes in their original order)."""
    nodes = list(graph.node)
    produced_by = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    waiting_on = [0] * len(nodes)
    users = collections.defaultdict(list)
    for i, node in enumerate(nodes):
        for name in set(node.input):
            if name in produced_by:
                waiting_on[i] += 1
                users[produced_by[name]].append(i)
    ready = collections.deque(i for i, n in enumerate(waiting_on) if n == 0)
    order = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for j in users[i]:
            waiting_on[j] -= 1
            if waiting_on[j] == 0:
                ready.append(j)
    if len(order) != len(nodes):
        raise RuntimeError("the FP16 graph has a cycle")
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)
