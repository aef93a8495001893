"""ONNX Runtime: the CPU default on edge boxes; no torch needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_xcnn.backends.base import Backend
from edge_xcnn.errors import BadModelFile, MissingDependency
from edge_xcnn.meta import META_KEY, ModelMeta


class OnnxRuntimeBackend(Backend):
    """An exported model in an ``onnxruntime.InferenceSession`` (CPU provider unless told otherwise)."""

    def __init__(self, path: Path, providers: list[str] | None = None, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise MissingDependency("onnxruntime", "export") from e
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/... types for damaged files
            raise BadModelFile(f"{path} is not an ONNX model ONNX Runtime can load ({type(e).__name__})") from e
        stored = self.session.get_modelmeta().custom_metadata_map.get(META_KEY)
        if stored is None:
            raise BadModelFile(f"{path} is an ONNX model but not an edge-xcnn export (no '{META_KEY}' metadata)")
        self.meta = ModelMeta.from_json(stored)
        self.outputs = [o.name for o in self.session.get_outputs()]

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        results = dict(zip(self.outputs, self.session.run(self.outputs, {"images": batch}), strict=True))
        return results["logits"], results.get("heatmap")
