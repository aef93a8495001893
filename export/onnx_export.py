"""Checkpoint to ONNX: outputs ``logits`` and ``heatmap``, the model's metadata inside, fully checked.

The graph takes ``images`` (float32 N x C x H x W in [0, 1]); mean/std normalization is inside it, so
every runtime only resizes and divides by 255. The metadata travels in ``metadata_props["edge_xcnn"]``.

An XCNN whose classifier reads the map alone also carries that classifier as an ONNX model of its
own (``maps`` N x 1 x H x W raw maps in, ``map_logits`` out), serialized and base64-encoded under
``metadata_props["edge_xcnn.map_classifier"]``: what the runner's box check asks about each box
(``edge_xcnn.box_evidence``). Beside the graph rather than in it: a second input would have to be fed
on every call by every consumer (TensorRT, Triton, DeepStream, users' own code), and ONNX Runtime runs
every node of a graph whatever outputs are asked for (measured: asking the classifier about two maps
cost a whole generator pass on the dummy image, 0.85 ms against 0.78 for a real frame). INT8 and FP16
exports copy the metadata, so their box check reads the FP32 classifier.
"""

from __future__ import annotations

import base64
import logging
import warnings
from pathlib import Path

from edge_xcnn.checkpoint import load_model
from edge_xcnn.errors import MissingDependency
from edge_xcnn.fileio import atomic_output
from edge_xcnn.meta import MAP_CLASSIFIER_KEY, META_KEY, PRECISION_KEY
from edge_xcnn.onnx_meta import INPUT_NAME, MAPS_INPUT, MAPS_OUTPUT

DEFAULT_OPSET = 18
MAX_BATCH = 1024


def export_onnx(model: Path | None, out: Path, *, batch: int | None = None, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``out`` from a checkpoint (None = the shipped default); ``batch`` None = dynamic batch."""
    try:
        import onnx  # present, or say which extra to install
        import torch
    except ImportError as e:
        raise MissingDependency(e.name or "onnx", "export") from e
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    net, meta = load_model(model, "cpu")
    example = torch.rand(batch or 2, meta.channels, *meta.input_size)
    outputs = ["logits", "heatmap"] if meta.arch.kind == "xcnn" else ["logits"]
    dynamic = None if batch else {"x": {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}}
    proto = _export(net, (example,), [INPUT_NAME], outputs, dynamic, opset)
    metadata = {META_KEY: meta.to_json(), PRECISION_KEY: "fp32"}
    if has_map_classifier(net):
        # Boxes per call vary with the frames: the classifier's batch is dynamic even with --batch.
        maps = torch.rand(3, 1, *meta.input_size) * 2 - 1
        boxes = {"x": {0: torch.export.Dim("boxes", min=1, max=MAX_BATCH)}}
        head = _export(net.classifier, (maps,), [MAPS_INPUT], [MAPS_OUTPUT], boxes, opset)
        onnx.checker.check_model(head, full_check=True)
        metadata[MAP_CLASSIFIER_KEY] = base64.b64encode(head.SerializeToString()).decode("ascii")
    return save_checked_onnx(proto, out, metadata)


def _export(net: object, example: tuple, inputs: list[str], outputs: list[str], dynamic: object, opset: int) -> object:
    """One module to an ONNX ModelProto with torch's dynamo exporter, its chatter silenced."""
    import torch

    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # its chatter (missing torchvision ops, decompositions)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                net,
                example,
                input_names=inputs,
                output_names=outputs,
                dynamic_shapes=dynamic,
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
    finally:
        exporter_log.setLevel(level)
    return program.model_proto


def has_map_classifier(net: object) -> bool:
    """An XCNN whose classifier sees the map alone (not the paper's Fig. 7 variant, not a plain classifier)."""
    return getattr(net, "generator", None) is not None and getattr(net, "fig7", True) is None


def save_checked_onnx(model: object, out: Path, metadata: dict[str, str]) -> Path:
    """Replace ``model``'s metadata_props with ``metadata``, run onnx's full check, write ``out`` atomically.

    Every ONNX edge-xcnn writes (FP32, FP16, INT8 Q/DQ) goes through here, so each one describes itself
    the same way and none is written unchecked.
    """
    import onnx

    del model.metadata_props[:]  # type: ignore[attr-defined]
    for key, value in metadata.items():
        entry = model.metadata_props.add()  # type: ignore[attr-defined]
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    with atomic_output(out) as tmp:
        onnx.save_model(model, str(tmp))
    return out
