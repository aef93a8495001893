"""Model-only benchmark: every runtime and precision on the same machine, in one run.

Speed is reported as measured here and now (shared machines are noisy): compare rows of one run,
not numbers across runs. PyTorch eager on the CPU is always a row when a checkpoint is benchmarked,
so every figure has its baseline beside it. The pieces are separate so other benchmarks (a video
file end to end) reuse them: :func:`plan_rows` says which rows this machine can give,
:func:`prepare_files` writes the ONNX/engine files they run, :func:`measure_rows` times them, and
:func:`rows_table` prints them. The JSON form is one list of :meth:`BenchRow.to_dict`.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rich.table import Table

from edge_xcnn.backends.base import Backend, open_backend
from edge_xcnn.errors import EdgeXcnnError

BENCH_BACKENDS = ("torch", "onnxruntime", "tensorrt")


@dataclass
class BenchRow:
    """One backend at one batch size."""

    backend: str
    precision: str
    batch: int
    size_kb: float
    ms_per_frame_p50: float
    ms_per_frame_p99: float
    fps: float
    top1: float | None = None
    model: str = ""
    # With --video (batch-1 rows; edge_xcnn.stream.video_bench): FFmpeg's raw decode rate, the pipeline's
    # decode rate, this backend's model-only rate on the file's frames, `run` results-only (JSON lines)
    # and annotated (mp4 + JSON lines), the limit 1 / (1/raw + 1/model) and N sources' aggregate.
    video_decode_fps: float | None = None
    video_model_fps: float | None = None
    video_end_to_end_fps: float | None = None  # annotated
    video_serial_fps: float | None = None
    video_raw_decode_fps: float | None = None
    video_results_fps: float | None = None
    video_limit_fps: float | None = None
    video_sources: int | None = None
    video_sources_fps: float | None = None
    video: dict[str, object] | None = None  # everything of VideoBench.to_dict()

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class RowSpec:
    """What one row runs: a runtime, a precision, a device and which model file (``fp32``, ``int8`` ...)."""

    backend: str
    precision: str
    device: str | None = None
    file: str = "checkpoint"  # checkpoint, fp32, fp16, int8 (ONNX) or engine-fp16, engine-int8
    options: dict[str, object] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Machine:
    """What this machine can run: CUDA in torch, ORT providers, native bf16 on the CPU, TensorRT + a GPU."""

    torch_cuda: bool
    cpu_bf16: bool
    ort_providers: tuple[str, ...]
    tensorrt: bool

    @classmethod
    def here(cls) -> Machine:
        try:
            import torch

            cuda = torch.cuda.is_available()
            bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except ImportError:
            cuda = bf16 = False
        try:
            import onnxruntime as ort

            providers = tuple(ort.get_available_providers())
        except ImportError:
            providers = ()
        gpu = cuda or "CUDAExecutionProvider" in providers
        return cls(cuda, bf16, providers, gpu and importlib.util.find_spec("tensorrt") is not None)


def parse_backends(requested: list[str] | None) -> dict[str, set[str] | None]:
    """``["torch", "onnxruntime:int8"]`` -> ``{"torch": None, "onnxruntime": {"int8"}}``; None = all of them."""
    if not requested:
        return dict.fromkeys(BENCH_BACKENDS)
    chosen: dict[str, set[str] | None] = {}
    for item in requested:
        name, _, precision = item.partition(":")
        if name not in BENCH_BACKENDS:
            raise EdgeXcnnError(f"--backend must be one of {', '.join(BENCH_BACKENDS)}[:precision], got {item!r}")
        if precision and precision not in ("fp32", "fp16", "bf16", "int8"):
            raise EdgeXcnnError(f"precision in --backend {item!r} must be fp32, fp16, bf16 or int8")
        if not precision:
            chosen[name] = None
        elif chosen.get(name, set()) is not None:
            chosen.setdefault(name, set()).add(precision)
    return chosen


def plan_rows(requested: dict[str, set[str] | None], machine: Machine) -> list[RowSpec]:
    """The rows to measure, in table order; PyTorch eager FP32 on the CPU always comes first.

    By default: PyTorch on the CPU (FP32; BF16 where the CPU has it natively) and on CUDA (FP32, FP16);
    ONNX Runtime on the CPU (FP32, INT8 Q/DQ) and on CUDA (FP32, FP16 ONNX); TensorRT engines (FP16,
    INT8). A precision named in ``--backend`` adds its row even where it is slow (ONNX Runtime FP16 on a CPU).
    """

    def wanted(name: str, precision: str, default: bool) -> bool:
        if name not in requested:
            return False
        asked = requested[name]
        return default if asked is None else precision in asked

    rows = [RowSpec("torch", "fp32", "cpu")]
    if wanted("torch", "bf16", machine.cpu_bf16):
        rows.append(RowSpec("torch", "bf16", "cpu"))
    if machine.torch_cuda:
        rows += [RowSpec("torch", p, "cuda") for p in ("fp32", "fp16") if wanted("torch", p, True)]
    rows += [
        RowSpec("onnxruntime", p, "cpu", p) for p in ("fp32", "fp16", "int8") if wanted("onnxruntime", p, p != "fp16")
    ]
    if "CUDAExecutionProvider" in machine.ort_providers:
        rows += [RowSpec("onnxruntime", p, "cuda", p) for p in ("fp32", "fp16") if wanted("onnxruntime", p, True)]
    if machine.tensorrt:
        rows += [
            RowSpec("tensorrt", p, "cuda", f"engine-{p}") for p in ("fp32", "fp16", "int8")
            if wanted("tensorrt", p, p != "fp32")
        ]  # fmt: skip
    return list(dict.fromkeys(rows))  # torch:fp32 asked for explicitly is still one row


def prepare_files(
    checkpoint: Path,
    rows: list[RowSpec],
    folder: Path,
    *,
    max_batch: int,
    calibration: Callable[[], np.ndarray],
) -> dict[str, Path]:
    """Write the ONNX files and engines ``rows`` run into ``folder``; returns them by :attr:`RowSpec.file`.

    ``calibration`` gives the INT8 calibration frames (called only when an INT8 file is needed).
    """
    from edge_xcnn.export.onnx_export import export_onnx

    needed = {row.file for row in rows}
    files = {"checkpoint": checkpoint}
    if needed == {"checkpoint"}:
        return files
    files["fp32"] = export_onnx(checkpoint, folder / "model.onnx")
    if needed & {"fp16", "engine-fp16"}:
        from edge_xcnn.export.onnx_fp16 import convert_fp16

        files["fp16"] = convert_fp16(files["fp32"], folder / "model.fp16.onnx")
    if needed & {"int8", "engine-int8"}:
        from edge_xcnn.calib.quantize import quantize_int8

        files["int8"] = quantize_int8(files["fp32"], folder / "model.int8.onnx", calibration())
    engines = sorted(f for f in needed if f.startswith("engine-"))
    if engines:
        from edge_xcnn.backends.tensorrt_backend import probe_tensorrt
        from edge_xcnn.export import tensorrt_plan as tp
        from edge_xcnn.export.tensorrt_engine import build_engine, onnx_info

        trt, _, here = probe_tensorrt()
        meta = onnx_info(files["fp32"])[0]
        profile = tp.profile_shapes(meta.channels, meta.input_size, max_batch=max_batch)
        for name in engines:
            plan = tp.plan_build(here.tensorrt, name.removeprefix("engine-"), profile)
            files[name] = folder / f"model.{plan.precision}.engine"
            build_engine(files[plan.onnx], plan, files[name], meta, trt=trt, here=here,
                         timing_cache=tp.timing_cache_path(here))  # fmt: skip
    return files


def open_row(row: RowSpec, files: dict[str, Path], threads: int | None = None) -> Backend:
    """The backend a row runs."""
    precision = row.precision if row.backend == "torch" else None
    return open_backend(files[row.file], row.backend, row.device, precision, threads=threads)


def time_backend(backend: Backend, batch: int, *, seconds: float = 3.0, warmup: int = 5, seed: int = 0) -> np.ndarray:
    """Per-frame latencies (ms) of ``infer`` on random batches, for about ``seconds`` after warm-up."""
    meta = backend.meta
    x = np.random.default_rng(seed).random((batch, meta.channels, *meta.input_size), dtype=np.float32)
    for _ in range(warmup):
        backend.infer(x)
    samples = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 10:
        start = time.perf_counter()
        backend.infer(x)
        samples.append((time.perf_counter() - start) * 1000 / batch)
    return np.array(samples)


def row_from_times(backend: Backend, path: Path, batch: int, ms: np.ndarray, top1: float | None) -> BenchRow:
    """A :class:`BenchRow` from per-frame times in milliseconds."""
    return BenchRow(
        backend=backend.name,
        precision=backend.precision,
        batch=batch,
        size_kb=path.stat().st_size / 1024,
        ms_per_frame_p50=float(np.percentile(ms, 50)),
        ms_per_frame_p99=float(np.percentile(ms, 99)),
        fps=float(1000 / np.median(ms)),
        top1=top1,
        model=path.name,
    )


def measure_rows(
    entries: list[tuple[Backend, Path, float | None]], batches: list[int], *, seconds: float, rounds: int = 3
) -> list[BenchRow]:
    """Rows for several opened backends, timed in interleaved rounds.

    Each round times every backend at every batch size for ``seconds / rounds``; a row's percentiles
    come from all its rounds. On a shared machine whose load drifts over minutes, this keeps one row
    from getting a quiet minute and the next a busy one.

    Args:
        entries: (backend, its model file, its top-1 or None) per row group.
        batches: batch sizes.
        seconds: timing per backend and batch size, all rounds together.
        rounds: how many times to go round.
    """
    samples: dict[tuple[int, int], list[np.ndarray]] = {(i, b): [] for i in range(len(entries)) for b in batches}
    for round_ in range(rounds):
        for i, (backend, _, _) in enumerate(entries):
            for b in batches:
                warmup = 5 if round_ == 0 else 1
                samples[(i, b)].append(time_backend(backend, b, seconds=seconds / rounds, warmup=warmup))
    rows = [
        row_from_times(backend, path, b, np.concatenate(samples[(i, b)]), top1)
        for i, (backend, path, top1) in enumerate(entries)
        for b in batches
    ]
    return rows


def rows_table(rows: list[BenchRow], title: str) -> Table:
    """The rows as a rich table, with each row's speed relative to PyTorch eager CPU FP32 at its batch."""
    baseline = {r.batch: r.ms_per_frame_p50 for r in rows if r.backend == "pytorch eager cpu" and r.precision == "fp32"}
    table = Table(title=title)
    # Short headers: the table fits 100 columns with "pytorch eager cpu" rows (ms = per frame).
    columns = ("backend", "precision", "batch", "KB", "ms p50", "ms p99", "FPS", "vs eager", "top-1")
    for column in columns:
        table.add_column(column, justify="left" if column in ("backend", "precision") else "right")
    for row in rows:
        speedup = baseline.get(row.batch)
        cells = [
            row.backend, row.precision, str(row.batch), f"{row.size_kb:.0f}", f"{row.ms_per_frame_p50:.3f}",
            f"{row.ms_per_frame_p99:.3f}", f"{row.fps:.0f}",
            "-" if speedup is None else f"{speedup / row.ms_per_frame_p50:.2f}x",
            "-" if row.top1 is None else f"{row.top1:.2%}",
        ]  # fmt: skip
        table.add_row(*cells)
    return table


