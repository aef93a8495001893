"""matplotlib for the PNGs the tool writes: headless (Agg), or one clear line when it is missing."""

from __future__ import annotations

from typing import Any

from edge_xcnn.errors import MissingDependency


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed); MissingDependency without it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise MissingDependency("matplotlib", "data") from e
    return plt
