"""The ``edge-xcnn`` command: one subcommand per job.

Bad input ends in one line on stderr and exit code 2; an internal error in one line and exit 1;
``--debug`` shows the traceback. Heavy imports (torch) happen inside the commands that need them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table
from typer._click.exceptions import ClickException, NoArgsIsHelpError
from typer.core import TyperGroup

from edge_xcnn.console import console, err_console, error_line, guarded, state
from edge_xcnn.errors import EdgeXcnnError, MissingDependency
from edge_xcnn.outputs import check_output
from edge_xcnn.stream import command as _stream_command


class _OneLineErrors(TyperGroup):
    """Usage errors (unknown option, a value out of range) as one ``error:`` line and exit 2, like our own."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        _plain_flags(self)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as e:  # the help text, as typer would show it
            if not standalone_mode:
                raise
            console.print(e.format_message(), markup=False, highlight=False)
            sys.exit(e.exit_code)
        except ClickException as e:
            if not standalone_mode:
                raise
            error_line(e.format_message().replace("\n", " "))
            sys.exit(e.exit_code)
        except typer.Abort:
            if not standalone_mode:
                raise
            sys.exit(130)
        if standalone_mode:
            sys.exit(code if isinstance(code, int) else 0)
        return code


app = typer.Typer(
    name="edge-xcnn",
    help="Explainable, weakly supervised localization (XCNN): train, evaluate, export, run.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=_OneLineErrors,
)
_state = state
_guarded = guarded
T = TypeVar("T")

OverwriteOpt = _stream_command.OverwriteOpt
EXPORTS = Path("runs/export")  # where exports go without --out (never the current folder)
ModelOpt = Annotated[
    Path | None,
    typer.Option("--model", "-m", help="Checkpoint (.safetensors) or ONNX export; default: the shipped model."),
]


def _plain_flags(group: Any) -> None:
    """Show flags as flags in the help (``--fp16``), not with the ``<bool>`` value typer prints for them."""
    for command in [group, *getattr(group, "commands", {}).values()]:
        for param in command.params:
            if getattr(param, "is_flag", False):
                param.metavar = ""
        make_help = command.get_help_option
        if not getattr(make_help, "_plain", False):

            def plain_help(ctx: Any, make_help: Any = make_help) -> Any:
                option = make_help(ctx)
                if option is not None:
                    option.metavar = ""
                return option

            plain_help._plain = True  # type: ignore[attr-defined]
            command.get_help_option = plain_help


def split_list(values: list[str] | None, option: str, *, int_min: int | None = None) -> list[str]:
    """Values of a list option given repeated (``--batch 1 --batch 8``) or comma-separated (``--batch 1,8``)."""
    out = [part.strip() for value in values or [] for part in value.split(",") if part.strip()]
    if int_min is not None:
        for part in out:
            if not part.isdigit() or int(part) < int_min:
                raise EdgeXcnnError(
                    f"{option} takes whole numbers >= {int_min}, comma-separated or repeated; got {part!r}"
                )
    return out


