"""PyTorch eager (CPU or CUDA, fp32 or fp16): the reference every other runtime is compared with."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_xcnn.backends.base import Backend
from edge_xcnn.errors import MissingDependency


class TorchBackend(Backend):
    """A checkpoint in PyTorch, in eval mode, without gradients."""

    def __init__(self, path: Path, device: str | None = None, half: bool = False) -> None:
        try:
            import torch
        except ImportError as e:
            raise MissingDependency("torch", "train") from e
        from edge_xcnn.checkpoint import load_model

        self.torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model, self.meta = load_model(path, self.device)
        self.dtype = torch.float16 if half else torch.float32
        self.model.to(self.dtype)

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        torch = self.torch
        with torch.inference_mode():
            out = self.model(torch.from_numpy(batch).to(self.device, self.dtype))
        logits, heatmap = out if isinstance(out, tuple) else (out, None)
        return logits.float().cpu().numpy(), None if heatmap is None else heatmap.float().cpu().numpy()
