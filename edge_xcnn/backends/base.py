"""The one interface every runtime implements; preprocessing and output checks live here once.

Which runtime opens which file is ``edge_xcnn.backends.factory`` (it imports every backend; this
module imports none, so a backend can import it without a cycle).
"""

from __future__ import annotations

import abc

import numpy as np

from edge_xcnn.errors import EdgeXcnnError
from edge_xcnn.meta import ModelMeta
from edge_xcnn.preprocess import Geometry, preprocess


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

    def classify_maps(self, maps: np.ndarray) -> np.ndarray | None:
        """Logits (N x K) of the classifier alone on N x 1 x H x W raw maps; None where the model cannot.

        What the runner's box check asks (``edge_xcnn.box_evidence``). A runtime answers it when its
        model file carries the classifier on its own (an ONNX export's ``edge_xcnn.map_classifier``
        metadata) or it holds the network itself (PyTorch); engines and remote servers do not.
        """
        if not self.can_classify_maps:
            return None
        expected = (1, *self.meta.input_size)
        if maps.ndim != 4 or maps.shape[1:] != expected:
            raise ValueError(f"maps must be N x {' x '.join(map(str, expected))}, got {maps.shape}")
        logits = self._classify_maps(np.ascontiguousarray(maps, dtype=np.float32))
        if logits.shape != (len(maps), self.meta.num_classes):
            raise RuntimeError(f"runtime returned map logits of shape {logits.shape}")
        return logits

    @property
    def can_classify_maps(self) -> bool:
        """Whether :meth:`classify_maps` works with this model on this runtime."""
        return False

    def _classify_maps(self, maps: np.ndarray) -> np.ndarray:
        raise NotImplementedError

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


def __getattr__(name: str) -> object:
    """``open_backend``, ``backend_for`` and ``BACKENDS`` moved to ``edge_xcnn.backends.factory``; old imports work."""
    if name in ("open_backend", "backend_for", "BACKENDS"):
        from edge_xcnn.backends import factory

        return getattr(factory, name)
    raise AttributeError(name)