def _version(value: bool) -> None:
    if value:
        from edge_xcnn import __version__

        console.print(f"edge-xcnn {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Explainable, weakly supervised localization (XCNN): train, evaluate, export, run."""
    _state["debug"] = debug


def _check_outputs(overwrite: bool, *outputs: tuple[str, Path | None], folder: bool = False) -> None:
    """Refuse every output path of a command now (symlinks, existing files, unwritable places)."""
    for option, path in outputs:
        if path is not None:
            check_output(path, overwrite=overwrite, folder=folder, what=option)


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
    generator: Annotated[
        str | None,
        typer.Option(
            "--generator",
            help="paper (the authors' block), context, or context-ibn (half instance norm in its first two "
            "levels); default: the recipe's.",
        ),
    ] = None,
    train_data: Annotated[
        str | None,
        typer.Option("--train-data", help="Synthetic recipes: digits (the benchmark's train split) or scenes."),
    ] = None,
    loss: Annotated[
        str | None, typer.Option("--loss", help="ce (softmax, the paper's) or bce (per-class sigmoid, multi-label).")
    ] = None,
    area_prior: Annotated[
        float | None, typer.Option("--area-prior", min=0.0, help="Weight of the area prior; 0 = off.")
    ] = None,
    bas: Annotated[
        float | None, typer.Option("--bas", min=0.0, help="Weight of background-activation suppression; 0 = off.")
    ] = None,
    empty_prior: Annotated[
        float | None,
        typer.Option("--empty-prior", min=0.0, help="Weight of the empty-scene prior; 0 = off."),
    ] = None,
    objective_warmup: Annotated[
        float | None,
        typer.Option("--objective-warmup", min=0.0, help="Epochs of plain classification before the priors."),
    ] = None,
    threshold: Annotated[
        str | None,
        typer.Option("--threshold", help="Heatmap threshold stored in the model, in (0, 1), or 'val' to choose it."),
    ] = None,
    classifier: Annotated[
        str | None,
        typer.Option("--classifier", help="vgg16_bn, mnist_net, mnist_net_gmp, mnist_net_deep or mnist_net_wide."),
    ] = None,
    glyph_warps: Annotated[
        bool | None,
        typer.Option("--glyph-warps/--no-glyph-warps", help="Scenes: rotate, shear, stretch, re-pen each digit."),
    ] = None,
    train_images: Annotated[
        int | None,
        typer.Option("--train-images", min=1, help="Synthetic recipes: images generated; default: the recipe's."),
    ] = None,
    scene_backgrounds: Annotated[
        str | None,
        typer.Option("--scene-backgrounds", help="Scenes: train (the benchmark's pool) or wide (+ other footage)."),
    ] = None,
    shape_clutter: Annotated[
        float | None,
        typer.Option("--shape-clutter", min=0.0, max=1.0, help="Scenes: share with pen strokes that are no digit."),
    ] = None,
    texture_backgrounds: Annotated[
        float | None,
        typer.Option("--texture-backgrounds", min=0.0, max=1.0, help="Scenes: share on procedural textures."),
    ] = None,
    photometric: Annotated[
        float | None,
        typer.Option(
            "--photometric", min=0.0, max=1.0, help="Scenes: share of backgrounds restyled (contrast, gamma, ...)."
        ),
    ] = None,
    pretrain_epochs: Annotated[
        int | None,
        typer.Option("--pretrain-epochs", min=0, help="XCNN: classifier epochs on digit canvases first (0 = off)."),
    ] = None,
    lr_schedule: Annotated[
        str | None,
        typer.Option("--lr-schedule", help="step (x0.1 from half the epochs, the authors') or cosine (per step)."),
    ] = None,
    classifier_lr_scale: Annotated[
        float | None,
        typer.Option("--classifier-lr-scale", min=0.0, help="XCNN: the classifier's learning rate / the generator's."),
    ] = None,
    lr_warmup: Annotated[
        float | None,
        typer.Option("--lr-warmup", min=0.0, help="Epochs of linear learning-rate warm-up from 0 (0 = none)."),
    ] = None,
    map_start: Annotated[
        float | None,
        typer.Option("--map-start", help="XCNN, context generator: the map's value at the start, in (-1, 1)."),
    ] = None,
    generator_starts: Annotated[
        int | None,
        typer.Option(
            "--generator-starts",
            min=1,
            help="XCNN: generator starts tried on the first batches; the best map on validation goes on.",
        ),
    ] = None,
    start_steps: Annotated[
        int | None,
        typer.Option("--start-steps", min=1, help="XCNN: training steps each generator start is given (200)."),
    ] = None,
    ema: Annotated[
        float | None,
        typer.Option("--ema", min=0.0, help="Validate and save the weights' moving average: decay per step (0 = off)."),
    ] = None,
    compile_model: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile",
            help="Training steps run IBN's instance norm through torch.compile (--generator context-ibn: ~1.6x).",
        ),
    ] = None,
) -> None:
    """Train XCNN (or the plain classifier) with a recipe; under torchrun for several GPUs or nodes."""

    def job() -> None:
        _check_train_args(out, lr)
        if (generator_starts or 1) > 1 and arch != "xcnn":
            raise EdgeXcnnError("--generator-starts only applies to --arch xcnn (it chooses the generator's start)")
        _need_torch()
        from edge_xcnn.train.loop import TrainOptions
        from edge_xcnn.train.loop import train as run_training
        from edge_xcnn.train.recipes import get_recipe

        if arch not in ("xcnn", "plain"):
            raise EdgeXcnnError(f"--arch must be 'xcnn' or 'plain', got {arch!r}")
        if fig7 is not None and arch != "xcnn":
            raise EdgeXcnnError("--fig7 only applies to --arch xcnn")
        base = get_recipe(recipe)
        chosen = base.with_overrides(
            epochs=epochs, batch_size=batch, lr=lr, seed=seed,
            generator_width=generator_width, generator_levels=generator_levels, generator=generator,
            train_data=train_data, loss=loss, area_prior=area_prior, bas=bas, objective_warmup=objective_warmup,
            empty_prior=empty_prior, classifier=classifier, glyph_warps=glyph_warps, train_images=train_images,
            classifier_pretrain_epochs=pretrain_epochs, scene_backgrounds=scene_backgrounds, lr_schedule=lr_schedule,
            shape_clutter=shape_clutter, classifier_lr_scale=classifier_lr_scale, ema=ema, lr_warmup=lr_warmup,
            texture_backgrounds=texture_backgrounds, photometric=photometric, compile=compile_model,
            map_start=map_start, generator_starts=generator_starts, start_steps=start_steps,
        )  # fmt: skip
        if threshold is not None:
            chosen = dataclasses.replace(chosen, threshold=_threshold_option(threshold))
        chosen.validate()
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


