"""Runtimes behind one interface: ``Backend.infer(batch) -> (logits, heatmap)``."""

from edge_xcnn.backends.base import Backend
from edge_xcnn.backends.factory import open_backend

__all__ = ["Backend", "open_backend"]
