"""``edge-xcnn bench --video FILE``: where the runner stands against what the machine can do, one run.

Measured back to back on the same file and model:

- **raw decode**: FFmpeg alone through PyAV, its own threads, no pixel conversion: the physical limit
  of decoding this file here;
- **pipeline decode**: the runner's reader as a results-only run sets it up (the network's input
  scaled and converted by the decoder, no full-size RGB);
- **model-only**: the backend's ``infer`` on the file's frames, already prepared (batch ``batch``),
  the faster of the whole machine's threads and ``run``'s share;
- **results-only** end to end: ``run`` writing JSON lines only (nothing drawn or encoded);
- **annotated** end to end: ``run`` writing the annotated mp4 and the JSON lines;
- with ``sources`` > 1, the aggregate rate of that many copies of the file in one results-only run.

On a CPU-only box decoding and inference share the cores, so the **limit** is
``1 / (1/raw decode + 1/model-only)``: the rate if the machine did nothing but decode and infer.
The ratios to it say how much of the machine the runner uses.

With ``rounds`` > 1 every rate is measured that many times, in rounds (each round measures all of them
in the order above, so slow minutes of a shared machine fall on every rate alike), and the median of
each is reported, with every round's figure beside it. Why: a file like bikes.mp4 (250 frames) runs
end to end in under a second, and on a shared 2-core VM two single runs a minute apart measured
results-only / limit 0.74 and 0.55.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_xcnn.backends.base import Backend
from edge_xcnn.stream.pipeline import Runner, RunOptions, RunSummary
from edge_xcnn.stream.sources import FrameReader, NetworkView
from edge_xcnn.stream.step import network_input
from edge_xcnn.stream.uri import parse_source


@dataclass
class VideoBench:
    """One backend's rates on one video (frames per second) and how they compare with the limit."""

    video: str
    frames: int
    raw_decode_fps: float
    decode_fps: float  # the pipeline's reader, results-only setup
    model_fps: float
    results_fps: float  # run, JSON lines only
    end_to_end_fps: float  # run, annotated mp4 + JSON lines
    serial_fps: float | None  # of the annotated run
    stage_ms: dict[str, float | None]  # annotated run
    results_stage_ms: dict[str, float | None] = field(default_factory=dict)
    batch: int = 1
    sources: int = 1
    sources_fps: float | None = None  # aggregate, ``sources`` copies in one results-only run
    runtime: str = ""  # the runs' runtime line (backend, precision, threads)
    rounds: int = 1  # each rate is the median of this many rounds
    round_fps: dict[str, list[float]] = field(default_factory=dict)  # every round's figure, per rate

    @property
    def limit_fps(self) -> float:
        """Decode and inference sharing the machine: 1 / (1/raw decode + 1/model-only)."""
        return 1 / (1 / self.raw_decode_fps + 1 / self.model_fps)

    @property
    def end_to_end_over_model(self) -> float:
        return self.end_to_end_fps / self.model_fps

    def ratios(self) -> dict[str, float | None]:
        limit = self.limit_fps
        return {
            "results_over_limit": self.results_fps / limit,
            "annotated_over_limit": self.end_to_end_fps / limit,
            "sources_over_limit": None if self.sources_fps is None else self.sources_fps / limit,
            "results_over_model": self.results_fps / self.model_fps,
            "annotated_over_model": self.end_to_end_over_model,
            "decode_over_raw": self.decode_fps / self.raw_decode_fps,
        }

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["limit_fps"] = self.limit_fps
        out["end_to_end_over_model"] = self.end_to_end_over_model
        out.update(self.ratios())
        return out


def raw_decode(video: Path, limit: int | None = None) -> float:
    """Frames per second of FFmpeg decoding ``video`` alone (PyAV, FFmpeg's threads, no conversion)."""
    import av

    count = 0
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = time.perf_counter()
        for _ in container.decode(stream):
            count += 1
            if limit is not None and count >= limit:
                break
        elapsed = time.perf_counter() - start
    return count / elapsed if elapsed > 0 else 0.0


