"""The ``edge-xcnn`` command: one subcommand per job.

Bad input ends in one line on stderr and exit code 2; an internal error in one line and exit 1;
``--debug`` shows the traceback. Heavy imports (torch) happen inside the commands that need them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edge_xcnn.errors import EdgeXcnnError, MissingDependency

app = typer.Typer(
    name="edge-xcnn",
    help="Explainable, weakly supervised localization (XCNN): train, evaluate, export, run.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}
T = TypeVar("T")

ModelOpt = Annotated[
    Path | None,
    typer.Option("--model", "-m", help="Checkpoint (.safetensors) or ONNX export; default: the shipped model."),
]


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Explainable, weakly supervised localization (XCNN): train, evaluate, export, run."""
    _state["debug"] = debug


def _guarded(job: Callable[[], T]) -> T:
    """Run a command body; turn our errors into one line and an exit code."""
    try:
        return job()
    except EdgeXcnnError as e:
        if _state["debug"]:
            raise
        err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception as e:
        if _state["debug"]:
            raise
        err_console.print(
            f"[red]internal error:[/red] {type(e).__name__}: {escape(str(e))} (run with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None


def _need_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise MissingDependency("torch", "train") from e


@app.command()
def train(
    recipe: Annotated[
        str,
        typer.Option(
            "--recipe",
            "-r",
            help="synthetic, synthetic-vgg16, mnist, mnist5k, cifar10, tinyimagenet, folder.",
        ),
    ] = "synthetic",
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Dataset root on disk (recipes mnist, cifar10, tinyimagenet, folder)."),
    ] = None,
    arch: Annotated[
        str,
        typer.Option("--arch", help="xcnn, or plain: the classifier on the raw image (the paper's baseline)."),
    ] = "xcnn",
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Default: the recipe's.")] = None,
    batch: Annotated[
        int | None, typer.Option("--batch", min=1, help="Per process; default: the recipe's (128).")
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Default: the recipe's (1e-3).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Default: the recipe's (0).")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder; default runs/<recipe>-<arch>.")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last epoch.")] = False,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu, cuda, cuda:1; default: CUDA when available.")
    ] = None,
    amp: Annotated[
        bool | None,
        typer.Option(
            "--amp/--no-amp",
            help="Mixed precision (bf16, or fp16 on older GPUs); default: on with CUDA and bf16-capable CPUs.",
        ),
    ] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=0, help="Data loader workers per process.")] = None,
    fig7: Annotated[
        int | None,
        typer.Option("--fig7", min=1, help="Paper's Fig. 7 variant: 1x1 conv to C channels beside the heatmap."),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, help="Use only N training images, spread over the split (smoke runs)."),
    ] = None,
    generator_width: Annotated[
        int | None, typer.Option("--generator-width", min=1, help="Generator feature maps; default: the recipe's.")
    ] = None,
    generator_levels: Annotated[
        int | None, typer.Option("--generator-levels", min=1, help="Encoder levels; the authors' code has 1.")
    ] = None,
) -> None:
    """Train XCNN (or the plain classifier) with a recipe; under torchrun for several GPUs or nodes."""

    def job() -> None:
        _need_torch()
        from edge_xcnn.train.loop import TrainOptions
        from edge_xcnn.train.loop import train as run_training
        from edge_xcnn.train.recipes import get_recipe

        if arch not in ("xcnn", "plain"):
            raise EdgeXcnnError(f"--arch must be 'xcnn' or 'plain', got {arch!r}")
        if fig7 is not None and arch != "xcnn":
            raise EdgeXcnnError("--fig7 only applies to --arch xcnn")
        chosen = get_recipe(recipe).with_overrides(
            epochs=epochs, batch_size=batch, lr=lr, seed=seed,
            generator_width=generator_width, generator_levels=generator_levels,
        )  # fmt: skip
        out_dir = out or Path("runs") / f"{chosen.name}-{arch}"
        if not resume and (out_dir / "train_state.safetensors").exists():
            raise EdgeXcnnError(f"{out_dir} already holds a run: pass --resume to continue it, or another --out")
        result = run_training(
            TrainOptions(
                recipe=chosen, out_dir=out_dir, arch=arch, data_path=data,
                data_spec=str(data.resolve()) if data else chosen.name, resume=resume, device=device,
                amp=amp, workers=workers, fig7_channels=fig7, limit_train=limit,
            )
        )  # fmt: skip
        if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary
            console.print(
                f"best val accuracy {result.best_val_acc:.2%}; {result.wall_s:.0f}s; "
                f"checkpoints: {result.best} (best), {result.last} (last)"
            )

    _guarded(job)