def _check_train_args(out: Path | None, lr: float | None) -> None:
    """What can be refused before torch is imported and an epoch is spent."""
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise EdgeXcnnError(f"--lr must be a positive number, got {lr}")
    if out is not None:
        check_output(out, overwrite=True, folder=True, what="--out")


def _threshold_option(text: str) -> float | None:
    if text == "val":
        return None
    try:
        value = float(text)
    except ValueError:
        raise EdgeXcnnError(f"--threshold must be a number in (0, 1) or 'val', got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise EdgeXcnnError(f"--threshold must be in (0, 1), got {value}")
    return value


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
    server: Annotated[
        str | None, typer.Option("--server", help="A KServe v2 server (Triton): HOST:PORT(/MODEL), or http://...")
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Top-1 accuracy and, on data with boxes, the paper's heatmap localization (checkpoint or ONNX)."""

    def job() -> None:
        _check_outputs(overwrite, ("--json", json_path), ("--figure", figure))
        if figure is not None and figure.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            raise EdgeXcnnError(f"--figure must be a .png or .jpg file, got {figure}")
        from edge_xcnn.backends import open_backend
        from edge_xcnn.fileio import atomic_output

        try:
            from edge_xcnn.train.data_spec import open_for_model
            from edge_xcnn.train.evaluate import evaluate as run_eval
        except ImportError as e:
            raise MissingDependency(e.name or "matplotlib", "data") from e
        backend = open_backend(model, device=device) if server is None else open_backend(model, "triton", server=server)
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
def compare(
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="XCNN checkpoint (.safetensors); default: the shipped model.")
    ] = None,
    plain: Annotated[
        Path | None,
        typer.Option("--plain", help="The plain classifier trained with the same recipe (--arch plain)."),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option("--data", help="NAME[:SPLIT] or a dataset path with boxes; default: the model's test split."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="The first N images of the split.")] = 500,
    methods: Annotated[
        str | None,
        typer.Option(
            "--methods",
            help="Comma-separated, default all: xcnn, gradcam, gradcam++, hirescam, scorecam, eigencam, "
            "guided-gradcam, saliency, guided-backprop, deconvolution, input-x-gradient, integrated-gradients.",
        ),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Images per attribution batch.")] = 32,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu, cuda, cuda:1; default: CUDA when available.")
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write every figure as JSON.")] = None,
    report_dir: Annotated[
        Path | None, typer.Option("--report", help="Write report.md, grid.png and compare.json to this folder.")
    ] = None,
    sanity: Annotated[
        int, typer.Option("--sanity", min=0, help="Images for the model-randomization check (0: skip).")
    ] = 16,
    cost: Annotated[bool, typer.Option("--cost/--no-cost", help="Measure heatmaps/s and peak memory.")] = True,
    cost_seconds: Annotated[float, typer.Option("--cost-seconds", min=0.0, help="Timing per method and batch.")] = 2.0,
    onnx: Annotated[
        list[Path] | None,
        typer.Option("--onnx", help="ONNX export(s) of the XCNN model to add as cost rows (FP32 or INT8)."),
    ] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads for every method.")] = None,
    causal_steps: Annotated[
        int | None,
        typer.Option("--causal-steps", min=0, help="Deletion/insertion steps; default: one image row each; 0: skip."),
    ] = None,
    grid: Annotated[int, typer.Option("--grid", min=1, help="Images (rows) in the report's PNG grid.")] = 8,
    overwrite: OverwriteOpt = False,
) -> None:
    """XCNN's heatmap against Grad-CAM & co. on the same classifier: WSOL metrics, sanity check, cost."""

    def job() -> None:
        _check_outputs(overwrite, ("--json", json_path))
        _check_outputs(overwrite, ("--report", report_dir), folder=True)
        for option, given in (("--model", model), ("--plain", plain)):
            if given is not None and not given.is_file():
                raise EdgeXcnnError(f"{option} file not found: {given}")
        _need_torch()
        from edge_xcnn.explain.compare import CompareOptions, run_compare
        from edge_xcnn.explain.methods import parse_methods
        from edge_xcnn.explain.report import print_report, write_json, write_markdown

        for path in onnx or []:
            if not path.is_file():
                raise EdgeXcnnError(f"--onnx file not found: {path}")
        if onnx:  # the ONNX cost rows come last: a missing runtime must not cost the whole comparison
            _need_onnx_runtime()
        options = CompareOptions(
            model=model, plain=plain, data=data, limit=limit, methods=parse_methods(methods), batch=batch,
            device=device, causal_steps=causal_steps, sanity_images=sanity, cost=cost, cost_seconds=cost_seconds,
            threads=threads, onnx=list(onnx or []), grid_images=grid,
        )  # fmt: skip
        try:
            report = run_compare(options, console=err_console)
        except ImportError as e:
            raise MissingDependency(e.name or "matplotlib", "data") from e
        print_report(report, console)
        if json_path:
            write_json(report, json_path)
        if report_dir:
            written = write_markdown(report, report_dir, command="edge-xcnn compare " + " ".join(_argv()))
            console.print(f"report: {written}", markup=False)

    _guarded(job)


