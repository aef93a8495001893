"""The paper's Fig. 2/3 as a PNG: each image above its heatmap, predicted vs true label, mistakes marked."""

from __future__ import annotations

import math
from pathlib import Path

from edge_xcnn.colormap import diverging_rgb
from edge_xcnn.fileio import atomic_output
from edge_xcnn.plotting import pyplot
from edge_xcnn.train.evaluate import Shown

COLUMNS = 8


def draw_grid(items: list[Shown], classes: tuple[str, ...], path: Path, title: str = "") -> Path:
    """Write the grid to ``path`` (PNG); true boxes green, heatmap boxes orange."""
    plt = pyplot()
    from matplotlib.patches import Rectangle

    if not items:
        raise ValueError("nothing to draw")
    rows = math.ceil(len(items) / COLUMNS)
    fig, axes = plt.subplots(2 * rows, COLUMNS, figsize=(1.6 * COLUMNS, 3.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, item in enumerate(items):
        top, bottom = axes[2 * (k // COLUMNS), k % COLUMNS], axes[2 * (k // COLUMNS) + 1, k % COLUMNS]
        top.imshow(item.image, cmap="gray" if item.image.ndim == 2 else None, vmin=0, vmax=255)
        for box, colour in ((item.gt_box, "lime"), (item.pred_box, "orange")):
            if box is not None:
                x1, y1, x2, y2 = (float(v) for v in box)
                top.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, lw=1.2, ec=colour))
        wrong = item.pred != item.label
        top.set_title(
            f"{classes[item.pred]} / {classes[item.label]}" + (" ✗" if wrong else ""),
            fontsize=8, color="red" if wrong else "black",
        )  # fmt: skip
        if item.heat is not None:
            bottom.imshow(diverging_rgb(item.heat))
    fig.suptitle(
        title or "predicted / true label; heatmap below (red = evidence); boxes: true green, heatmap orange",
        fontsize=9,
    )
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
