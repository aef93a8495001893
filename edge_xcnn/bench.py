"""Model-only benchmark: every runtime and precision on the same machine, in one run.

Speed is reported as measured here and now (shared machines are noisy): compare rows of one run,
not numbers across runs. PyTorch eager is always a row, so every figure has its baseline beside it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge_xcnn.backends.base import Backend


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

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


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


def bench_row(
    name: str, precision: str, backend: Backend, path: Path, batch: int, top1: float | None, seconds: float
) -> BenchRow:
    ms = time_backend(backend, batch, seconds=seconds)
    return BenchRow(
        backend=name,
        precision=precision,
        batch=batch,
        size_kb=path.stat().st_size / 1024,
        ms_per_frame_p50=float(np.percentile(ms, 50)),
        ms_per_frame_p99=float(np.percentile(ms, 99)),
        fps=float(1000 / np.median(ms)),
        top1=top1,
    )
