"""TensorRT engines (FP32/FP16/INT8) through the TensorRT 10 name-based API; no torch needed.

The thin layer that touches ``tensorrt`` and CUDA; everything it decides on (is this engine ours,
intact, built here?) comes from :mod:`edge_xcnn.engine_sidecar`, which is tested without a GPU. This
module itself needs TensorRT and a GPU and is not exercised by the test suite. Device memory comes from
cuda-python (``pip install cuda-python``) or, where that is missing, from PyTorch's CUDA allocator.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edge_xcnn.backends.base import Backend, parse_device
from edge_xcnn.engine_sidecar import GpuInfo, TrtRuntime, engine_problem, read_sidecar
from edge_xcnn.errors import BadModelFile, EdgeXcnnError

NO_TENSORRT = (
    "this needs TensorRT's Python package 'tensorrt', which is not installed here: on a Jetson it comes with "
    "JetPack (apt install python3-libnvinfer), on other NVIDIA GPUs pip install tensorrt"
)


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or one line saying how to get it."""
    try:
        import tensorrt
    except ImportError as e:
        raise EdgeXcnnError(NO_TENSORRT) from e
    return tensorrt


class CudaPython:
    """Device memory and a stream through cuda-python's runtime API (``cudaMalloc``, ``cudaMemcpyAsync``)."""

    def __init__(self, cudart: ModuleType, index: int) -> None:
        self.rt = cudart
        count = self._call(cudart.cudaGetDeviceCount(), "no CUDA GPU is visible")
        if index >= count:
            raise EdgeXcnnError(f"CUDA device {index} does not exist here ({count} visible)")
        self._call(cudart.cudaSetDevice(index))
        props = self._call(cudart.cudaGetDeviceProperties(index))
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        self.gpu = GpuInfo(name.rstrip("\x00").strip(), f"{props.major}.{props.minor}")
        self.stream = self._call(cudart.cudaStreamCreate())
        self.handle = self.stream
        self.allocations: list[int] = []

    def _call(self, result: tuple, problem: str = "") -> Any:
        err, *rest = result
        if err != self.rt.cudaError_t.cudaSuccess:
            if problem:  # a state of the machine the user should hear about, not a bug
                raise EdgeXcnnError(f"{problem} ({err})")
            raise RuntimeError(f"CUDA error {err}")
        return rest[0] if len(rest) == 1 else None

    def alloc(self, nbytes: int) -> int:
        pointer = int(self._call(self.rt.cudaMalloc(max(nbytes, 1))))
        self.allocations.append(pointer)
        return pointer

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.rt.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, kind, self.stream))

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.rt.cudaMemcpyAsync(array.ctypes.data, pointer, array.nbytes, kind, self.stream))

    def sync(self) -> None:
        self._call(self.rt.cudaStreamSynchronize(self.stream))

    def close(self) -> None:
        for pointer in self.allocations:
            self.rt.cudaFree(pointer)
        self.allocations = []
        self.rt.cudaStreamDestroy(self.stream)


