"""Checkpoint to ONNX: outputs ``logits`` and ``heatmap``, the model's metadata inside, fully checked.

The graph takes ``images`` (float32 N x C x H x W in [0, 1]); mean/std normalization is inside it, so
every runtime only resizes and divides by 255. The metadata travels in ``metadata_props["edge_xcnn"]``.

An XCNN whose classifier reads the map alone also gets the classifier as a branch of its own: input
``maps`` (N x 1 x H x W raw maps), output ``map_logits``, the same weights (stored twice: see below). The runner's
box check asks it about each box's evidence (``edge_xcnn.box_evidence``); a run that does not ask
feeds one zero map and requests only ``logits`` and ``heatmap``, and ONNX Runtime leaves the branch
out (measured: the same time per batch as the graph without it).
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path

from edge_xcnn.checkpoint import load_model
from edge_xcnn.errors import MissingDependency
from edge_xcnn.fileio import atomic_output
from edge_xcnn.meta import META_KEY, PRECISION_KEY
from edge_xcnn.onnx_meta import INPUT_NAME, MAPS_INPUT, MAPS_OUTPUT

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
    dynamic: dict[str, dict[int, object]] | None = (
        None if batch else {"x": {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}}
    )
    inputs: tuple[torch.Tensor, ...] = (example,)
    if has_map_classifier(net):
        net = _with_map_classifier()(net)
        inputs = (example, torch.rand(3, 1, *meta.input_size) * 2 - 1)
        outputs.append(MAPS_OUTPUT)
        # Boxes per call vary with the frames, so ``maps`` has a dynamic first dim even with --batch.
        boxes = torch.export.Dim("boxes", min=1, max=MAX_BATCH)
        dynamic = {"images": None if dynamic is None else dynamic["x"], "maps": {0: boxes}}
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # its chatter (missing torchvision ops, decompositions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            net,
            inputs,
            input_names=[INPUT_NAME, MAPS_INPUT][: len(inputs)],
            output_names=outputs,
            dynamic_shapes=dynamic,
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    exporter_log.setLevel(level)
    proto = program.model_proto
    return save_checked_onnx(proto, out, {META_KEY: meta.to_json(), PRECISION_KEY: "fp32"})


def has_map_classifier(net: object) -> bool:
    """An XCNN whose classifier sees the map alone (not the paper's Fig. 7 variant, not a plain classifier)."""
    return getattr(net, "generator", None) is not None and getattr(net, "fig7", True) is None


def _with_map_classifier() -> type:
    from torch import nn  # here, not at the top: this module imports torch only when it exports

    class WithMapClassifier(nn.Module):
        """The XCNN, plus its classifier on maps given directly: ``(images, maps) -> (logits, heatmap, map_logits)``."""

        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net
            # A copy, not the same module: with its weights shared, the exporter left the classifier's
            # batch norms unfolded on both paths, and the FP16 export's logits moved 0.059 from FP32
            # instead of 0.037 (128 test images).
            self.map_classifier = copy.deepcopy(net.classifier)

        def forward(self, images: object, maps: object) -> tuple[object, object, object]:
            logits, heatmap = self.net(images)
            return logits, heatmap, self.map_classifier(maps)

    return WithMapClassifier


def has_maps_branch(path: Path) -> bool:
    """Whether the ONNX at ``path`` takes ``maps`` (the classifier's own branch)."""
    import onnx

    return MAPS_INPUT in [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]


def strip_map_classifier(src: Path, out: Path) -> Path:
    """Write ``out``: ``src`` without its ``maps`` branch (``images`` in, ``logits``/``heatmap`` out).

    For consumers that take one input only: TensorRT's engines (their sidecar describes one input) and
    Triton's model configuration. The runner then runs them without the box check, and says so.
    """
    import onnx
    from onnx.utils import Extractor

    model = onnx.load(str(src))
    outputs = [o.name for o in model.graph.output if o.name != MAPS_OUTPUT]
    stripped = Extractor(model).extract_model([INPUT_NAME], outputs)
    stripped.graph.name = model.graph.name
    stripped.ir_version = model.ir_version
    del stripped.opset_import[:]
    stripped.opset_import.extend(model.opset_import)
    return save_checked_onnx(stripped, out, {p.key: p.value for p in model.metadata_props})


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
