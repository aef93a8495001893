"""``edge-xcnn compare``: XCNN's heatmap against saliency baselines on data with boxes (and masks).

For each image of a fixed subset (the first ``limit`` of the split) every method's map is computed on
the XCNN model (baselines explain the whole model, their layers inside its classifier) and, when
given, on the plain classifier trained with the same recipe. Maps are taken for the true class
(wsolevaluation's convention; top-1 loc needs a right prediction, for which that is also the
predicted class) and, for deletion / insertion, for the predicted class (RISE's); how maps are
scored is in ``edge_xcnn.explain.scoring``. Then the randomization check (``sanity``) on a few images
and the cost of each method (``cost``), each method in a fresh process.
"""

from __future__ import annotations

import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edge_xcnn.errors import BadModelFile
from edge_xcnn.explain.causal import causal_scores
from edge_xcnn.explain.cost import CostRow, measure_cost
from edge_xcnn.explain.methods import (
    ConvLayer,
    MethodSpec,
    build_explainer,
    cam_layers,
    classifier_convs,
    prepare_for_attribution,
    source_problem,
)
from edge_xcnn.explain.metrics import POINTING_TOLERANCE
from edge_xcnn.explain.sanity import SanityRow, sanity_check
from edge_xcnn.explain.scoring import RowAccumulator, Subset, load_subset, trivial_rows
from edge_xcnn.meta import ModelMeta
from edge_xcnn.preprocess import Geometry


@dataclass
class CompareOptions:
    """What to compare and how much of it (the CLI's options)."""

    model: Path | None = None
    plain: Path | None = None
    data: str | None = None
    limit: int = 500
    methods: list[MethodSpec] = field(default_factory=list)
    batch: int = 32
    device: str | None = None
    causal_steps: int | None = None  # None: one image row per step (RISE); 0: skip deletion/insertion
    sanity_images: int = 16  # 0: skip the randomization check
    cost: bool = True
    cost_seconds: float = 2.0
    cost_batches: tuple[int, ...] = (1, 32)
    threads: int | None = None
    onnx: list[Path] = field(default_factory=list)
    grid_images: int = 8
    pointing_tolerance: float = POINTING_TOLERANCE


@dataclass
class Job:
    """One row to compute: a method (at a layer) on a model."""

    model_name: str
    path: Path
    model: torch.nn.Module
    meta: ModelMeta
    method: MethodSpec
    role: str | None
    layer: ConvLayer | None
    wrapped: torch.nn.Module

    @property
    def layer_label(self) -> str:
        return self.layer.label if self.layer else "-"


@dataclass
class GridColumn:
    """One method's map on the grid images."""

    title: str
    maps: list[np.ndarray]  # normalized to [0, 1]
    boxes: list[np.ndarray | None]  # paper's rule, source pixels


@dataclass
class CompareReport:
    """Everything a compare run measured; ``to_dict`` is the ``--json`` schema."""

    data: str
    images: int
    models: dict[str, dict[str, Any]]
    rows: list[dict[str, Any]]
    unavailable: list[dict[str, str]]
    sanity: list[SanityRow]
    cost: list[CostRow]
    settings: dict[str, Any]
    grid_images: list[np.ndarray] = field(default_factory=list, repr=False)
    grid_truth: list[tuple[int, np.ndarray]] = field(default_factory=list, repr=False)
    grid_geometries: list[Geometry] = field(default_factory=list, repr=False)
    grid_preds: dict[str, list[int]] = field(default_factory=dict, repr=False)
    grid_columns: list[GridColumn] = field(default_factory=list, repr=False)
    classes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "images": self.images,
            "models": self.models,
            "rows": self.rows,
            "unavailable": self.unavailable,
            "sanity": [row.to_dict() for row in self.sanity],
            "cost": [row.to_dict() for row in self.cost],
            "settings": self.settings,
        }


