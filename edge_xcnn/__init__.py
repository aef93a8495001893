"""edge-xcnn: explainable, weakly supervised object localization (XCNN) for edge video.

The top-level package imports no torch: inference, localization and video work on machines
that have only ONNX Runtime or TensorRT.
"""

from __future__ import annotations

__version__ = "0.1.0"
