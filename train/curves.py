"""The training curves as a PNG (``results.png`` beside ``results.json``), rewritten every epoch.

Why a picture: whether a run is still improving, over-fitting, or has a map that stalled while its
top-1 climbs (session 17's third seed: same top-1, half the PxAP) is read at a glance from curves,
not from a column of numbers. One panel per kind of figure; panels whose figures the run does not
have (the map's grade on data without boxes) are left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_xcnn.fileio import atomic_output
from edge_xcnn.plotting import pyplot

# (title, [(history key, label)], shown as per cent)
PANELS: tuple[tuple[str, tuple[tuple[str, str], ...], bool], ...] = (
    ("training loss", (("loss", "loss"),), False),
    ("top-1", (("train_acc", "train"), ("val_acc", "val")), True),
    ("map on validation", (("val_gt_known", "GT-known loc"), ("val_pxap", "PxAP")), True),
    ("learning rate", (("lr", "lr"),), False),
)


def draw_curves(history: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Write the curves of ``history`` (``results.json``'s rows) to ``path`` as a PNG."""
    plt = pyplot()
    if not history:
        raise ValueError("no epoch to draw")
    panels = [p for p in PANELS if any(key in row for key, _ in p[1] for row in history)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.0), squeeze=False)
    for ax, (name, series, percent) in zip(axes[0], panels, strict=True):
        for key, label in series:
            points = [(row["epoch"], row[key]) for row in history if key in row]
            if points:
                epochs, values = zip(*points, strict=True)
                ax.plot(epochs, [100 * v if percent else v for v in values], marker="o", ms=3, label=label)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if percent:
            ax.set_ylabel("%", fontsize=8)
        if len(series) > 1:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