def _predict(model: torch.nn.Module, x: np.ndarray, batch: int, device: torch.device) -> np.ndarray:
    preds = []
    with torch.inference_mode():
        for start in range(0, len(x), batch):
            out = model(torch.from_numpy(x[start : start + batch]).to(device))
            preds.append((out[0] if isinstance(out, tuple) else out).argmax(1).cpu().numpy())
    return np.concatenate(preds)


def _load_models(options: CompareOptions, device: torch.device) -> list[tuple[str, Path, torch.nn.Module, ModelMeta]]:
    from edge_xcnn.checkpoint import load_model, resolve_model

    path = resolve_model(options.model)
    if path.suffix.lower() == ".onnx":
        raise BadModelFile(f"compare needs a checkpoint (.safetensors): gradient baselines cannot run on {path}")
    model, meta = load_model(path, device)
    if meta.arch.kind != "xcnn":
        raise BadModelFile(f"{path} is a plain classifier; give the XCNN model with --model and this one with --plain")
    models = [("xcnn", path, model, meta)]
    if options.plain is not None:
        plain_path = resolve_model(options.plain)
        plain, plain_meta = load_model(plain_path, device)
        if plain_meta.arch.kind != "plain":
            raise BadModelFile(f"--plain {plain_path} is not a plain classifier (train one with --arch plain)")
        same = ("classes", "input_size", "color", "resize")
        if any(getattr(meta, k) != getattr(plain_meta, k) for k in same) or plain_meta.arch.classifier != (
            meta.arch.classifier
        ):
            raise BadModelFile(
                f"--plain {plain_path} does not match the XCNN model (classifier, classes, input size, colour and "
                "resize must be the same): train it with the same recipe and --arch plain"
            )
        models.append(("plain", plain_path, plain, plain_meta))
    return models


