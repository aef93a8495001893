"""PyTorch eager (CPU or CUDA; fp32, fp16 or bf16): the reference every other runtime is compared with."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_xcnn.backends.base import Backend, parse_device
from edge_xcnn.errors import EdgeXcnnError, MissingDependency

PRECISIONS = ("fp32", "fp16", "bf16")


class TorchBackend(Backend):
    """A checkpoint in PyTorch, in eval mode, without gradients; outputs are always float32.

    ``fp16`` casts the weights to half (``.half()``: the usual GPU route); ``bf16`` runs under autocast
    (CPUs with AVX512-BF16/AMX, recent GPUs). ``channels_last`` (the default, as in training) stores
    activations NHWC, which oneDNN and cuDNN convolutions prefer: on the 2-core development CPU it made
    the default model 1.4x (batch 1) to 2.7x (batch 8) faster than NCHW, with the same answers.
    """

    def __init__(
        self,
        path: Path,
        device: str | None = None,
        precision: str = "fp32",
        *,
        threads: int | None = None,
        channels_last: bool = True,
    ) -> None:
        try:
            import torch
        except ImportError as e:
            raise MissingDependency("torch", "train") from e
        from edge_xcnn.checkpoint import load_model

        if precision not in PRECISIONS:
            raise EdgeXcnnError(
                f"the torch backend computes in {', '.join(PRECISIONS)}, not {precision}"
                + ("; INT8 runs in ONNX Runtime or TensorRT (edge-xcnn export --int8)" if precision == "int8" else "")
            )
        kind, index = parse_device(device)
        if kind == "cuda" and not torch.cuda.is_available():
            raise EdgeXcnnError(f"--device {device}: this PyTorch sees no CUDA GPU")
        if kind is None:
            kind = "cuda" if torch.cuda.is_available() else "cpu"
        self.torch = torch
        self.device = torch.device(kind, index) if kind == "cuda" else torch.device("cpu")
        if threads:
            torch.set_num_threads(threads)  # process-wide: PyTorch has no per-model thread pool
        self.threads: int | None = torch.get_num_threads()
        self.model, self.meta = load_model(path, self.device)
        self.precision = precision
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.model.to(self.dtype)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.name = f"pytorch eager {self.device.type}"

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        torch = self.torch
        x = torch.from_numpy(batch).to(self.device, self.dtype).contiguous(memory_format=self.memory_format)
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
            out = self.model(x)
        logits, heatmap = out if isinstance(out, tuple) else (out, None)
        return logits.float().cpu().numpy(), None if heatmap is None else heatmap.float().cpu().numpy()

    @property
    def can_classify_maps(self) -> bool:
        # The paper's Fig. 7 variant also feeds the classifier image channels: no map-only reading.
        return self.model is not None and getattr(self.model, "fig7", True) is None

    def _classify_maps(self, maps: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(maps).to(self.device, self.dtype).contiguous(memory_format=self.memory_format)
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
            logits = self.model.classifier(x)  # type: ignore[union-attr]
        return logits.float().cpu().numpy()

    def close(self) -> None:
        self.model = None
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()
