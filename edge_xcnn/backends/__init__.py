"""Runtimes behind one interface: ``Backend.infer(batch) -> (logits, heatmap)``."""

from edge_xcnn.backends.base import Backend, open_backend

__all__ = ["Backend", "open_backend"]