class TorchCuda:
    """The same through PyTorch's CUDA allocator and a side stream, for machines without cuda-python."""

    def __init__(self, torch: ModuleType, index: int) -> None:
        if not torch.cuda.is_available():
            raise EdgeXcnnError("no CUDA GPU is visible (PyTorch sees none)")
        if index >= torch.cuda.device_count():
            raise EdgeXcnnError(f"CUDA device {index} does not exist here ({torch.cuda.device_count()} visible)")
        self.torch = torch
        self.device = torch.device("cuda", index)
        props = torch.cuda.get_device_properties(self.device)
        self.gpu = GpuInfo(props.name, f"{props.major}.{props.minor}")
        self.stream = torch.cuda.Stream(self.device)
        self.handle = self.stream.cuda_stream
        self.buffers: dict[int, Any] = {}

    def alloc(self, nbytes: int) -> int:
        buffer = self.torch.empty(max(nbytes, 1), dtype=self.torch.uint8, device=self.device)
        self.buffers[buffer.data_ptr()] = buffer
        return buffer.data_ptr()

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        with self.torch.cuda.stream(self.stream):
            source = self.torch.from_numpy(array.reshape(-1).view(np.uint8))
            self.buffers[pointer][: array.nbytes].copy_(source)

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        with self.torch.cuda.stream(self.stream):
            array.reshape(-1).view(np.uint8)[:] = self.buffers[pointer][: array.nbytes].cpu().numpy()

    def sync(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self.buffers = {}


def open_cuda(index: int) -> CudaPython | TorchCuda:
    """Device memory on GPU ``index``: cuda-python when installed, else PyTorch with CUDA, else one line."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError:
            cudart = None
    if cudart is not None:
        return CudaPython(cudart, index)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is None or not torch.cuda.is_available():
        raise EdgeXcnnError(
            "the TensorRT backend needs a CUDA GPU and cuda-python for device memory "
            "(pip install 'edge-xcnn[tensorrt]')"
        )
    return TorchCuda(torch, index)


def probe_tensorrt(device: str | None = None) -> tuple[ModuleType, CudaPython | TorchCuda, TrtRuntime]:
    """TensorRT, device memory on the chosen GPU, and what they are; one clear line when either is missing."""
    kind, index = parse_device(device)
    if kind == "cpu":
        raise EdgeXcnnError("TensorRT runs on NVIDIA GPUs, not with --device cpu")
    trt = import_tensorrt()
    cuda = open_cuda(index)
    return trt, cuda, TrtRuntime(trt.__version__, cuda.gpu)


class TensorRTBackend(Backend):
    """A serialized engine and its sidecar, run with ``set_input_shape``/``set_tensor_address``/``execute_async_v3``.

    Batches larger than the engine's profile are split; smaller than its minimum (static engines) padded.
    """

    def __init__(self, path: Path, device: str | None = None, precision: str | None = None) -> None:
        self.sidecar = read_sidecar(path)
        self.meta = self.sidecar.meta
        self.precision = self.sidecar.precision
        if precision not in (None, self.precision):
            raise EdgeXcnnError(
                f"{path.name} is a {self.precision} engine; for {precision} build one with "
                f"edge-xcnn export --format engine --{precision}"
            )
        trt, self.cuda, here = probe_tensorrt(device)
        problem = engine_problem(path, self.sidecar, here)
        if problem:
            raise BadModelFile(problem)
        self.name = "tensorrt" + ("" if self.sidecar.dla_core is None else f" dla{self.sidecar.dla_core}")
        logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(logger)
        if self.sidecar.dla_core is not None:
            self.runtime.DLA_core = self.sidecar.dla_core
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BadModelFile(f"TensorRT could not deserialize {path} (see the TensorRT log above)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if inputs != [self.sidecar.input_name] or not set(self.sidecar.outputs.values()) <= set(names):
            raise BadModelFile(f"{path}: the engine's tensors {names} do not match its sidecar")
        self.input_name = self.sidecar.input_name
        self.outputs = dict(self.sidecar.outputs)
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.min_batch, self.max_batch = self.sidecar.batch_range
        # Buffers for the largest batch, bound once: every call only sets the input shape.
        self.context.set_input_shape(self.input_name, tuple(self.sidecar.shapes["max"]))
        self.pointers = {}
        for name in names:
            shape = tuple(self.context.get_tensor_shape(name))
            self.pointers[name] = self.cuda.alloc(int(np.prod(shape)) * self.dtypes[name].itemsize)
            self.context.set_tensor_address(name, self.pointers[name])

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        parts = [self._run_chunk(batch[i : i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
        logits = np.concatenate([p["logits"] for p in parts])
        heatmap = np.concatenate([p["heatmap"] for p in parts]) if "heatmap" in self.outputs else None
        return logits, heatmap

    def _run_chunk(self, chunk: np.ndarray) -> dict[str, np.ndarray]:
        count = len(chunk)
        if count < self.min_batch:
            chunk = np.concatenate([chunk, np.zeros((self.min_batch - count, *chunk.shape[1:]), chunk.dtype)])
        x = np.ascontiguousarray(chunk, dtype=self.dtypes[self.input_name])
        if not self.context.set_input_shape(self.input_name, x.shape):
            raise RuntimeError(f"TensorRT refused input shape {x.shape}")
        self.cuda.to_device(self.pointers[self.input_name], x)
        if not self.context.execute_async_v3(self.cuda.handle):
            raise RuntimeError("TensorRT execution failed (see the TensorRT log above)")
        results = {}
        for ours, theirs in self.outputs.items():
            results[ours] = np.empty(tuple(self.context.get_tensor_shape(theirs)), self.dtypes[theirs])
            self.cuda.to_host(results[ours], self.pointers[theirs])
        self.cuda.sync()
        return {k: v[:count].astype(np.float32, copy=False) for k, v in results.items()}

    def close(self) -> None:
        self.context = self.engine = None
        self.cuda.close()