def _need_onnx_runtime() -> None:
    """Fail now, with what to install, if ``onnx`` or ``onnxruntime`` is missing."""
    for module in ("onnx", "onnxruntime"):
        try:
            __import__(module)
        except ImportError as e:
            raise MissingDependency(module, "export") from e


def _argv() -> list[str]:
    import sys

    args = sys.argv[1:]
    return args[args.index("compare") + 1 :] if "compare" in args else args


@app.command()
def export(
    model: ModelOpt = None,
    fmt: Annotated[
        str,
        typer.Option("--format", help="onnx; engine (TensorRT, this machine's GPU); triton (a model repository)."),
    ] = "onnx",
    platform: Annotated[
        str, typer.Option("--platform", help="triton: onnxruntime (the ONNX) or tensorrt (an engine for the server).")
    ] = "onnxruntime",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Default: runs/export/<model>.onnx (engines: .<precision>.engine)."),
    ] = None,
    batch: Annotated[int | None, typer.Option("--batch", min=1, help="Static batch size; default: dynamic.")] = None,
    dynamic: Annotated[bool, typer.Option("--dynamic", help="Dynamic batch (the default), 1 to --max-batch.")] = False,
    max_batch: Annotated[
        int, typer.Option("--max-batch", min=1, help="Engines: largest batch of a dynamic engine (tuned for half).")
    ] = 16,
    opset: Annotated[int, typer.Option("--opset", min=17)] = 18,
    fp16: Annotated[
        bool,
        typer.Option("--fp16", help="onnx: also write <name>.fp16.onnx (FP32 inputs/outputs); engine: FP16 engine."),
    ] = False,
    int8: Annotated[
        bool,
        typer.Option("--int8", help="Also write a calibrated Q/DQ INT8 ONNX (<name>.int8.onnx); engine: INT8 from it."),
    ] = False,
    calib: Annotated[
        str | None,
        typer.Option("--calib", help="Video, image folder/glob or data spec; default: the model's training data."),
    ] = None,
    calib_count: Annotated[int, typer.Option("--calib-count", min=1, help="Calibration frames.")] = 256,
    calib_pick: Annotated[str, typer.Option("--calib-pick", help="even (spread over the source) or random.")] = "even",
    calib_method: Annotated[
        str, typer.Option("--calib-method", help="percentile (99.999%), entropy (KL, as TensorRT's) or minmax.")
    ] = "percentile",
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the INT8 agreement report as JSON.")] = None,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Engines: replace an existing engine even if stale or foreign.")
    ] = False,
    dla_core: Annotated[
        int | None,
        typer.Option("--dla-core", min=0, help="Engines: run on this DLA core (Jetson), GPU fallback; static batch."),
    ] = None,
    via: Annotated[
        str | None, typer.Option("--via", help="Engines: torch-tensorrt to compile the checkpoint with it.")
    ] = None,
    workspace: Annotated[float, typer.Option("--workspace", help="Engines: builder workspace limit, GiB.")] = 1.0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Export a checkpoint to ONNX (FP32, FP16, INT8 Q/DQ) or build a TensorRT engine on this machine."""

    def job() -> None:
        from edge_xcnn.checkpoint import DEFAULT_MODEL, resolve_model

        if fmt not in ("onnx", "engine", "triton"):
            raise EdgeXcnnError(f"--format must be onnx, engine or triton, got {fmt!r}")
        if fmt == "triton":
            from edge_xcnn.export.triton_repo import PLATFORMS, export_triton

            if platform not in PLATFORMS:
                raise EdgeXcnnError(f"--platform must be one of {', '.join(PLATFORMS)}, got {platform!r}")
            if batch is not None or int8 or rebuild or dla_core is not None or via:
                raise EdgeXcnnError("--format triton takes --model, --out, --platform, --max-batch and --fp16")
            folder = export_triton(
                Path(model) if model else None, out or Path("runs/triton"), platform=platform, max_batch=max_batch,
                fp16=fp16, overwrite=overwrite,
            )  # fmt: skip
            console.print(f"wrote {folder} (tritonserver --model-repository {folder.parent})", markup=False)
            return
        if batch is not None and dynamic:
            raise EdgeXcnnError("--batch N (static) and --dynamic exclude each other: pick one")
        _check_export_args(calib_pick, calib_method, workspace, opset)
        resolve_model(model)  # a missing or foreign file: one line before anything is imported
        _check_outputs(overwrite, ("--json", json_path))
        if fmt == "onnx":
            target = out or EXPORTS / (model or DEFAULT_MODEL).with_suffix(".onnx").name
            if target.suffix.lower() != ".onnx":
                raise EdgeXcnnError(f"--out must be a .onnx file, got {target}")
            _check_outputs(
                overwrite, ("--out", target), ("--fp16", target.with_suffix(".fp16.onnx") if fp16 else None),
                ("--int8", target.with_suffix(".int8.onnx") if int8 else None),
            )  # fmt: skip
        if fmt == "engine":
            _export_engine(
                resolve_model(model), out, fp16=fp16, int8=int8, batch=batch, dynamic=dynamic, max_batch=max_batch,
                opset=opset, calib=(calib, calib_count, calib_pick, calib_method, json_path), rebuild=rebuild,
                dla_core=dla_core, via=via, workspace=workspace,
            )  # fmt: skip
            return
        if rebuild or dla_core is not None or via:
            raise EdgeXcnnError("--rebuild, --dla-core and --via apply to --format engine")
        _need_torch()
        from edge_xcnn.export.onnx_export import export_onnx

        source = model or DEFAULT_MODEL
        target = out or EXPORTS / source.with_suffix(".onnx").name
        written = export_onnx(model, target, batch=batch, opset=opset)
        console.print(f"wrote {written} ({written.stat().st_size / 1024:.0f} KB)", markup=False)
        if fp16:
            _export_fp16(written)
        if int8:
            _export_int8(written, calib, calib_count, calib_pick, calib_method, json_path)

    _guarded(job)


def _check_export_args(pick: str, method: str, workspace: float, opset: int) -> None:
    from edge_xcnn.calib.quantize import METHODS

    if method not in METHODS:
        raise EdgeXcnnError(f"--calib-method must be one of {', '.join(METHODS)}, got {method!r}")
    if pick not in ("even", "random"):
        raise EdgeXcnnError(f"--calib-pick must be 'even' or 'random', got {pick!r}")
    if not (math.isfinite(workspace) and workspace > 0):
        raise EdgeXcnnError(f"--workspace must be a positive number of GiB, got {workspace}")
    if opset > 23:
        raise EdgeXcnnError(f"--opset must be 17 to 23, got {opset}")


def _export_fp16(fp32: Path) -> Path:
    from edge_xcnn.export.onnx_fp16 import convert_fp16

    target = convert_fp16(fp32, fp32.with_suffix(".fp16.onnx"))
    size = target.stat().st_size / 1024
    console.print(f"wrote {target} ({size:.0f} KB), FP16 inside, FP32 inputs and outputs", markup=False)
    return target


def _export_engine(source: Path, out: Path | None, *, fp16: bool, int8: bool, batch: int | None, dynamic: bool,
                   max_batch: int, opset: int, calib: tuple, rebuild: bool, dla_core: int | None, via: str | None,
                   workspace: float) -> None:  # fmt: skip
    """TensorRT first (one line when it or a GPU is missing), then the ONNX it needs, then build or reuse."""
    from edge_xcnn.backends.tensorrt_backend import probe_tensorrt
    from edge_xcnn.checkpoint import read_meta
    from edge_xcnn.engine_sidecar import file_sha256
    from edge_xcnn.errors import BadModelFile
    from edge_xcnn.export import tensorrt_plan as tp

    if fp16 and int8:
        raise EdgeXcnnError("an engine is --fp16 or --int8, not both (INT8 engines keep other layers in FP16 where "
                            "TensorRT has precision flags, i.e. before 10.12)")  # fmt: skip
    if via not in (None, "torch-tensorrt"):
        raise EdgeXcnnError(f"--via must be torch-tensorrt, got {via!r}")
    trt, _, here = probe_tensorrt()
    from edge_xcnn.export.tensorrt_engine import build_engine, build_engine_torch_tensorrt, onnx_info

    is_onnx = source.suffix.lower() == ".onnx"
    meta, given = onnx_info(source) if is_onnx else (read_meta(source), "checkpoint")
    precision = "int8" if int8 else "fp16" if fp16 else "fp32"
    profile = tp.profile_shapes(
        meta.channels, meta.input_size, batch=batch, dynamic=dynamic, max_batch=max_batch, dla=dla_core is not None
    )
    plan = tp.plan_build(here.tensorrt, precision, profile, dla_core=dla_core, workspace_gib=workspace)
    target = out or tp.default_engine_path(source, precision, EXPORTS)
    if via:
        if is_onnx:
            raise EdgeXcnnError("--via torch-tensorrt compiles a checkpoint, not an ONNX file")
        built_from, digest = source, file_sha256(source)
    else:
        built_from = _engine_onnx(source, given, plan.onnx, target.parent, opset, calib)
        digest = file_sha256(built_from)
    action, why = tp.existing_engine_action(target, plan, here, digest, rebuild=rebuild)
    if action == "refuse":
        raise BadModelFile(why)
    if action == "reuse":
        console.print(why, markup=False)
        return
    if why:
        console.print(why, markup=False)
    console.print(f"building {precision} engine ({plan.typing}ly typed, TensorRT {here.tensorrt}, {here.gpu}) "
                  f"from {built_from.name}: this takes a while", markup=False)  # fmt: skip
    if via:
        build_engine_torch_tensorrt(source, plan, target, trt=trt, here=here)
    else:
        build_engine(built_from, plan, target, meta, trt=trt, here=here, timing_cache=tp.timing_cache_path(here))
    console.print(f"wrote {target} ({target.stat().st_size / 1024:.0f} KB) and {target.name}.json", markup=False)


def _engine_onnx(source: Path, given: str, needed: str, folder: Path, opset: int, calib: tuple) -> Path:
    """The ONNX an engine is built from: ``source`` itself when it already is that, else exported beside the engine."""
    if given == needed:
        return source
    if given == "checkpoint":
        _need_torch()
        from edge_xcnn.export.onnx_export import export_onnx

        fp32 = export_onnx(source, folder / f"{source.name.split('.')[0]}.onnx", opset=opset)
        console.print(f"wrote {fp32}", markup=False)
    elif given == "fp32":
        fp32 = source
    else:
        raise EdgeXcnnError(f"{source.name} is a {given} ONNX; this engine needs the {needed} one: give the "
                            "checkpoint or the FP32 export as --model")  # fmt: skip
    if needed == "fp32":
        return fp32
    return _export_fp16(fp32) if needed == "fp16" else _export_int8(fp32, *calib)


def _export_int8(fp32: Path, calib: str | None, count: int, pick: str, method: str, json_path: Path | None) -> Path:
    from edge_xcnn.backends import open_backend
    from edge_xcnn.calib.agreement import agreement
    from edge_xcnn.calib.frames import calibration_batch, default_calibration_spec
    from edge_xcnn.calib.quantize import METHODS, keep_float_nodes, quantize_int8
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
    request = json.dumps(["ranges-v2", spec, count, pick, method])  # v2: entropy really is entropy
    key = hashlib.sha256(fp32.read_bytes() + request.encode()).hexdigest()[:12]
    ranges = fp32.with_name(f"{fp32.stem}.calib-{key}.json")
    if ranges.is_file():
        frames, how = None, f"reusing calibration ranges from {ranges}"
    else:
        frames = calibration_batch(spec, meta, count=count, pick=pick)
        how = f"calibrated on {len(frames)} frames of {spec} ({method}); ranges saved to {ranges}"
    keep = keep_float_nodes(fp32)
    target = quantize_int8(fp32, fp32.with_suffix(".int8.onnx"), frames, method, ranges=ranges, keep_float=keep)
    console.print(f"wrote {target} ({target.stat().st_size / 1024:.0f} KB), {how}", markup=False, soft_wrap=True)
    if keep:
        console.print(
            f"kept in float (the heatmap's last layer, the classifier's ends): {', '.join(keep)}",
            markup=False, soft_wrap=True,
        )  # fmt: skip
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
                json.dumps(
                    {"model": str(target), "calibration": spec, "method": method, "kept_float": keep}
                    | report.to_dict(),
                    indent=2,
                )
            )
    return target


@app.command()
def bench(
    model: ModelOpt = None,
    backends: Annotated[
        list[str] | None,
        typer.Option(
            "--backend",
            help="torch, onnxruntime, tensorrt, optionally :fp32/:fp16/:bf16/:int8; comma-separated or repeated; "
            "default: all here.",
        ),
    ] = None,
    batches: Annotated[
        list[str] | None, typer.Option("--batch", help="Batch sizes, comma-separated or repeated; default 1,8.")
    ] = None,
    seconds: Annotated[float, typer.Option("--seconds", min=0.1, help="Timing per row.")] = 3.0,
    accuracy_images: Annotated[
        int, typer.Option("--images", min=0, help="Labelled test images for top-1 (0: skip).")
    ] = 500,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads for every runtime.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the rows as JSON.")] = None,
    video: Annotated[
        Path | None,
        typer.Option("--video", help="Also decode-only, model-only and end-to-end `run` rates on this file."),
    ] = None,
    video_frames: Annotated[
        int | None, typer.Option("--video-frames", min=1, help="Use only the first N frames of --video.")
    ] = None,
    sources: Annotated[
        int, typer.Option("--sources", min=1, help="--video: also N copies of the file in one run (aggregate).")
    ] = 1,
    video_batch: Annotated[
        int, typer.Option("--video-batch", min=1, help="--video: frames per inference call (run --batch).")
    ] = 1,
    rounds: Annotated[
        int,
        typer.Option("--rounds", min=1, help="--video: measure every rate this many times, in rounds; report medians."),
    ] = 3,
    server: Annotated[
        str | None, typer.Option("--server", help="Also time a KServe v2 server (Triton): HOST:PORT(/MODEL).")
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Model-only speed and accuracy of every runtime and precision here, PyTorch eager as the baseline.

    With ``--video``, each backend's batch-1 row also gets, in one run: FFmpeg's raw decode rate, the
    pipeline's decode, model-only on the file's frames, ``run`` results-only and annotated (mp4 + JSON
    lines) with run's own thread shares, the limit 1 / (1/raw decode + 1/model-only) and the ratios;
    each the median of ``--rounds`` rounds (a short file runs in under a second: one round is noise).
    """

    def job() -> None:
        import tempfile

        _check_outputs(overwrite, ("--json", json_path))
        if video is not None:
            from edge_xcnn.stream.uri import parse_source

            if parse_source(str(video)).kind != "file":
                raise EdgeXcnnError(f"--video takes a video file, got {video}")
        from edge_xcnn.backends.factory import backend_for, open_backend
        from edge_xcnn.bench import (
            Machine,
            measure_rows,
            open_row,
            parse_backends,
            plan_rows,
            prepare_files,
            rows_table,
        )
        from edge_xcnn.checkpoint import resolve_model
        from edge_xcnn.fileio import atomic_output

        path = resolve_model(model)
        sizes = [int(b) for b in split_list(batches, "--batch", int_min=1)] or [1, 8]
        backends_asked = split_list(backends, "--backend") or None
        with tempfile.TemporaryDirectory() as work:
            if backend_for(path) == "torch":  # a checkpoint: every runtime, exported here
                _need_torch()
                from edge_xcnn.calib.frames import calibration_batch, default_calibration_spec
                from edge_xcnn.checkpoint import read_meta

                meta = read_meta(path)
                specs = plan_rows(parse_backends(backends_asked), Machine.here())
                files = prepare_files(
                    path, specs, Path(work), max_batch=max(sizes),
                    calibration=lambda: calibration_batch(default_calibration_spec(meta), meta),
                )  # fmt: skip
                opened = [(lambda s=spec: open_row(s, files, threads), files[spec.file]) for spec in specs]
                reopen = [lambda t, s=spec: open_row(s, files, t) for spec in specs]
            else:  # an ONNX file or an engine: that file alone
                opened = [(lambda: open_backend(path, threads=threads), path)]
                reopen = [lambda t: open_backend(path, threads=t)]
            if server is not None:  # the same model served remotely, timed interleaved with the local rows
                opened.append(
                    (lambda: open_backend(path if path.suffix == ".onnx" else None, "triton", server=server), path)
                )
            entries, held_out = [], None  # all open at once: their timings are interleaved (bench.measure_rows)
            try:
                for make, file in opened:
                    backend = make()
                    entries.append((backend, file, None))
                    if accuracy_images:
                        from edge_xcnn.train.data_spec import open_for_model

                        if held_out is None:
                            held_out = open_for_model(None, backend.meta)[0]
                        entries[-1] = (backend, file, _top1(backend, held_out, accuracy_images))
                rows = measure_rows(entries, sizes, seconds=seconds)
                if video is not None:
                    local = [backend for backend, _, _ in entries][: len(reopen)]
                    _add_video_columns(
                        rows, local, reopen, video, video_frames, sources=sources, batch=video_batch, rounds=rounds
                    )
            finally:
                for backend, _, _ in entries:
                    backend.close()
        console.print(rows_table(rows, f"model-only benchmark: {path.name}, threads: {threads or 'default'}"))
        if video is not None:
            from edge_xcnn.bench import video_table

            console.print(
                video_table(rows, f"{video.name}: frames per second, median of {rounds} round(s) (ratios: / limit)")
            )
        if json_path:
            with atomic_output(json_path) as tmp:
                tmp.write_text(json.dumps([row.to_dict() for row in rows], indent=2))

    _guarded(job)