@app.command("eval")
def evaluate(
    model: ModelOpt = None,
    data: Annotated[
        str | None,
        typer.Option("--data", help="NAME[:SPLIT] or a dataset path; default: the model's own data, test split."),
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the figures as JSON.")] = None,
    figure: Annotated[
        Path | None, typer.Option("--figure", help="Write a PNG grid of images, heatmaps and boxes.")
    ] = None,
    batch: Annotated[int, typer.Option("--batch", min=1)] = 128,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N images.")] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu, cuda, cuda:1; default: CUDA when available.")
    ] = None,
) -> None:
    """Top-1 accuracy and, on data with boxes, the paper's heatmap localization (checkpoint or ONNX)."""

    def job() -> None:
        from edge_xcnn.backends import open_backend
        from edge_xcnn.fileio import atomic_output

        try:
            from edge_xcnn.train.data_spec import open_for_model
            from edge_xcnn.train.evaluate import evaluate as run_eval
        except ImportError as e:
            raise MissingDependency(e.name or "matplotlib", "data") from e
        backend = open_backend(model, device=device)
        meta = backend.meta
        dataset, spec = open_for_model(data, meta)
        report = run_eval(
            backend, dataset, data_name=str(spec), batch_size=batch, limit=limit,
            keep=16 if figure else 0, console=err_console,
        )  # fmt: skip
        _print_report(report.to_dict(), meta.arch.kind)
        if json_path:
            with atomic_output(json_path) as tmp:
                tmp.write_text(json.dumps(report.to_dict(), indent=2))
        if figure:
            from edge_xcnn.train.figure import draw_grid

            draw_grid(report.shown, meta.classes, figure)
            console.print(f"figure: {figure}", markup=False)

    _guarded(job)


@app.command()
def export(
    model: ModelOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="onnx (TensorRT engines: next release).")] = "onnx",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Default: the model's name with .onnx.")] = None,
    batch: Annotated[int | None, typer.Option("--batch", min=1, help="Static batch size; default: dynamic.")] = None,
    opset: Annotated[int, typer.Option("--opset", min=17)] = 18,
    int8: Annotated[
        bool, typer.Option("--int8", help="Also write a calibrated Q/DQ INT8 ONNX (<name>.int8.onnx).")
    ] = False,
    calib: Annotated[
        str | None,
        typer.Option("--calib", help="Video, image folder/glob or data spec; default: the model's training data."),
    ] = None,
    calib_count: Annotated[int, typer.Option("--calib-count", min=1, help="Calibration frames.")] = 256,
    calib_pick: Annotated[str, typer.Option("--calib-pick", help="even (spread over the source) or random.")] = "even",
    calib_method: Annotated[str, typer.Option("--calib-method", help="entropy, percentile or minmax.")] = "entropy",
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the INT8 agreement report as JSON.")] = None,
) -> None:
    """Export a checkpoint to ONNX (logits and heatmap, metadata inside, fully checked), optionally INT8."""

    def job() -> None:
        _need_torch()
        from edge_xcnn.checkpoint import DEFAULT_MODEL
        from edge_xcnn.export.onnx_export import export_onnx

        if fmt != "onnx":
            raise EdgeXcnnError(f"--format {fmt!r} is not available in this release; use --format onnx")
        source = model or DEFAULT_MODEL
        target = out or Path(source.with_suffix(".onnx").name)
        written = export_onnx(model, target, batch=batch, opset=opset)
        console.print(f"wrote {written} ({written.stat().st_size / 1024:.0f} KB)", markup=False)
        if int8:
            _export_int8(written, calib, calib_count, calib_pick, calib_method, json_path)

    _guarded(job)


def _export_int8(fp32: Path, calib: str | None, count: int, pick: str, method: str, json_path: Path | None) -> None:
    from edge_xcnn.backends import open_backend
    from edge_xcnn.calib.agreement import agreement
    from edge_xcnn.calib.frames import calibration_batch, default_calibration_spec
    from edge_xcnn.calib.quantize import METHODS, quantize_int8
    from edge_xcnn.fileio import atomic_output
    from edge_xcnn.train.data_spec import open_for_model

    if method not in METHODS:
        raise EdgeXcnnError(f"--calib-method must be one of {', '.join(METHODS)}, got {method!r}")
    if pick not in ("even", "random"):
        raise EdgeXcnnError(f"--calib-pick must be 'even' or 'random', got {pick!r}")
    reference = open_backend(fp32, "onnxruntime")
    meta = reference.meta
    spec = calib or default_calibration_spec(meta)
    # Saved ranges are reused only for the same model and the same calibration request.
    key = hashlib.sha256(fp32.read_bytes() + json.dumps([spec, count, pick, method]).encode()).hexdigest()[:12]
    ranges = fp32.with_name(f"{fp32.stem}.calib-{key}.json")
    if ranges.is_file():
        frames, how = None, f"reusing calibration ranges from {ranges}"
    else:
        frames = calibration_batch(spec, meta, count=count, pick=pick)
        how = f"calibrated on {len(frames)} frames of {spec} ({method}); ranges saved to {ranges}"
    target = quantize_int8(fp32, fp32.with_suffix(".int8.onnx"), frames, method, ranges=ranges)
    console.print(f"wrote {target} ({target.stat().st_size / 1024:.0f} KB), {how}", markup=False)
    held_out, held_spec = open_for_model(None, meta)
    report = agreement(reference, open_backend(target, "onnxruntime"), held_out)
    table = Table(title=f"INT8 vs FP32 on {held_spec} ({report.images} images)")
    for name in ("top-1 FP32", "top-1 INT8", "top-1 agreement", "box agreement (IoU >= 0.5)"):
        table.add_column(name, justify="right")
    table.add_row(
        *(f"{v:.2%}" for v in (report.top1_fp32, report.top1_int8, report.top1_agreement, report.box_agreement))
    )
    console.print(table)
    if json_path:
        with atomic_output(json_path) as tmp:
            tmp.write_text(
                json.dumps({"model": str(target), "calibration": spec, "method": method, **report.to_dict()}, indent=2)
            )


