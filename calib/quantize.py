"""FP32 ONNX to a Q/DQ INT8 ONNX that TensorRT's parser accepts and ONNX Runtime runs on CPUs.

TensorRT wants explicit quantization: symmetric (zero points 0), per-channel weights on axis 0,
per-tensor activations. ONNX Runtime's ``quantize_static`` writes exactly that with QDQ format and
the symmetric options; the model's metadata is copied onto the result.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_xcnn.errors import EdgeXcnnError, MissingDependency
from edge_xcnn.export.onnx_export import save_checked_onnx
from edge_xcnn.meta import PRECISION_KEY
from edge_xcnn.onnx_meta import INPUT_NAME

METHODS = ("entropy", "percentile", "minmax")
DEFAULT_METHOD = "percentile"
CALIBRATION_BATCH = 32
# How each method's calibrator is set up. ONNX Runtime's quantize_static builds the entropy calibrator
# with 128 histogram bins for 128 quantized bins, which leaves a single candidate threshold: the full
# range, i.e. min-max. So the ranges are computed here, with TensorRT's entropy setting (2048 bins
# into 128), and handed to quantize_static through its calibration cache.
CALIBRATOR_OPTIONS: dict[str, dict[str, float]] = {
    "entropy": {"num_bins": 2048, "num_quantized_bins": 128},
    "percentile": {"num_bins": 2048, "percentile": 99.999},
    "minmax": {},
}


def calibrator_options(method: str) -> dict[str, object]:
    """``create_calibrator``'s extra options for ``method`` (symmetric ranges, as TensorRT wants)."""
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")
    return {"symmetric": True, **CALIBRATOR_OPTIONS[method]}


# Normalizations that stay in float: the IBN generator's instance norm (with the Mul/Add of its affine
# that follow it) and its batch norm on the other half of the channels (after a Split, so the
# pre-processing cannot fold it into the conv). Quantized, ONNX Runtime 1.32 wrote a model it then
# refused to load with its S8->U8 pass ("Attempt to replace the existing tensor", session 13); with
# the norms alone in float the default model lost 0.9 point of val top-1 (box agreement 98.0%), with
# the affine too 0.6 (98.5%). Every conv stays INT8.
FLOAT_NORMS = frozenset({"InstanceNormalization", "BatchNormalization"})
_AFFINE_AFTER_NORM = frozenset({"Reshape", "Mul", "Add"})


def float_norm_nodes(graph: Any) -> list[str]:
    """The nodes kept in float: ``FLOAT_NORMS``, and the Reshape/Mul/Add chain after each instance norm."""
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    kept: list[str] = []
    for node in graph.node:
        if node.op_type not in FLOAT_NORMS:
            continue
        kept.append(node.name)
        chain = list(consumers.get(node.output[0], [])) if node.op_type == "InstanceNormalization" else []
        while chain:
            after = chain.pop()
            if after.op_type in _AFFINE_AFTER_NORM and after.name not in kept:
                kept.append(after.name)
                chain += consumers.get(after.output[0], [])
    return kept