def _add_video_columns(
    rows: list,
    backends: list,
    reopen: list,
    video: Path,
    limit: int | None,
    *,
    sources: int,
    batch: int,
    rounds: int = 1,
) -> None:
    """Fill the batch-1 rows' video figures, one backend after the other on the same file.

    Model-only runs on the backend as opened for the table (``--threads`` or the runtime's default: the
    whole machine); the runs use the same model reopened with ``run``'s own share of the cores.
    """
    from edge_xcnn.stream.threads import ThreadPlan, plan_inference
    from edge_xcnn.stream.uri import parse_source
    from edge_xcnn.stream.video_bench import bench_video

    if parse_source(str(video)).kind != "file":
        raise EdgeXcnnError(f"--video takes a video file, got {video}")
    for backend, make in zip(backends, reopen, strict=True):
        torch = sys.modules.get("torch")
        saved = torch.get_num_threads() if torch is not None else None  # torch's count is process-wide
        with console.status(f"--video: {backend.name} {backend.precision} on {video.name}"):
            # run's own share, measured as run measures it (results-only, this file, this batch)
            runs, plan = plan_inference(make, ThreadPlan.for_run(), sources=[str(video)], full=False, batch=batch)
            try:  # (PyTorch rows: model-only too runs with run's share, torch's count being process-wide)
                result = bench_video(
                    backend, video, limit, run_backend=runs, batch=batch, sources=sources, rounds=rounds
                )
            finally:
                runs.close()
                if torch is not None and saved is not None:
                    torch.set_num_threads(saved)
        for row in rows:
            if row.batch == 1 and (row.backend, row.precision) == (backend.name, backend.precision):
                row.video_decode_fps = result.decode_fps
                row.video_model_fps = result.model_fps
                row.video_end_to_end_fps = result.end_to_end_fps
                row.video_serial_fps = result.serial_fps
                row.video_raw_decode_fps = result.raw_decode_fps
                row.video_results_fps = result.results_fps
                row.video_limit_fps = result.limit_fps
                row.video_sources, row.video_sources_fps = result.sources, result.sources_fps
                row.video = result.to_dict()
        runtime = result.runtime + (f" [{plan.note}]" if plan.note else "")
        console.print(f"{backend.name} {backend.precision} on {video.name}: {runtime}", markup=False, soft_wrap=True)


