"""Which runtime opens a model file, and opening it: ``open_backend`` (imports the backends lazily)."""

from __future__ import annotations

from pathlib import Path

from edge_xcnn.backends.base import Backend
from edge_xcnn.errors import BadModelFile, EdgeXcnnError

BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt", "triton")


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
    server: str | None = None,
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
        server: ``triton`` backend: the KServe v2 server, ``host:8001[/model]`` (gRPC) or ``http://host:8000``;
            ``model`` is then optional, a local copy of the served model for its metadata.

    Example:
        >>> backend = open_backend("model.int8.onnx")  # doctest: +SKIP
        >>> logits, heatmap = backend.infer(batch)  # doctest: +SKIP
    """
    from edge_xcnn.checkpoint import resolve_model

    if backend == "triton" or server is not None:
        if backend != "triton" or server is None:
            raise EdgeXcnnError("--server goes with --backend triton, and --backend triton needs --server HOST:PORT")
        from edge_xcnn.backends.triton_backend import TritonBackend

        return TritonBackend(server, resolve_model(model) if model is not None else None)
    path = resolve_model(model, prefer_onnx=model is None and backend in ("auto", "onnxruntime"))
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
