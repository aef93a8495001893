"""PyTorch definitions of XCNN and the classifiers (needs the ``train`` extra: torch)."""

from edge_xcnn.models.build import build_model, forward_logits_heatmap

__all__ = ["build_model", "forward_logits_heatmap"]
