"""``edge-xcnn run`` and ``edge-xcnn demo``: the runner's command line (registered by ``edge_xcnn.cli``).

Order of every command here: option ranges, inputs and outputs checked (one line, exit 2, nothing
loaded); then the model; then the run, with SIGINT/SIGTERM finishing the outputs (exit 130/143).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from edge_xcnn.console import Interrupted, console, err_console, guarded, stop_signals
from edge_xcnn.errors import EdgeXcnnError
from edge_xcnn.outputs import check_output, next_run_folder
from edge_xcnn.stream.overlay import OverlayOptions
from edge_xcnn.stream.pipeline import Runner, RunOptions, RunSummary, check_run, wants_full_frames
from edge_xcnn.stream.sinks import wants_window
from edge_xcnn.stream.step import LocalizeOptions
from edge_xcnn.stream.threads import ThreadPlan, plan_inference
from edge_xcnn.stream.tracking import FILE_FILL_GAPS, TRACKERS, TrackerOptions
from edge_xcnn.stream.uri import parse_sink, parse_source

DEFAULT_BATCH = 8  # run --batch when not given (and decoding does not set the pace)

RUNS = Path("runs")

OverwriteOpt = Annotated[bool, typer.Option("--overwrite", "-y", help="Replace existing output files.")]


def run(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(help="Video files, rtsp://, http(s)://, v4l2://, csi://N, folders (or --config)."),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Checkpoint, ONNX or engine.")] = None,
    outputs: Annotated[
        list[str] | None,
        typer.Option(
            "--out", "-o", "--output", help="Video file, folder, .jsonl, rtsp://, mqtt://, display://0 (repeatable)."
        ),
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="JSON lines, one object per frame.")] = None,
    mot_path: Annotated[Path | None, typer.Option("--mot", help="MOTChallenge text of the tracks.")] = None,
    summary_path: Annotated[Path | None, typer.Option("--summary", help="Write the run summary as JSON.")] = None,
    overwrite: OverwriteOpt = False,
    backend: Annotated[str, typer.Option("--backend", help="auto, onnxruntime, torch or tensorrt.")] = "auto",
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:N; default: the best here.")] = None,
    precision: Annotated[
        str | None, typer.Option("--precision", help="torch backend: fp32, fp16, bf16; files have their own.")
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="CPU threads for inference; default: half the cores.")
    ] = None,
    batch: Annotated[
        int | None,
        typer.Option(
            "--batch",
            min=1,
            help="Consecutive frames of a file per inference call (live: 1); default 8, or 1 when decoding is "
            "measured to be at least twice as slow as the model.",
        ),
    ] = None,
    preview: Annotated[
        int | None,
        typer.Option("--preview-size", min=16, help="Draw and encode at most N pixels wide/high (results stay full)."),
    ] = None,
    headless: Annotated[bool, typer.Option("--headless", help="No window.")] = False,
    max_frames: Annotated[
        int | None, typer.Option("--max-frames", min=1, help="Stop after N frames per source.")
    ] = None,
    duration: Annotated[float | None, typer.Option("--duration", help="Stop after S seconds (> 0).")] = None,
    vid_stride: Annotated[int, typer.Option("--vid-stride", min=1, help="Process every Nth frame.")] = 1,
    decoder: Annotated[str, typer.Option("--decoder", help="pyav, gstreamer (decodebin), nvv4l2 (Jetson).")] = "pyav",
    tracker: Annotated[str, typer.Option("--tracker", help=f"One of {', '.join(TRACKERS)}.")] = "bytetrack",
    track_thresh: Annotated[float, typer.Option("--track-thresh", help="Score to start a track, [0, 1].")] = 0.6,
    track_buffer: Annotated[int, typer.Option("--track-buffer", help="Frames a lost track is kept (>= 1).")] = 30,
    match_iou: Annotated[float, typer.Option("--match-iou", help="Least IoU to continue a track, [0, 1].")] = 0.1,
    fill_gaps: Annotated[
        int | None,
        typer.Option(
            "--fill-gaps",
            help=f"Fill a track's gaps of up to N frames by interpolation; results leave N frames late. "
            f"Default {FILE_FILL_GAPS} for video files, 0 (off) for live sources and image folders.",
        ),
    ] = None,
    keep: Annotated[str, typer.Option("--keep", help="all contours, or the largest (the paper's rule).")] = "all",
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="Heat threshold in (0, 1); default the model's.")
    ] = None,
    min_area: Annotated[
        float, typer.Option("--min-area", help="Least box area, fraction of the map, [0, 1).")
    ] = LocalizeOptions.min_area,
    classify_boxes: Annotated[bool, typer.Option("--classify-boxes", help="Classify each box's crop.")] = False,
    box_evidence: Annotated[
        float | None,
        typer.Option(
            "--box-evidence",
            help="Keep a box only if the classifier, shown the map inside it alone, gives a class this "
            "probability, [0, 1); default the model's, 0 = off. Also names each box's class.",
        ),
    ] = None,
    show_heatmap: Annotated[bool, typer.Option("--heatmap/--no-heatmap", help="Draw the heatmap.")] = True,
    show_boxes: Annotated[bool, typer.Option("--boxes/--no-boxes", help="Draw boxes.")] = True,
    show_labels: Annotated[bool, typer.Option("--labels/--no-labels", help="Draw class and score.")] = True,
    show_tracks: Annotated[bool, typer.Option("--tracks/--no-tracks", help="Draw track ids and traces.")] = True,
    show_fps: Annotated[bool, typer.Option("--fps/--no-fps", help="Draw the frame rate.")] = True,
    reconnect_window: Annotated[
        float, typer.Option("--reconnect-window", help="Give up a lost live source after S seconds (>= 0).")
    ] = 30.0,
    config: Annotated[
        Path | None, typer.Option("--config", help="cameras.yaml: many cameras, one process, one batched model.")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics on this port.")
    ] = None,
    server: Annotated[
        str | None, typer.Option("--server", help="--backend triton: HOST:PORT or HOST:PORT/MODEL (gRPC), http://...")
    ] = None,
) -> None:
    """Heatmaps, boxes and tracks on video files, streams and cameras; writes video, JSON lines, MOT text."""

    def job() -> None:
        if config is not None:
            from edge_xcnn.stream.fleet_command import run_config

            if inputs or outputs or json_path or mot_path:
                raise EdgeXcnnError("--config takes cameras and outputs from the file: drop INPUT, -o, --json")
            run_config(
                config, model=model, backend=backend, server=server, device=device, threads=threads,
                overwrite=overwrite, max_frames=max_frames, duration=duration, metrics_port=metrics_port,
                summary_path=summary_path,
            )  # fmt: skip
            return
        if not inputs:
            raise EdgeXcnnError("run needs at least one input (a file, a stream, a camera) or --config cameras.yaml")
        options = build_options(
            inputs, outputs, headless=headless, json_path=json_path, mot_path=mot_path, overwrite=overwrite,
            max_frames=max_frames, duration=duration, vid_stride=vid_stride, decoder=decoder,
            tracker=tracker_options(tracker, track_thresh, track_buffer, match_iou, fill_gaps),
            localize=localize_options(threshold, keep, min_area, classify_boxes, box_evidence),
            overlay=OverlayOptions(show_heatmap, show_boxes, show_labels, show_tracks, show_fps),
            reconnect_window=reconnect_window, batch=batch or DEFAULT_BATCH, preview_size=preview,
        )  # fmt: skip
        execute(
            options, model, backend, device, summary_path, precision=precision, threads=threads, server=server,
            metrics_port=metrics_port, auto_batch=batch is None,
        )  # fmt: skip

    guarded(job)


def tracker_options(name: str, thresh: float, buffer: int, iou: float, fill_gaps: int | None = None) -> TrackerOptions:
    _choice(name, TRACKERS, "--tracker")
    return TrackerOptions(
        name=name,  # type: ignore[arg-type]
        track_activation_threshold=thresh,
        lost_track_buffer=buffer,
        minimum_iou_threshold=iou,
        fill_gaps=fill_gaps,
    )


def localize_options(
    threshold: float | None, keep: str, min_area: float, classify: bool, box_evidence: float | None = None
) -> LocalizeOptions:
    if box_evidence is not None and not 0.0 <= box_evidence < 1.0:
        raise EdgeXcnnError(f"--box-evidence must be in [0, 1) (a probability; 0 = no check), got {box_evidence}")
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise EdgeXcnnError(f"--threshold must be in (0, 1) (a fraction of the map's range), got {threshold}")
    if not 0.0 <= min_area < 1.0:
        raise EdgeXcnnError(f"--min-area must be in [0, 1) (a fraction of the map's area), got {min_area}")
    _choice(keep, ("all", "largest"), "--keep")
    return LocalizeOptions(
        threshold=threshold, keep=keep, min_area=min_area, classify_boxes=classify,  # type: ignore[arg-type]
        box_evidence=box_evidence,
    )  # fmt: skip


def build_options(inputs: list[str], outputs: list[str] | None, *, headless: bool, **kwargs: Any) -> RunOptions:
    """Run options, checked.

    The results-only rule: an annotated video (or JPEGs, a stream push, a window) is made only when an
    output asks for pictures (``-o out.mp4``, ``-o frames/``, ``-o rtsp://...``, ``display://0`` or the
    default window); otherwise nothing is drawn or encoded. A run given no output at all writes its JSON
    lines to a new ``runs/run*/<input name>.jsonl``.
    """
    chosen = list(outputs or [])
    if wants_window(headless, chosen):
        chosen.append("display://0")
    if not chosen and kwargs.get("json_path") is None and kwargs.get("mot_path") is None:
        name = parse_source(inputs[0]).name if inputs else "run"
        kwargs["json_path"] = next_run_folder(RUNS, "run") / f"{name}.jsonl"
    options = RunOptions(sources=list(inputs), outputs=chosen, **kwargs)
    check_run(options)
    return options


def thread_plan(options: RunOptions, threads: int | None) -> ThreadPlan:
    """The run's share of the cores per stage (``--threads`` sets inference's)."""
    encodes = any(parse_sink(o).kind in ("video", "stream") for o in options.outputs)
    return ThreadPlan.for_run(sources=len(options.sources), encodes=encodes, inference=threads)


def execute(
    options: RunOptions,
    model: str | None,
    backend: str,
    device: str | None,
    summary_path: Path | None,
    *,
    precision: str | None = None,
    threads: int | None = None,
    server: str | None = None,
    metrics_port: int | None = None,
    auto_batch: bool = False,
) -> RunSummary:
    """Check, open the model, run with a progress bar, print the summary (and write it); returns it.

    Raises the run's failure after the summary is printed, and :class:`Interrupted` after SIGINT/SIGTERM.
    """
    from edge_xcnn.backends.factory import open_backend

    check_run(options)
    if summary_path is not None:
        check_output(summary_path, overwrite=options.overwrite, what="--summary")
    runner: list[Runner] = []
    if options.threads is None:
        options.threads = thread_plan(options, threads)
    with stop_signals(lambda signum: runner[0].stop(signum) if runner else False):
        if server is None:
            from edge_xcnn.stream.fast_model import runner_model

            model, note = runner_model(model, backend, precision)
            if note is not None:
                err_console.print(note, markup=False, highlight=False, soft_wrap=True)

        def open_at(count: int) -> Any:
            return open_backend(model, backend=backend, device=device, precision=precision, threads=count,
                                server=server)  # fmt: skip

        if threads is None and server is None and options.threads.inference < options.threads.cores:
            # No --threads: measure whether the model or decoding sets the pace (threads.plan_inference).
            full = wants_full_frames(options)
            runtime, options.threads = plan_inference(
                open_at, options.threads, sources=options.sources, full=full, batch=options.batch
            )
            if auto_batch and options.threads.decode_bound and options.batch > 1:
                # Decode-bound: batching only saves inference time, and its bursts of inference and
                # post-processing take the decoder's cores. bigbuckbunny.mp4 (720p) here: 448 FPS at
                # batch 1, 387 at 8; bikes.mp4 (decoding as fast as the model): 612 at 1, 794 at 8.
                options.batch = 1
                options.threads = replace(options.threads, note=options.threads.note + "; batch 1")
        else:
            runtime = open_at(options.threads.inference)
        metrics = None
        if metrics_port is not None:
            from edge_xcnn.stream.fleet_command import attach_runner, start_metrics, with_metrics

            metrics = start_metrics(metrics_port)
            assert metrics is not None
            options, runtime = with_metrics(options, runtime, metrics)
        runner.append(Runner(options, runtime))
        if metrics is not None:
            attach_runner(metrics, runner[0])
        try:
            summary = _run_with_progress(runner[0])
        finally:
            if metrics is not None:
                metrics.close()
            done = runner[0].summary
            if summary_path is not None and (done.outputs or done.frames_out):
                write_summary(done, summary_path)
    return summary


def _run_with_progress(runner: Runner) -> RunSummary:
    failure: BaseException | None = None
    with Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("running", total=None)

        def on_result(_: Any) -> None:
            if progress.tasks[task].total is None and runner.declared_frames:
                progress.update(task, total=runner.declared_frames)
            progress.advance(task)

        runner.on_result = on_result
        try:
            runner.run()
        except BaseException as e:
            failure = e
    summary = runner.summary
    if summary.outputs or summary.frames_out:
        print_summary(summary, console)
    if failure is not None:
        raise failure
    if summary.signal is not None:
        raise Interrupted(summary.signal)
    return summary


def write_summary(summary: RunSummary, path: Path) -> None:
    from edge_xcnn.fileio import atomic_output

    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(summary.to_dict(), indent=2))


def print_summary(summary: RunSummary, out: Any) -> None:
    table = Table(title="run summary" + (" (interrupted)" if summary.interrupted else ""))
    table.add_column("stage")
    table.add_column("ms/frame", justify="right")
    table.add_column("FPS", justify="right")
    table.add_column("frames", justify="right")
    for name, stage in summary.stages.items():
        ms, fps = stage.ms_per_frame, stage.fps
        table.add_row(name, "-" if ms is None else f"{ms:.2f}", "-" if fps is None else f"{fps:.1f}", str(stage.frames))
    serial, e2e = summary.serial_fps, summary.end_to_end_fps
    table.add_row("serial (1 / sum of stages)", "-", "-" if serial is None else f"{serial:.1f}", "")
    table.add_row("end to end", "-", "-" if e2e is None else f"{e2e:.1f}", str(summary.frames_out))
    out.print(table)
    line = f"frames in {summary.frames_in}, out {summary.frames_out}, dropped {summary.dropped}"
    if summary.live:
        p50, p99 = summary.latency(50), summary.latency(99)
        if p50 is not None and p99 is not None:
            line += f"; capture-to-result latency p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        line += f"; reconnects {summary.reconnects}"
    out.print(line, highlight=False)
    out.print(summary.runtime_line(), highlight=False, markup=False, soft_wrap=True)
    for output in summary.outputs:
        out.print(f"wrote {escape(output)}", highlight=False)


def _choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    if value not in allowed:
        raise EdgeXcnnError(f"{option} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def demo(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Folder for the clip, the annotated video and results; default a new runs/demo*."
        ),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Checkpoint, ONNX or engine.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="auto, onnxruntime, torch or tensorrt.")] = "auto",
    frames: Annotated[int, typer.Option("--frames", min=10, help="Length of the clip.")] = 150,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the tracking metrics as JSON.")] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Moving real digits over real footage: run the model, draw and track, score against the ground truth."""

    def job() -> None:
        from edge_xcnn.backends.factory import open_backend
        from edge_xcnn.stream.demo import plain_reading, run_demo

        folder = out or next_run_folder(RUNS, "demo")
        check_output(folder, overwrite=overwrite, folder=True, what="--out")
        if json_path is not None:
            check_output(json_path, overwrite=overwrite, what="--json")
        runner: list[Runner] = []
        with stop_signals(lambda signum: runner[0].stop(signum) if runner else False):
            loaded = open_backend(model, backend=backend)
            with console.status("writing the clip and running the model"):
                result = run_demo(folder, loaded, frames=frames, overwrite=overwrite, started=runner.append)
        print_summary(result.summary, console)
        if result.summary.signal is not None:
            raise Interrupted(result.summary.signal)
        m = result.metrics
        table = Table(title=f"tracking vs ground truth ({result.clip.name}, IoU 0.5)")
        for name in ("MOTA", "IDF1", "HOTA", "IDSW", "MOTP", "DetA", "AssA"):
            table.add_column(name, justify="right")
        table.add_row(
            *(f"{m[k]:.1%}" for k in ("MOTA", "IDF1", "HOTA")), str(m["IDSW"]),
            *(f"{m[k]:.1%}" for k in ("MOTP", "DetA", "AssA")),
        )  # fmt: skip
        console.print(table)
        if {"TP", "FP", "FN"} <= set(m):
            console.print(plain_reading(m), markup=False)
        if result.stills:
            console.print(f"annotated frames: {', '.join(str(p) for p in result.stills)}", markup=False)
        if json_path is not None:
            from edge_xcnn.fileio import atomic_output

            with atomic_output(json_path) as tmp:
                tmp.write_text(json.dumps({"metrics": m, "run": result.summary.to_dict()}, indent=2))

    guarded(job)