def video_table(rows: list[BenchRow], title: str) -> Table:
    """The ``--video`` figures of the batch-1 rows: one column per backend, each rate and its ratio to the limit."""
    measured = [r for r in rows if r.video is not None]
    table = Table(title=title)
    table.add_column("frames per second")
    for row in measured:
        table.add_column(f"{row.backend} {row.precision}", justify="right")
        table.add_column("/ limit", justify="right")
    lines = [
        ("raw decode (FFmpeg alone)", "raw_decode_fps"), ("pipeline decode", "decode_fps"),
        ("model-only", "model_fps"), ("limit 1/(1/raw + 1/model)", "limit_fps"),
        ("results-only end to end", "results_fps"), ("annotated mp4 + JSON", "end_to_end_fps"),
        ("sources", "sources_fps"), ("serial (1 / sum of stages)", "serial_fps"),
    ]  # fmt: skip
    for name, key in lines:
        cells: list[str] = []
        for row in measured:
            video = row.video or {}
            value, limit = video.get(key), video.get("limit_fps")
            if key == "sources_fps":
                name = f"{video.get('sources')} sources, aggregate"
            fps = "-" if not isinstance(value, float) else f"{value:.1f}"
            ratio = f"{value / limit:.2f}" if isinstance(value, float) and isinstance(limit, float) else ""
            cells += [fps, "" if key == "limit_fps" else ratio]
        table.add_row(name, *cells)
    return table
