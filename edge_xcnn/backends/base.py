"""The one interface every runtime implements; preprocessing and output checks live here once."""

from __future__ import annotations

import abc
from pathlib import Path

import numpy as np

from edge_xcnn.errors import BadModelFile
from edge_xcnn.meta import ModelMeta
from edge_xcnn.preprocess import Geometry, preprocess


class Backend(abc.ABC):
    """A loaded model that turns a float32 batch into ``(logits, heatmap or None)`` as numpy arrays."""

    meta: ModelMeta

    @abc.abstractmethod
    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Run the runtime on a checked N x C x H x W float32 batch."""

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits (N x K) and raw heatmap (N x 1 x H x W, polarity not applied) for ``batch``."""
        expected = (self.meta.channels, *self.meta.input_size)
        if batch.ndim != 4 or batch.shape[1:] != expected:
            raise ValueError(f"batch must be N x {' x '.join(map(str, expected))}, got {batch.shape}")
        logits, heatmap = self._run(np.ascontiguousarray(batch, dtype=np.float32))
        if logits.shape != (len(batch), self.meta.num_classes):
            raise RuntimeError(f"runtime returned logits of shape {logits.shape}")
        return logits, heatmap

    def predict(self, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None, list[Geometry]]:
        """Preprocess frames exactly as at training time and infer; returns the geometries too."""
        prepared = [preprocess(frame, self.meta) for frame in frames]
        logits, heatmap = self.infer(np.stack([p[0] for p in prepared]))
        return logits, heatmap, [p[1] for p in prepared]


def open_backend(model: str | Path | None, backend: str = "auto", device: str | None = None) -> Backend:
    """Load ``model`` (checkpoint or ONNX; None = the shipped default) in the chosen runtime.

    ``auto``: ONNX files run in ONNX Runtime, checkpoints in PyTorch.
    """
    from edge_xcnn.checkpoint import resolve_model

    path = resolve_model(model)
    is_onnx = path.suffix.lower() == ".onnx"
    chosen = ("onnxruntime" if is_onnx else "torch") if backend == "auto" else backend
    if chosen == "onnxruntime":
        if not is_onnx:
            raise BadModelFile(f"onnxruntime runs .onnx files; export {path} first (edge-xcnn export)")
        from edge_xcnn.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path)
    if chosen == "torch":
        if is_onnx:
            raise BadModelFile(f"the torch backend runs checkpoints (.safetensors), not {path}")
        from edge_xcnn.backends.torch_backend import TorchBackend

        return TorchBackend(path, device=device)
    raise ValueError(f"backend must be auto, onnxruntime or torch, got {backend!r}")