@app.command()
def bench(
    model: ModelOpt = None,
    batches: Annotated[list[int] | None, typer.Option("--batch", min=1, help="Batch sizes; default 1 and 8.")] = None,
    seconds: Annotated[float, typer.Option("--seconds", min=0.1, help="Timing per row.")] = 3.0,
    accuracy_images: Annotated[
        int, typer.Option("--images", min=0, help="Labelled test images for top-1 (0: skip).")
    ] = 500,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads for every runtime.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the rows as JSON.")] = None,
) -> None:
    """Model-only speed of PyTorch eager, ONNX Runtime FP32 and INT8, same machine, one run."""

    def job() -> None:
        _need_torch()
        import tempfile

        import torch

        from edge_xcnn.backends.onnxruntime_backend import OnnxRuntimeBackend
        from edge_xcnn.backends.torch_backend import TorchBackend
        from edge_xcnn.bench import bench_row
        from edge_xcnn.calib.frames import calibration_batch, default_calibration_spec
        from edge_xcnn.calib.quantize import quantize_int8
        from edge_xcnn.checkpoint import resolve_model
        from edge_xcnn.export.onnx_export import export_onnx
        from edge_xcnn.fileio import atomic_output
        from edge_xcnn.train.data_spec import open_for_model
        from edge_xcnn.train.evaluate import evaluate as run_eval

        if threads:
            torch.set_num_threads(threads)
        checkpoint = resolve_model(model)
        with tempfile.TemporaryDirectory() as work:
            fp32 = export_onnx(checkpoint, Path(work) / "model.onnx")
            reference = TorchBackend(checkpoint, device="cpu")
            meta = reference.meta
            int8 = quantize_int8(
                fp32, Path(work) / "model.int8.onnx", calibration_batch(default_calibration_spec(meta), meta)
            )
            runtimes = [
                ("pytorch eager", "fp32", reference, checkpoint),
                ("onnxruntime cpu", "fp32", OnnxRuntimeBackend(fp32, threads=threads), fp32),
                ("onnxruntime cpu", "int8", OnnxRuntimeBackend(int8, threads=threads), int8),
            ]
            held_out = open_for_model(None, meta)[0] if accuracy_images else None
            rows = []
            for name, precision, backend, path in runtimes:
                top1 = run_eval(backend, held_out, data_name="", limit=accuracy_images).top1 if held_out else None
                rows += [bench_row(name, precision, backend, path, b, top1, seconds) for b in (batches or [1, 8])]
        table = Table(title=f"model-only benchmark: {checkpoint.name}, {torch.get_num_threads()} threads")
        for column in ("backend", "precision", "batch", "size KB", "ms/frame p50", "ms/frame p99", "FPS", "top-1"):
            table.add_column(column, justify="left" if column in ("backend", "precision") else "right")
        for row in rows:
            table.add_row(
                row.backend, row.precision, str(row.batch), f"{row.size_kb:.0f}", f"{row.ms_per_frame_p50:.3f}",
                f"{row.ms_per_frame_p99:.3f}", f"{row.fps:.0f}", "-" if row.top1 is None else f"{row.top1:.2%}",
            )  # fmt: skip
        console.print(table)
        if json_path:
            with atomic_output(json_path) as tmp:
                tmp.write_text(json.dumps([row.to_dict() for row in rows], indent=2))

    _guarded(job)


def _print_report(report: dict, kind: str) -> None:
    table = Table(title=f"{report['data']} ({report['images']} images, {kind})")
    table.add_column("method")
    table.add_column("top-1", justify="right")
    loc = report.get("localization")
    if loc:
        for name in ("GT-known loc", "top-1 loc", "mean IoU"):
            table.add_column(name, justify="right")
        rows = [
            ("XCNN heatmap", loc),
            ("centred box of mean size", loc["centred_mean_box"]),
            ("whole image", loc["whole_image"]),
        ]
        for name, figures in rows:
            table.add_row(
                name, f"{report['top1']:.2%}", f"{figures['gt_known_loc']:.2%}", f"{figures['top1_loc']:.2%}",
                f"{figures['mean_iou']:.3f}",
            )  # fmt: skip
    else:
        table.add_row("classifier", f"{report['top1']:.2%}")
    console.print(table)