def _top1(backend: object, dataset: object, limit: int) -> float:
    from edge_xcnn.train.evaluate import evaluate as run_eval

    return run_eval(backend, dataset, data_name="", limit=limit).top1


def _print_report(report: dict, kind: str) -> None:
    table = Table(title=f"{report['data']} ({report['images']} images, {kind})")
    table.add_column("method")
    table.add_column("top-1", justify="right")
    loc = report.get("localization")
    if loc:
        for name in ("GT-known loc", "top-1 loc", "mean IoU"):
            table.add_column(name, justify="right")
        rows = [(f"XCNN heatmap, model's threshold {loc.get('threshold', 0.5):.2f}", loc)]
        if "at_0.5" in loc and loc.get("threshold", 0.5) != 0.5:
            rows.append(("XCNN heatmap, paper's 0.5", loc["at_0.5"]))
        rows += [("centred box of mean size", loc["centred_mean_box"]), ("whole image", loc["whole_image"])]
        for name, figures in rows:
            table.add_row(
                name, f"{report['top1']:.2%}", f"{figures['gt_known_loc']:.2%}", f"{figures['top1_loc']:.2%}",
                f"{figures['mean_iou']:.3f}",
            )  # fmt: skip
    else:
        table.add_row("classifier", f"{report['top1']:.2%}")
    console.print(table)
    if loc and "MaxBoxAccV2" in loc:
        pxap = loc.get("PxAP")
        thirds = loc["saturation_thirds"]
        console.print(
            f"MaxBoxAccV2 {loc['MaxBoxAccV2']:.2%}   PxAP {'n/a' if pxap is None else f'{pxap:.2%}'}   "
            f"GT-known loc by background saturation: least {thirds['least']['gt_known_loc']:.2%}, "
            f"middle {thirds['middle']['gt_known_loc']:.2%}, most {thirds['most']['gt_known_loc']:.2%}",
            markup=False,
        )


# Commands that live with their subsystem.
app.command("run")(_stream_command.run)
app.command("demo")(_stream_command.demo)
