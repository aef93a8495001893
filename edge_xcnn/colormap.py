"""The blue-red diverging colormap the paper draws heatmaps in, without matplotlib."""

from __future__ import annotations

import numpy as np

# RdBu reversed (ColorBrewer): evidence red, counter-evidence blue, neutral near white.
_STOPS = np.array([[5, 48, 97], [67, 147, 195], [247, 247, 247], [214, 96, 77], [103, 0, 31]], dtype=np.float32)
_LUT = np.stack(
    [np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_STOPS)), _STOPS[:, c]) for c in range(3)], 1
).astype(np.uint8)


def diverging_rgb(heat: np.ndarray) -> np.ndarray:
    """Colour a map with values in [-1, 1] (polarity already applied) as uint8 H x W x 3 RGB."""
    index = np.clip((np.asarray(heat, np.float32).squeeze() + 1.0) * 127.5, 0, 255).astype(np.uint8)
    return _LUT[index]
