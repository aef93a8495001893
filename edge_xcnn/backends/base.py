"""The one interface every runtime implements; preprocessing and output checks live here once."""

from __future__ import annotations

import abc
from pathlib import Path

import numpy as np

from edge_xcnn.errors import BadModelFile, EdgeXcnnError
from edge_xcnn.meta import ModelMeta
from edge_xcnn.preprocess import Geometry, preprocess

BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")


class Backend(abc.ABC):
    """A loaded model that turns a float32 batch into ``(logits, heatmap or None)`` as numpy arrays.

    Attributes:
        meta: the model's metadata.
        name: runtime and device, for tables (``onnxruntime cpu``, ``torch cuda``, ``tensorrt``).
        precision: ``fp32``, ``fp16``, ``bf16`` or ``int8``: what the model computes in.
    """

    meta: ModelMeta
    name: str = ""
    precision: str = "fp32"

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

    def close(self) -> None:  # noqa: B027 (optional hook: most runtimes hold nothing to release)
        """Release what the runtime holds (sessions, device memory); the backend is unusable after."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_device(device: str | None) -> tuple[str | None, int]:
    """``"cuda:1"`` -> ``("cuda", 1)``, ``"cpu"`` -> ``("cpu", 0)``, None -> ``(None, 0)`` (choose the best)."""
    if device is None or device == "auto":
        return None, 0
    kind, _, index = device.strip().lower().partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise EdgeXcnnError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    return kind, int(index or 0)


def backend_for(path: Path, backend: str = "auto") -> str:
    """The runtime for ``path``: engines run in TensorRT, ONNX in ONNX Runtime, checkpoints in PyTorch."""
    from edge_xcnn.engine_sidecar import ENGINE_SUFFIXES

    if backend not in BACKENDS:
        raise EdgeXcnnError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    suffix = path.suffix.lower()
    kind = "tensorrt" if suffix in ENGINE_SUFFIXES else "onnxruntime" if suffix == ".onnx" else "torch"
    if backend in ("auto", kind):
        return kind
    runs = {"tensorrt": "TensorRT engines (.engine)", "onnxruntime": ".onnx files",
            "torch": "checkpoints (.safetensors)"}  # fmt: skip
    how = {"tensorrt": "edge-xcnn export --format engine", "onnxruntime": "edge-xcnn export",
           "torch": "the checkpoint"}  # fmt: skip
    raise BadModelFile(f"the {backend} backend runs {runs[backend]}, not {path.name}: use {how[backend]}")


def open_backend(
    model: str | Path | None,
    backend: str = "auto",
    device: str | None = None,
    precision: str | None = None,
    *,
    providers: list[str] | None = None,
    threads: int | None = None,
) -> Backend:
    """Load ``model`` (checkpoint, ONNX or engine; None = the shipped default) in a runtime.

    Args:
        model: the model file.
        backend: ``auto`` (by file type: engine -> tensorrt, ONNX -> onnxruntime, checkpoint -> torch),
            or one of ``onnxruntime``, ``torch``, ``tensorrt``.
        device: ``cpu``, ``cuda`` or ``cuda:N``; None = the best available (CUDA when there is one).
        precision: what to compute in. ONNX files and engines have their own precision (asking for
            another one is an error naming the file to use instead); the torch backend runs ``fp32``,
            ``fp16`` or ``bf16``. None = the file's own (fp32 for checkpoints).
        providers: ONNX Runtime execution providers, in order (default: from ``device``).
        threads: CPU threads (ONNX Runtime intra-op threads; torch's thread count for the torch backend).

    Example:
        >>> backend = open_backend("model.int8.onnx")  # doctest: +SKIP
        >>> logits, heatmap = backend.infer(batch)  # doctest: +SKIP
    """
    from edge_xcnn.checkpoint import resolve_model

    path = resolve_model(model)
    chosen = backend_for(path, backend)
    if providers and chosen != "onnxruntime":
        raise BadModelFile("providers apply to the onnxruntime backend only")
    if chosen == "onnxruntime":
        from edge_xcnn.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, providers=providers, threads=threads, device=device, precision=precision)
    if chosen == "tensorrt":
        from edge_xcnn.backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path, device=device, precision=precision)
    from edge_xcnn.backends.torch_backend import TorchBackend

    return TorchBackend(path, device=device, precision=precision or "fp32", threads=threads)
