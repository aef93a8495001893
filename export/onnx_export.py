"""Checkpoint to ONNX: outputs ``logits`` and ``heatmap``, the model's metadata inside, fully checked.

The graph takes ``images`` (float32 N x C x H x W in [0, 1]); mean/std normalization is inside it, so
every runtime only resizes and divides by 255. The metadata travels in ``metadata_props["edge_xcnn"]``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from edge_xcnn.checkpoint import load_model
from edge_xcnn.errors import MissingDependency
from edge_xcnn.fileio import atomic_output
from edge_xcnn.meta import META_KEY, PRECISION_KEY

DEFAULT_OPSET = 18
MAX_BATCH = 1024


def export_onnx(model: Path | None, out: Path, *, batch: int | None = None, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``out`` from a checkpoint (None = the shipped default); ``batch`` None = dynamic batch."""
    try:
        import onnx  # noqa: F401 - present, or say which extra to install
        import torch
    except ImportError as e:
        raise MissingDependency(e.name or "onnx", "export") from e
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    net, meta = load_model(model, "cpu")
    example = torch.rand(batch or 2, meta.channels, *meta.input_size)
    outputs = ["logits", "heatmap"] if meta.arch.kind == "xcnn" else ["logits"]
    dynamic = None if batch else {"x": {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}}
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # its chatter (missing torchvision ops, decompositions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            net,
            (example,),
            input_names=["images"],
            output_names=outputs,
            dynamic_shapes=dynamic,
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    exporter_log.setLevel(level)
    proto = program.model_proto
    return save_checked_onnx(proto, out, {META_KEY: meta.to_json(), PRECISION_KEY: "fp32"})


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