def quantize_int8(
    fp32: Path,
    out: Path,
    frames: np.ndarray | None,
    method: str = DEFAULT_METHOD,
    ranges: Path | None = None,
    keep_float: Sequence[str] = (),
) -> Path:
    """Calibrate activation ranges on ``frames`` (N x C x H x W float32) and write the Q/DQ model.

    With ``ranges``, the calibrated ranges are saved there (ONNX Runtime's calibration cache format), and
    when that file exists they are read back instead (``frames`` may then be None). Nodes named in
    ``keep_float`` get no Q/DQ pair: they stay in floating point (TensorRT runs them in FP16/FP32).
    """
    try:
        import onnx
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.calibrate import create_calibrator
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        raise MissingDependency(e.name or "onnx", "export") from e
    try:
        from onnxruntime.quantization.calibrate import save_tensors_data
    except ImportError as e:
        raise EdgeXcnnError("INT8 calibration needs onnxruntime >= 1.32: pip install -U onnxruntime") from e
    options = calibrator_options(method)
    calibrate = {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
                 "minmax": CalibrationMethod.MinMax}[method]  # fmt: skip
    if frames is None and (ranges is None or not ranges.is_file()):
        raise ValueError("quantize_int8 needs frames unless saved ranges exist")

    class Frames(CalibrationDataReader):
        def __init__(self, batch: np.ndarray) -> None:
            self.batches = iter(batch[i : i + CALIBRATION_BATCH] for i in range(0, len(batch), CALIBRATION_BATCH))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch, np.float32)}

    with tempfile.TemporaryDirectory() as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        cache = ranges if ranges is not None else Path(work) / "ranges.json"
        if not cache.is_file():
            calibrator = create_calibrator(
                prepared, None, augmented_model_path=str(Path(work) / "augmented.onnx"),
                calibrate_method=calibrate, extra_options=options,
            )  # fmt: skip
            with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints its progress
                calibrator.collect_data(Frames(frames))
                tensors = calibrator.compute_data()
            save_tensors_data(tensors, cache)  # atomic (temporary file + rename)
            if ranges is not None:  # its temporary file was 0600; a saved ranges file is an ordinary one
                umask = os.umask(0)
                os.umask(umask)
                cache.chmod(0o666 & ~umask)
        quantized = Path(work) / "int8.onnx"
        float_norms = float_norm_nodes(onnx.load(str(prepared), load_external_data=False).graph)
        quantize_static(
            str(prepared),
            str(quantized),
            None,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=calibrate,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
            calibration_cache_path=str(cache),
            nodes_to_exclude=[*keep_float, *float_norms],
        )
        model = onnx.load(str(quantized))
        source = {p.key: p.value for p in onnx.load(str(fp32), load_external_data=False).metadata_props}
        save_checked_onnx(model, out, {**source, PRECISION_KEY: "int8"})
    return out


def keep_float_nodes(fp32: Path) -> list[str]:
    """The nodes the INT8 export keeps in float by default: the heatmap's head and the classifier's ends.

    The heatmap's head is its last conv and what follows it; the classifier's ends are its first
    conv, which reads the map, and the layer that writes ``logits``.

    The map is thresholded, so a small error in its last layer moves a box edge; every other layer's
    error is damped by the layers after it (measured: ``benchmarks/int8_sensitivity.py``).
    Found by walking up from the ``heatmap`` output through non-Conv ops (Tanh, Resize) to the first
    Conv on each path, all of them kept; models without a heatmap output keep everything quantized.
    The classifier's ends (session 14, chosen on the val split, 1,000 images, shipped model): top-1
    drop 0.6 point with the heatmap's head alone, 0.2 with the classifier's first conv also float,
    0.5 with its last layer, 0.1 with both (box agreement 98.5% in all four; the generator's first
    conv as well: 97.7%). Both are small (16 channels of one map at half size; 64 x K), so the cost
    is a few per cent of the model's operations.
    """
    import onnx

    graph = onnx.load(str(fp32), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    found: list[str] = []
    pending = [o.name for o in graph.output if o.name == "heatmap"]
    seen: set[str] = set()
    while pending:
        node = producer.get(pending.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        found.append(node.name)
        if node.op_type != "Conv":
            pending += [i for i in node.input[:1] if i]  # the data input (Resize's scales etc. are not)
    if found:
        found += _classifier_ends(graph, producer)
    return found


def _classifier_ends(graph: Any, producer: dict[str, Any]) -> list[str]:
    """The first Conv downstream of ``heatmap`` (through pooling and the like) and the layer writing ``logits``."""
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    ends: list[str] = []
    pending = list(consumers.get("heatmap", []))
    while pending:
        node = pending.pop(0)
        if node.op_type == "Conv":
            ends.append(node.name)
            break
        if node.op_type in ("AveragePool", "MaxPool", "Identity", "Reshape"):
            pending += consumers.get(node.output[0], [])
    last = producer.get("logits")
    if last is not None and last.op_type in ("Gemm", "MatMul"):
        ends.append(last.name)
    return ends
