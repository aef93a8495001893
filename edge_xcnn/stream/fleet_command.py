"""The fleet parts of ``edge-xcnn run``: ``--config cameras.yaml`` and ``--metrics-port N``.

Kept out of :mod:`edge_xcnn.stream.command` so that the plain ``run`` stays what it was; that module
calls :func:`run_config` for ``--config`` and :func:`with_metrics` for ``--metrics-port``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from edge_xcnn.backends.base import Backend
from edge_xcnn.console import Interrupted, console, err_console, stop_signals
from edge_xcnn.errors import EdgeXcnnError
from edge_xcnn.stream.metrics import RunMetrics
from edge_xcnn.stream.pipeline import Runner, RunOptions

METRICS_ADDR = "0.0.0.0"  # Prometheus scrapes the box from elsewhere; firewall the port where needed


def start_metrics(port: int | None, addr: str = METRICS_ADDR) -> RunMetrics | None:
    """The endpoint for ``--metrics-port`` (None: no metrics), listening before the model loads."""
    if port is None:
        return None
    if not 0 <= port <= 65535:
        raise EdgeXcnnError(f"--metrics-port must be from 0 to 65535, got {port}")
    metrics = RunMetrics()
    bound = metrics.serve(port, addr)
    err_console.print(f"metrics on http://{addr}:{bound}/metrics", highlight=False)
    return metrics


def with_metrics(options: RunOptions, backend: Backend, metrics: RunMetrics) -> tuple[RunOptions, Backend]:
    """Options and backend for one runner that feeds ``metrics`` (results, batch sizes, live counts)."""
    from edge_xcnn.stream.shared import MetricsSink, SharedInference

    options.sinks = [*options.sinks, MetricsSink(metrics)]
    # One caller: the proxy computes every batch at once (no waiting) and reports its size.
    observed = SharedInference(
        backend, max_batch=max(64, len(options.sources)), window_s=0.0,
        on_batch=lambda size, seconds: metrics.observe_batch(size),
    )  # fmt: skip
    return options, observed


def attach_runner(metrics: RunMetrics, runner: Runner) -> None:
    """Scrapes read ``runner``'s live counts."""
    from edge_xcnn.stream.fleet import runner_snapshot

    metrics.set_snapshot(lambda: runner_snapshot(runner))


def run_config(
    path: Path,
    *,
    model: str | None,
    backend: str,
    server: str | None,
    device: str | None,
    threads: int | None,
    overwrite: bool,
    max_frames: int | None,
    duration: float | None,
    metrics_port: int | None,
    summary_path: Path | None,
    open_timeout: float = 10.0,
) -> dict[str, Any]:
    """Run every camera of ``path``; prints a table per camera; returns the summary dict (also ``--summary``).

    Values given on the command line (``--model``, ``--backend``, ``--server``, ``--device``,
    ``--threads``, ``--metrics-port``) override the file's.
    """
    from edge_xcnn.backends.factory import open_backend
    from edge_xcnn.outputs import check_output
    from edge_xcnn.stream.cameras import load_config
    from edge_xcnn.stream.fleet import Fleet

    config = load_config(path)
    port = metrics_port if metrics_port is not None else config.metrics_port
    # Every camera's options and outputs, the shared outputs and --summary: before the model loads.
    Fleet(config, None, metrics=None, overwrite=overwrite, max_frames=max_frames).check()
    if summary_path is not None:
        check_output(summary_path, overwrite=overwrite, what="--summary")

    def event(name: str, message: str) -> None:
        err_console.print(f"camera {name}: {message}", highlight=False, soft_wrap=True)

    fleet_box: list[Fleet] = []
    with stop_signals(lambda signum: fleet_box[0].stop(signum) if fleet_box else False):
        chosen_backend = backend if backend != "auto" else config.backend
        runtime = open_backend(
            model or config.model, backend=chosen_backend, device=device or config.device,
            threads=threads or config.threads, server=server or config.server,
        )  # fmt: skip
        metrics = start_metrics(port)
        try:
            fleet = Fleet(
                config, runtime, metrics=metrics, overwrite=overwrite, max_frames=max_frames, duration=duration,
                open_timeout=open_timeout, on_event=event,
            )  # fmt: skip
            fleet_box.append(fleet)
            summary = fleet.run()
        finally:
            if metrics is not None:
                metrics.close()
            runtime.close()
    result = summary.to_dict()
    print_fleet(result)
    if summary_path is not None:
        from edge_xcnn.fileio import atomic_output

        with atomic_output(summary_path) as tmp:
            tmp.write_text(json.dumps(result, indent=2))
    if summary.signal is not None:
        raise Interrupted(summary.signal)
    return result


def print_fleet(result: dict[str, Any]) -> None:
    """One row per camera, within 100 columns; errors below the table."""
    batches = result["batches"]
    mean = "-" if batches["mean"] is None else f"{batches['mean']:.2f}"
    table = Table(title=f"cameras ({batches['calls']} inference calls, mean batch {mean})")
    for name, justify in (("camera", "left"), ("runs", "right"), ("in", "right"), ("out", "right"),
                          ("dropped", "right"), ("reconnects", "right"), ("state", "left")):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name, cam in result["cameras"].items():
        state = "ok" if not cam["errors"] else ("down" if cam["frames_out"] == 0 else "lost")
        table.add_row(name, str(cam["attempts"]), str(cam["frames_in"]), str(cam["frames_out"]), str(cam["dropped"]),
                      str(cam["reconnects"]), state)  # fmt: skip
    console.print(table)
    for name, cam in result["cameras"].items():
        if cam["errors"]:
            console.print(f"{name}: {cam['errors'][-1]}", highlight=False, soft_wrap=True)
    written = [*result["outputs"], *(o for cam in result["cameras"].values() for o in cam["outputs"])]
    for output in dict.fromkeys(written):
        console.print(f"wrote {output}", highlight=False, soft_wrap=True)
