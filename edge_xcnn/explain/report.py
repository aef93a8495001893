"""How a compare run is shown: rich tables, a Markdown report and a PNG grid in the paper's Fig. 4/5 style."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from edge_xcnn.colormap import diverging_rgb
from edge_xcnn.errors import MissingDependency
from edge_xcnn.explain.compare import CompareReport
from edge_xcnn.explain.cost import MEMORY_HOW, CostRow
from edge_xcnn.fileio import atomic_output
from edge_xcnn.plotting import pyplot

METRIC_COLUMNS = (
    ("MaxBoxAcc", "MaxBoxAcc", "%"),
    ("MaxBoxAccV2", "MaxBoxAccV2", "%"),
    ("PxAP", "PxAP", "%"),
    ("gt_known_loc", "GT-known loc", "%"),
    ("top1_loc", "top-1 loc", "%"),
    ("pointing", "pointing", "%"),
    ("pointing_peak", "peak in mask", "%"),
    ("deletion", "deletion ↓", "f"),
    ("insertion", "insertion ↑", "f"),
)


def _fmt(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return f"{100 * value:.1f}" if kind == "%" else f"{value:.3f}"


def _model_label(report: CompareReport, model: str) -> str:
    if model == "-":
        return "-"
    return f"{model} ({report.models[model]['classifier']})"


def metric_rows(report: CompareReport) -> list[list[str]]:
    """The main table as strings: model, method, layer, then the metric columns."""
    return [
        [_model_label(report, row["model"]), row["label"], row["layer"]]
        + [_fmt(row.get(key), kind) for key, _, kind in METRIC_COLUMNS]
        for row in report.rows
    ]


def speedups(report: CompareReport) -> list[dict[str, Any]]:
    """XCNN's heatmaps/s over Grad-CAM's on the same model, batch 1, same runtime (PyTorch eager)."""
    out = []
    eager = [r for r in report.cost if r.model == "xcnn" and r.batch == 1 and r.runtime.startswith("pytorch")]
    xcnn = next((r for r in eager if r.method == "xcnn"), None)
    if xcnn is None:
        return out
    for row in eager:
        if row.method == "gradcam":
            ratio = xcnn.heatmaps_per_s / row.heatmaps_per_s
            out.append(
                {"layer": row.layer, "xcnn_per_s": xcnn.heatmaps_per_s, "gradcam_per_s": row.heatmaps_per_s}
                | {"ratio": ratio}
            )
    return out


def sanity_table(report: CompareReport) -> tuple[list[str], list[list[str]]]:
    """Rows (model, method, layer) x steps, each cell ``Spearman / SSIM``."""
    steps: dict[str, list[str]] = {}
    cells: dict[tuple[str, str, str], dict[int, str]] = {}
    for row in report.sanity:
        steps.setdefault(row.model, [])
        label = f"{row.step}: {row.randomized}"
        if label not in steps[row.model]:
            steps[row.model].append(label)
        cells.setdefault((row.model, row.method, row.layer), {})[row.step] = f"{row.spearman:.2f} / {row.ssim:.2f}"
    width = max((len(v) for v in steps.values()), default=0)
    header = ["model", "method", "layer"] + [f"step {k}" for k in range(width)]
    body = [[m, method, layer] + [c.get(k, "") for k in range(width)] for (m, method, layer), c in cells.items()]
    return header, body


def print_report(report: CompareReport, console: Console) -> None:
    """The terminal view: models, the metric table, what did not run, the sanity check, the cost."""
    for name, info in report.models.items():
        console.print(f"{name}: {info['path']} ({info['classifier']}), top-1 {info['top1']:.2%}", markup=False)
    table = Table(title=f"{report.data}: {report.images} images (maps of the true class; % unless marked)")
    for column in ("model", "method", "layer", *(label for _, label, _ in METRIC_COLUMNS)):
        table.add_column(column, justify="left" if column in ("model", "method", "layer") else "right")
    for row in metric_rows(report):
        table.add_row(*row)
    console.print(table)
    for item in report.unavailable:
        console.print(f"not run: {item['method']}: {item['reason']}", markup=False)
    if report.sanity:
        header, body = sanity_table(report)
        sanity = Table(title="sanity check: Spearman / SSIM of maps vs. the trained model's, cumulative randomization")
        for column in header:
            sanity.add_column(column)
        for row in body:
            sanity.add_row(*row)
        console.print(sanity)
        for model in dict.fromkeys(r.model for r in report.sanity):
            order = dict.fromkeys(f"{r.step}: {r.randomized}" for r in report.sanity if r.model == model)
            console.print(f"{model} steps: " + ", ".join(order), markup=False)
    if report.cost:
        cost = Table(title="cost: heatmaps per second and peak memory")
        for column in ("model", "method", "layer", "runtime", "precision", "batch", "heatmaps/s", "ms", "peak MB"):
            cost.add_column(column, justify="right" if column in ("batch", "heatmaps/s", "ms", "peak MB") else "left")
        for r in report.cost:
            cost.add_row(*cost_cells(r))
        console.print(cost)
        console.print(f"threads {report.cost[0].threads}; memory: {MEMORY_HOW[report.cost[0].memory]}", markup=False)
        for s in speedups(report):
            console.print(
                f"XCNN vs Grad-CAM ({s['layer']}) on the XCNN model, batch 1, eager: {s['ratio']:.1f}x "
                f"({s['xcnn_per_s']:.0f} vs {s['gradcam_per_s']:.0f} heatmaps/s)",
                markup=False,
            )


def cost_cells(r: CostRow) -> list[str]:
    """One cost row as table cells."""
    speed = (f"{r.heatmaps_per_s:.1f}", f"{r.ms_per_heatmap:.3f}", f"{r.peak_mb:.1f}")
    return [r.model, r.method, r.layer, r.runtime, r.precision, str(r.batch), *speed]


def report_dict(report: CompareReport) -> dict[str, Any]:
    """What ``--json`` writes: the report plus the speed-ups."""
    return report.to_dict() | {"speedups": speedups(report)}


def write_json(report: CompareReport, path: Path) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(report_dict(report), indent=2))


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    right = {"batch", "heatmaps/s", "ms/heatmap", "peak MB"} | {label for _, label, _ in METRIC_COLUMNS}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if h in right else "---" for h in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_markdown(report: CompareReport, folder: Path, command: str = "") -> Path:
    """``report.md`` (and ``grid.png``, ``compare.json``) in ``folder``; returns the Markdown path."""
    folder.mkdir(parents=True, exist_ok=True)
    grid = draw_grid(report, folder / "grid.png") if report.grid_columns else None
    write_json(report, folder / "compare.json")
    s = report.settings
    parts = [f"# XCNN against saliency baselines: {report.data}", ""]
    if command:
        parts += [f"Command: `{command}`", ""]
    parts += [
        f"{report.images} images ({s['subset']}); device {s['device']}, CPU threads: {s['threads']}, "
        f"torch {s['torch']}, Captum {s['captum']}.",
        "",
    ]
    for name, info in report.models.items():
        layers = ", ".join(f"{v['label']} (`{v['module']}`)" for v in info["cam_layers"].values())
        parts.append(
            f"- `{name}`: {info['path']} ({info['classifier']}), top-1 {info['top1']:.2%}; CAM layers: {layers}"
        )
    parts += ["", "## Localization and faithfulness", ""]
    header = ["model", "method", "layer", *(label for _, label, _ in METRIC_COLUMNS)]
    parts += [_md_table(header, metric_rows(report)), ""]
    parts += [
        f"Maps for {s['maps_for']}. MaxBoxAcc: {s['MaxBoxAcc']}; MaxBoxAccV2: {s['MaxBoxAccV2']}; "
        f"CAM thresholds {s['cam_thresholds']}. GT-known / top-1 loc: {s['fixed_threshold_loc']}. Pointing game: "
        f"TorchRay, {s['pointing_tolerance_px']} px tolerance, on the {s['pointing_mask']}; 'peak in mask': the "
        f"map's maximum itself in the mask. Deletion (lower is better) and insertion (higher is better): RISE, "
        f"{s['causal_steps']} steps, softmax probability of the predicted class. PxAP needs masks "
        f"({'present' if s['masks'] else 'absent: n/a'}). Trivial rows use XCNN's predictions for top-1 loc.",
        "",
    ]
    if report.unavailable:
        parts += ["Not run here:", ""] + [f"- {u['method']}: {u['reason']}" for u in report.unavailable] + [""]
    if grid:
        parts += [
            f"![maps]({grid.name})",
            "",
            "Rows: images; columns: the image (true box green), each method's map (red = evidence, orange box: "
            "the paper's rule at 0.5), and the class (true, then each model's prediction).",
            "",
        ]
    if report.sanity:
        header, body = sanity_table(report)
        parts += ["## Sanity check (cascading model randomization)", "", _md_table(header, body), ""]
        for model in dict.fromkeys(r.model for r in report.sanity):
            order = dict.fromkeys(f"{r.step}: {r.randomized}" for r in report.sanity if r.model == model)
            parts.append(f"- {model}: " + "; ".join(order))
        parts += ["", "Cells: mean Spearman rank correlation / SSIM with the trained model's maps (1 = unchanged).", ""]
    if report.cost:
        parts += ["## Cost", ""]
        rows = [cost_cells(r) for r in report.cost]
        header = ["model", "method", "layer", "runtime", "precision", "batch", "heatmaps/s", "ms/heatmap", "peak MB"]
        parts += [_md_table(header, rows), "", f"Peak memory: {MEMORY_HOW[report.cost[0].memory]}.", ""]
        parts += [
            f"- XCNN vs Grad-CAM ({x['layer']}), XCNN model, batch 1, PyTorch eager: **{x['ratio']:.1f}x** "
            f"({x['xcnn_per_s']:.0f} vs {x['gradcam_per_s']:.0f} heatmaps/s)"
            for x in speedups(report)
        ]
    path = folder / "report.md"
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(parts).rstrip() + "\n")
    return path


def draw_grid(report: CompareReport, path: Path, cell: float = 0.95, dpi: int = 80) -> Path:
    """Rows = images, columns = the image, every method's map, the class; boxes drawn; a small palette PNG."""
    plt = pyplot()
    from matplotlib.patches import Rectangle

    try:
        from PIL import Image
    except ImportError as e:
        raise MissingDependency(e.name or "pillow", "data") from e
    rows, columns = len(report.grid_images), len(report.grid_columns) + 2
    fig, axes = plt.subplots(rows, columns, figsize=(cell * columns, cell * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)

    def box(ax: Any, xyxy: Any, colour: str, geometry: Any = None) -> None:
        if xyxy is None:
            return
        x1, y1, x2, y2 = (float(v) for v in xyxy)
        if geometry is not None:  # source pixels -> the map's (network) pixels
            (sx, sy), (ox, oy) = geometry.scale, geometry.offset
            x1, x2, y1, y2 = x1 / sx + ox, x2 / sx + ox, y1 / sy + oy, y2 / sy + oy
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, lw=1.0, ec=colour))

    titles = ["image", *(c.title for c in report.grid_columns), "class"]
    for r, image in enumerate(report.grid_images):
        label, gt = report.grid_truth[r]
        axes[r, 0].imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
        box(axes[r, 0], gt, "lime")
        geometry = report.grid_geometries[r]
        for c, column in enumerate(report.grid_columns, start=1):
            axes[r, c].imshow(diverging_rgb(column.maps[r]), interpolation="nearest")
            box(axes[r, c], gt, "lime", geometry)
            box(axes[r, c], column.boxes[r], "orange", geometry)
        text = [f"true {report.classes[label]}"] + [
            f"{name} {report.classes[p[r]]}" for name, p in report.grid_preds.items()
        ]
        ax = axes[r, -1]
        for k, line in enumerate(text):
            wrong = k > 0 and line.split()[-1] != report.classes[label]
            ax.text(0.05, 0.8 - 0.25 * k, line, fontsize=7, color="red" if wrong else "black", transform=ax.transAxes)
    for c, title in enumerate(titles):
        axes[0, c].set_title(title, fontsize=6)
    fig.tight_layout(pad=0.2)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    buffer.seek(0)
    # a palette without dithering: a fraction of the size of a true-colour PNG, no visible loss on maps
    small = Image.open(buffer).convert("RGB").quantize(colors=96, dither=Image.Dither.NONE)
    with atomic_output(path) as tmp:
        small.save(tmp, format="PNG", optimize=True)
    return path
