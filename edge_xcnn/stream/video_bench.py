"""``edge-xcnn bench --video FILE``: decode-only, model-only and end-to-end rates on one file, one run.

Decode-only is the reader alone (PyAV decode + RGB conversion). Model-only is the backend's
``infer`` on the file's frames already preprocessed, batch 1 (what the model costs). End to end is
``run`` itself, writing the annotated mp4 and the JSON lines, so its rate over model-only says how
much the plumbing costs: near 1 means the model sets the pace.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_xcnn.backends.base import Backend
from edge_xcnn.preprocess import preprocess
from edge_xcnn.stream.pipeline import Runner, RunOptions
from edge_xcnn.stream.sources import FrameReader
from edge_xcnn.stream.uri import parse_source


@dataclass
class VideoBench:
    """One backend's rates on one video (frames per second)."""

    video: str
    frames: int
    decode_fps: float
    model_fps: float
    end_to_end_fps: float
    serial_fps: float | None
    stage_ms: dict[str, float | None]

    @property
    def end_to_end_over_model(self) -> float:
        return self.end_to_end_fps / self.model_fps

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["end_to_end_over_model"] = self.end_to_end_over_model
        return out


def decode_only(video: Path, limit: int | None = None) -> tuple[list[np.ndarray], float]:
    """Every frame of ``video`` (up to ``limit``) and the decode rate, through the runner's own reader."""
    reader = FrameReader(parse_source(str(video)), 0, queue_size=10_000)
    reader.open()
    frames: list[np.ndarray] = []
    start = time.perf_counter()
    reader.start()
    while not reader.exhausted and (limit is None or len(frames) < limit):
        frame = reader.get(timeout=0.5)
        if frame is not None:
            frames.append(frame.image)
    elapsed = time.perf_counter() - start
    reader.stop()
    reader.join()
    if reader.error is not None:
        raise reader.error
    return frames, len(frames) / elapsed


def model_only(backend: Backend, frames: list[np.ndarray]) -> float:
    """Frames per second of ``backend.infer`` at batch 1 over the preprocessed frames (one warm-up pass)."""
    batches = [preprocess(f, backend.meta)[0][None] for f in frames]
    for batch in batches[: min(5, len(batches))]:
        backend.infer(batch)
    start = time.perf_counter()
    for batch in batches:
        backend.infer(batch)
    return len(batches) / (time.perf_counter() - start)


def end_to_end(backend: Backend, video: Path, limit: int | None = None, **options: Any) -> tuple[float, Any]:
    """Frames per second of ``run`` on ``video``, writing the annotated mp4 and the JSON lines."""
    with tempfile.TemporaryDirectory() as work:
        run_options = RunOptions(
            sources=[str(video)],
            outputs=[str(Path(work) / "out.mp4")],
            json_path=Path(work) / "out.jsonl",
            max_frames=limit,
            **options,
        )
        summary = Runner(run_options, backend).run()
    return summary.end_to_end_fps or 0.0, summary


def bench_video(backend: Backend, video: Path, limit: int | None = None) -> VideoBench:
    """Decode-only, model-only and end-to-end rates of ``backend`` on ``video``, measured back to back."""
    frames, decode_fps = decode_only(video, limit)
    model_fps = model_only(backend, frames)
    e2e_fps, summary = end_to_end(backend, video, limit)
    return VideoBench(
        video=str(video),
        frames=len(frames),
        decode_fps=decode_fps,
        model_fps=model_fps,
        end_to_end_fps=e2e_fps,
        serial_fps=summary.serial_fps,
        stage_ms={name: stage.ms_per_frame for name, stage in summary.stages.items()},
    )