def decode_only(
    video: Path, limit: int | None = None, view: NetworkView | None = None, threads: int = 0
) -> tuple[list[Any], float]:
    """Every frame of ``video`` (up to ``limit``) and the decode rate, through the runner's own reader.

    With ``view``, the reader is set up as in a results-only run (network input from the decoder,
    no full-size RGB); without, full RGB frames as when something draws.
    """
    reader = FrameReader(parse_source(str(video)), 0, queue_size=100_000, view=view, full=view is None, threads=threads)
    reader.open()
    frames: list[Any] = []
    start = time.perf_counter()
    reader.start()
    while not reader.exhausted and (limit is None or len(frames) < limit):
        frame = reader.get(timeout=0.5)
        if frame is not None:
            frames.append(frame)
    elapsed = time.perf_counter() - start
    reader.stop()
    reader.join()
    if reader.error is not None:
        raise reader.error
    return frames, len(frames) / elapsed


def model_only(backend: Backend, frames: list[Any], batch: int = 1) -> float:
    """Frames per second of ``backend.infer`` over the prepared frames, ``batch`` at a time (one warm-up)."""
    inputs = [network_input(f, backend.meta)[0] if not isinstance(f, np.ndarray) else f for f in frames]
    batches = [np.stack(inputs[k : k + batch]) for k in range(0, len(inputs), batch)]
    for b in batches[: min(5, len(batches))]:
        backend.infer(b)
    start = time.perf_counter()
    for b in batches:
        backend.infer(b)
    return len(inputs) / (time.perf_counter() - start)


def end_to_end(
    backend: Backend,
    video: Path,
    limit: int | None = None,
    *,
    annotated: bool = True,
    sources: int = 1,
    **options: Any,
) -> tuple[float, RunSummary]:
    """Frames per second of ``run`` on ``video`` (``sources`` copies): annotated mp4 + JSON, or JSON only."""
    with tempfile.TemporaryDirectory() as work:
        run_options = RunOptions(
            sources=[str(video)] * sources,
            outputs=[str(Path(work) / "out.mp4")] if annotated else [],
            json_path=Path(work) / "out.jsonl",
            max_frames=limit,
            **options,
        )
        summary = Runner(run_options, backend).run()
    return summary.end_to_end_fps or 0.0, summary


def bench_video(
    backend: Backend,
    video: Path,
    limit: int | None = None,
    *,
    run_backend: Backend | None = None,
    batch: int = 1,
    sources: int = 1,
    rounds: int = 1,
) -> VideoBench:
    """Every rate of :class:`VideoBench`, measured back to back (``rounds`` times: medians).

    ``backend`` times model-only (open it with the whole machine's threads); ``run_backend`` runs the
    end-to-end rows (open it as ``run`` would, with its share of the cores; default ``backend``).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    runner_backend = run_backend or backend
    measured: dict[str, list[float]] = {}
    results = summary = None
    for _ in range(rounds):
        figures: dict[str, float] = {"raw_decode": raw_decode(video, limit)}
        frames, figures["decode"] = decode_only(video, limit, NetworkView.of(backend.meta))
        figures["model"] = model_only(backend, frames, batch)
        if run_backend is not None and run_backend is not backend:
            # The model's best rate here: the whole machine's threads, or run's share (on a busy box a pool
            # of spinning threads can lose to one thread); the limit is then the stricter one.
            figures["model"] = max(figures["model"], model_only(run_backend, frames, batch))
        del frames
        figures["results"], results = end_to_end(runner_backend, video, limit, annotated=False, batch=batch)
        figures["annotated"], summary = end_to_end(runner_backend, video, limit, annotated=True, batch=batch)
        if sources > 1:
            figures["sources"], _ = end_to_end(
                runner_backend, video, limit, annotated=False, sources=sources, batch=batch
            )
        for name, value in figures.items():
            measured.setdefault(name, []).append(value)
    assert results is not None and summary is not None
    median = {name: float(np.median(values)) for name, values in measured.items()}
    return VideoBench(
        video=str(video),
        frames=results.frames_out,
        raw_decode_fps=median["raw_decode"],
        decode_fps=median["decode"],
        model_fps=median["model"],
        results_fps=median["results"],
        end_to_end_fps=median["annotated"],
        serial_fps=summary.serial_fps,
        stage_ms={name: stage.ms_per_frame for name, stage in summary.stages.items()},
        results_stage_ms={name: stage.ms_per_frame for name, stage in results.stages.items()},
        batch=batch,
        sources=sources,
        sources_fps=median.get("sources"),
        runtime=summary.runtime_line(),
        rounds=rounds,
        round_fps=measured,
    )