def run_compare(options: CompareOptions, console: Console | None = None) -> CompareReport:
    """Compute every method's maps and metrics, the sanity check and the cost; see the module docstring."""
    from edge_xcnn.train.data_spec import open_for_model

    device = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if options.threads:
        torch.set_num_threads(options.threads)
    models = _load_models(options, device)
    meta = models[0][3]
    dataset, spec = open_for_model(options.data, meta)
    subset = load_subset(dataset, meta, options.limit)
    count = len(subset.labels)
    steps = meta.input_size[0] if options.causal_steps is None else options.causal_steps
    shown = np.linspace(0, count - 1, min(options.grid_images, count)).round().astype(int).tolist()

    unavailable: dict[str, str] = {}
    jobs: list[Job] = []
    model_info: dict[str, dict[str, Any]] = {}
    preds: dict[str, np.ndarray] = {}
    for name, path, model, model_meta in models:
        wrapped = prepare_for_attribution(model)
        layers = cam_layers(classifier_convs(wrapped, model_meta.input_size))
        preds[name] = _predict(model, subset.x, options.batch, device)
        model_info[name] = {
            "path": str(path),
            "arch": model_meta.arch.kind,
            "classifier": model_meta.arch.classifier,
            "top1": float((preds[name] == subset.labels).mean()),
            "cam_layers": {role: {"module": layer.name, "label": layer.label} for role, layer in layers.items()},
        }
        for method in options.methods:
            if method.source == "xcnn" and model_meta.arch.kind != "xcnn":
                continue
            problem = source_problem(method.source)
            if problem:
                unavailable[method.name] = problem
                continue
            for role, layer in layers.items() if method.uses_layer else [(None, None)]:
                jobs.append(Job(name, path, model, model_meta, method, role, layer, wrapped))

    rows: list[dict[str, Any]] = []
    columns: list[GridColumn] = []
    x_all = torch.from_numpy(subset.x)
    with Progress(
        TextColumn("[bold]compare[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console or Console(stderr=True), transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("", total=count * len(jobs))
        for job in jobs:
            name, model, method = job.model_name, job.model, job.method
            progress.update(task, description=f"{name}: {method.label} {job.layer_label if job.layer else ''}")
            correct = preds[name] == subset.labels
            acc = RowAccumulator(subset, job.meta, correct, options.pointing_tolerance)
            column = GridColumn(_column_title(name, method, job.layer, len(models)), [], [])
            with build_explainer(
                method, model, job.wrapped, job.layer, polarity=job.meta.polarity, input_size=job.meta.input_size
            ) as explainer:  # fmt: skip
                for start in range(0, count, options.batch):
                    index = np.arange(start, min(count, start + options.batch))
                    x = x_all[index].to(device)
                    maps = explainer.explain(x, torch.from_numpy(subset.labels[index]).to(device))
                    for j, i in enumerate(index):
                        box = acc.add(int(i), maps[j])
                        if i in shown:
                            column.maps.append(_unit(maps[j]))
                            column.boxes.append(box)
                    if steps:
                        wrong = np.flatnonzero(~correct[index]) if method.class_specific else np.zeros(0, int)
                        if wrong.size:  # RISE explains the predicted class
                            maps = maps.copy()
                            maps[wrong] = explainer.explain(
                                x[wrong], torch.from_numpy(preds[name][index[wrong]]).to(device)
                            )
                        for mode, values in causal_scores(model, x, maps, job.meta.mean, steps).items():
                            acc.causal[mode].extend(values.tolist())
                    progress.advance(task, len(index))
            rows.append(
                {"model": name, "method": method.name, "label": method.label, "layer": job.layer_label}
                | {"layer_role": job.role}
                | acc.result()
            )
            columns.append(column)
    rows += trivial_rows(subset, meta, preds["xcnn"] == subset.labels, options.pointing_tolerance)

    sanity: list[SanityRow] = []
    if options.sanity_images:
        sanity = _sanity(jobs, subset, options, device)
    cost: list[CostRow] = []
    if options.cost:
        cost = _cost(jobs, subset, options, device, console)
    return CompareReport(
        data=str(spec),
        images=count,
        models=model_info,
        rows=rows,
        unavailable=[{"method": k, "reason": v} for k, v in unavailable.items()],
        sanity=sanity,
        cost=cost,
        settings=_settings(options, steps, device, subset, meta.threshold),
        grid_images=[subset.images[i] for i in shown],
        grid_truth=[(int(subset.labels[i]), subset.boxes[i]) for i in shown],
        grid_geometries=[subset.geometries[i] for i in shown],
        grid_preds={name: [int(p[i]) for i in shown] for name, p in preds.items()},
        grid_columns=columns,
        classes=meta.classes,
    )


def _unit(cam: np.ndarray) -> np.ndarray:
    lo, hi = float(cam.min()), float(cam.max())
    return np.zeros_like(cam) if hi - lo < 1e-12 else (cam - lo) / (hi - lo)


def _column_title(model: str, method: MethodSpec, layer: ConvLayer | None, n_models: int) -> str:
    """A grid column's title, in lines short enough for a narrow column."""
    lines = textwrap.wrap(method.label, 16)
    if layer:
        lines.append(f"at {layer.size[0]}x{layer.size[1]}")
    if method.source != "xcnn" and n_models > 1:
        lines.append("(XCNN's cls)" if model == "xcnn" else "(plain)")
    return "\n".join(lines)


def _sanity(jobs: list[Job], subset: Subset, options: CompareOptions, device: torch.device) -> list[SanityRow]:
    """The cascading randomization check on the first ``sanity_images`` images, true classes."""
    n = min(options.sanity_images, len(subset.labels))
    x = torch.from_numpy(subset.x[:n]).to(device)
    target = torch.from_numpy(subset.labels[:n]).to(device)
    rows: list[SanityRow] = []
    by_model: dict[str, list[Job]] = {}
    for job in jobs:
        by_model.setdefault(job.model_name, []).append(job)
    for name, model_jobs in by_model.items():
        model, meta = model_jobs[0].model, model_jobs[0].meta

        def maps_of(method: MethodSpec, role: str | None, meta: ModelMeta = meta):
            def maps(m: torch.nn.Module) -> np.ndarray:
                wrapped = prepare_for_attribution(m)
                layer = cam_layers(classifier_convs(wrapped, meta.input_size))[role] if role else None
                with build_explainer(
                    method, m, wrapped, layer, polarity=meta.polarity, input_size=meta.input_size
                ) as explainer:  # fmt: skip
                    return explainer.explain(x, target)

            return maps

        methods = [(job.method.name, job.layer_label, maps_of(job.method, job.role)) for job in model_jobs]
        rows += sanity_check(model, name, methods)
    return rows


def _cost(jobs: list[Job], subset: Subset, options: CompareOptions, device: torch.device, console: Console | None):
    """Heatmaps/s and peak memory per method, each in a fresh process; ONNX exports of the XCNN model too."""
    threads = options.threads or torch.get_num_threads()
    biggest = max(options.cost_batches)
    images = subset.x[np.arange(biggest) % len(subset.x)]
    rows: list[CostRow] = []
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "images.npy"
        np.save(path, images)
        base = {
            "images": str(path),
            "batches": list(options.cost_batches),
            "seconds": options.cost_seconds,
            "threads": threads,
            "device": str(device),
        }
        todo = [
            base
            | {
                "model": str(job.path),
                "model_name": job.model_name,
                "method": job.method.name,
                "layer_role": job.role,
                "layer_label": job.layer_label,
                "runtime": "torch",
                "runtime_label": f"pytorch eager ({device.type})",
                "precision": "fp32",
            }
            for job in jobs
        ]
        for onnx in options.onnx:
            todo.append(
                base
                | {
                    "model": str(onnx),
                    "model_name": "xcnn",
                    "method": "xcnn",
                    "layer_role": None,
                    "layer_label": "-",
                    "runtime": "onnxruntime",
                    "runtime_label": "onnxruntime (cpu)",
                    "precision": _onnx_precision(onnx),
                    "device": "cpu",
                }
            )
        status = (console or Console(stderr=True)).status("measuring cost")
        with status:
            for job in todo:
                status.update(f"measuring cost: {job['model_name']} {job['method']} {job['layer_label']}")
                rows += measure_cost(job)
    return rows


def _onnx_precision(path: Path) -> str:
    """The precision stored in the file's metadata (``edge_xcnn.onnx_meta``, the one reader)."""
    from edge_xcnn.onnx_meta import read_onnx_file

    return read_onnx_file(path).precision


def _settings(
    options: CompareOptions, steps: int, device: torch.device, subset: Subset, threshold: float
) -> dict[str, Any]:
    try:
        import captum

        captum_version = captum.__version__
    except ImportError:
        captum_version = None
    return {
        "subset": f"first {len(subset.labels)} images of the split",
        "masks": subset.net_masks is not None,
        "maps_for": "the true class (WSOL metrics, sanity check); the predicted class (deletion, insertion)",
        "cam_thresholds": "0, 0.01, ..., 0.99 (wsolevaluation)",
        "MaxBoxAcc": "largest contour, IoU 0.5",
        "MaxBoxAccV2": "all contours, mean of IoU 0.3/0.5/0.7",
        # Every method's map, normalized, at the XCNN model's own threshold (0.5 for the paper's models).
        "fixed_threshold_loc": f"largest contour at the model's threshold {threshold:g}, IoU >= 0.5 (source pixels)",
        "pointing_tolerance_px": options.pointing_tolerance,
        "pointing_mask": "object mask" if subset.net_masks is not None else "true box filled in (TorchRay on VOC)",
        "causal_steps": steps,
        "batch": options.batch,
        "device": str(device),
        "threads": options.threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "captum": captum_version,
    }
