"""How a run shares the machine's cores between decoding, inference and encoding.

On a CPU-only edge box the three stages run on the same cores. Every runtime left to itself takes
them all (ONNX Runtime and PyTorch start one thread per core, FFmpeg's decoder and x264 too), so a
run with two sources and an encoder on a 2-core box had 8+ busy threads fighting: measured on the
issue-11 box, ``edge-xcnn run bikes.mp4`` with PyTorch's own thread count ran at 19.6 FPS, the same
model with one thread at 75.7. The plan below gives each stage its share instead: half the cores to
inference (at least one), the rest split between the decoders, and one thread per encoder when
something is encoded; never more threads in total than cores, except that every stage gets one.

Half the cores is right when decoding sets the pace; when the model does (VGG-16 at 32x32 on bikes.mp4:
one thread 18.9 ms per frame in a run, decoding 0.6 ms), inference on one of two cores halves the run's
rate. :func:`plan_inference` measures instead of guessing: the model at its share and, only when it is
slower than decoding, at every core; the decoder on the run's first file; and keeps the faster plan
by :func:`estimated_ms`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edge_xcnn.backends.base import Backend


def available_cores() -> int:
    """CPUs this process may run on (cgroup/affinity aware where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ThreadPlan:
    """Threads per stage. ``decode`` is per source, ``encode`` per encoded output (0: nothing encoded)."""

    cores: int
    inference: int
    decode: int
    encode: int
    note: str = ""  # why inference got its share, when it was measured (printed with the run's threads)
    model_ms: float | None = None  # measured: inference per frame at this plan's share
    decode_ms: float | None = None  # measured: decoding one frame of the first file, one thread

    @property
    def decode_bound(self) -> bool:
        """Measured, decoding at least twice as slow as the model: batching saves what does not set the pace."""
        return self.model_ms is not None and self.decode_ms is not None and self.decode_ms >= 2 * self.model_ms

    @classmethod
    def for_run(
        cls, *, sources: int = 1, encodes: bool = False, inference: int | None = None, cores: int | None = None
    ) -> ThreadPlan:
        """The share of each stage for a run with ``sources`` inputs; ``inference`` given by the user wins."""
        cores = cores or available_cores()
        sources = max(1, sources)
        infer = inference or max(1, cores // 2)
        left = max(0, cores - infer - (1 if encodes else 0))
        decode = max(1, left // sources)
        return cls(cores=cores, inference=infer, decode=decode, encode=1 if encodes else 0)

    def describe(self) -> str:
        parts = [f"inference {self.inference}", f"decode {self.decode} per source"]
        if self.encode:
            parts.append(f"encode {self.encode} per video")
        return f"{', '.join(parts)} ({self.cores} cores)" + (f"; {self.note}" if self.note else "")


def estimated_ms(model_ms: float, threads: int, decode_ms: float, cores: int, sources: int = 1) -> float:
    """Per-frame time of decoding and inference sharing ``cores``, inference on ``threads`` of them.

    ``model_ms``: inference per frame at ``threads`` threads, measured alone; ``decode_ms``: decoding
    (and converting) one frame on one thread. With cores left over, decoders use them and the slower
    stage sets the pace; with inference on every core, decoding takes its time from inference's cores,
    and each source's decoder (one thread then) can go no faster than one core.
    """
    if threads < cores:
        return max(model_ms, decode_ms / (cores - threads))
    return max(model_ms + decode_ms / cores, decode_ms / min(max(1, sources), cores))


def best_threads(model_ms: dict[int, float], decode_ms: float, cores: int, sources: int = 1) -> int:
    """The thread count (a key of ``model_ms``) with the shortest :func:`estimated_ms`.

    Fewer threads win unless more are at least 10% faster: a pool of busy threads loses more to a
    neighbour's load than one thread does.
    """
    ranked = sorted(model_ms)
    best = ranked[0]
    for threads in ranked[1:]:
        if estimated_ms(model_ms[threads], threads, decode_ms, cores, sources) < 0.9 * estimated_ms(
            model_ms[best], best, decode_ms, cores, sources
        ):
            best = threads
    return best


def time_model(backend: Backend, batch: int = 1, seconds: float = 0.15) -> float:
    """Milliseconds per frame of ``backend.infer`` on a ``batch`` of zeros (2 warm-up calls, then >= 3)."""
    meta = backend.meta
    x = np.zeros((batch, meta.channels, *meta.input_size), np.float32)
    for _ in range(2):
        backend.infer(x)
    calls, start = 0, time.perf_counter()
    while calls < 3 or (time.perf_counter() - start < seconds and calls < 200):
        backend.infer(x)
        calls += 1
    return 1000 * (time.perf_counter() - start) / (calls * batch)


def time_decode(location: str, view: Any, full: bool, frames: int = 40, skip: int = 8) -> float | None:
    """Milliseconds per frame of decoding ``location`` as the run will (one FFmpeg thread); None if it cannot.

    ``view`` and ``full`` as :class:`~edge_xcnn.stream.sources.FrameReader` takes them. The first
    ``skip`` frames are not timed (opening, the first keyframe).
    """
    from edge_xcnn.stream.sources import _pyav_frames
    from edge_xcnn.stream.uri import parse_source

    spec = parse_source(location)
    if spec.kind != "file":
        return None
    try:
        decoded, _ = _pyav_frames(spec, {}, None, (10.0, 10.0), view=view, full=full, threads=1)
    except Exception:  # the run itself says what is wrong with the file, in its own words
        return None
    count, start = 0, 0.0
    try:
        for k, _ in enumerate(decoded):
            if k == skip:
                start = time.perf_counter()
            elif k > skip:
                count += 1
            if count >= frames:
                break
    except Exception:
        return None
    finally:
        decoded.close()
    return 1000 * (time.perf_counter() - start) / count if count else None


def plan_inference(
    open_at: Callable[[int], Backend],
    plan: ThreadPlan,
    *,
    sources: list[str],
    full: bool,
    batch: int = 1,
) -> tuple[Backend, ThreadPlan]:
    """Open the run's model with the better of ``plan``'s inference share and every core, measured.

    ``open_at(threads)`` opens the model with that many CPU threads. Only CPU runtimes with cores to
    spare are measured, and every core is tried only when the model at its share is slower than
    decoding the first file source as the run will (``full``: with full RGB frames, for drawing; a
    run with a live source is not probed: the plan stays). Returns the backend to run (the other one
    is closed) and the plan with its note.
    """
    backend = open_at(plan.inference)
    if plan.inference >= plan.cores or not str(getattr(backend, "name", "")).endswith(" cpu"):
        return backend, plan
    from edge_xcnn.stream.sources import NetworkView

    files = [s for s in sources if os.path.isfile(s)]
    decode = None
    if files and len(files) == len(sources):
        decode = time_decode(files[0], NetworkView.of(backend.meta), full)
    if decode is None:
        return backend, plan
    share = time_model(backend, batch)
    note = f"measured: inference {_threads(plan.inference)} {share:.2f} ms/frame, decode {decode:.2f} ms/frame"
    if share <= decode:
        return backend, replace(plan, note=note + " (decode sets the pace)", model_ms=share, decode_ms=decode)
    wide = open_at(plan.cores)
    every = time_model(wide, batch)
    chosen = best_threads({plan.inference: share, plan.cores: every}, decode, plan.cores, len(sources))
    note += f", {_threads(plan.cores)} {every:.2f} ms/frame"
    if chosen == plan.cores:
        backend.close()
        encodes = bool(plan.encode)
        wider = ThreadPlan.for_run(sources=len(sources), encodes=encodes, inference=plan.cores, cores=plan.cores)
        return wide, replace(wider, note=note + " (the model sets the pace)", model_ms=every, decode_ms=decode)
    wide.close()
    torch = getattr(backend, "torch", None)  # PyTorch's thread count is process-wide: the wide open changed it
    if torch is not None:
        torch.set_num_threads(plan.inference)
    return backend, replace(plan, note=note, model_ms=share, decode_ms=decode)


def _threads(count: int) -> str:
    return f"{count} thread{'s' if count != 1 else ''}"
