"""How a run shares the machine's cores between decoding, inference and encoding.

On a CPU-only edge box the three stages run on the same cores. Every runtime left to itself takes
them all (ONNX Runtime and PyTorch start one thread per core, FFmpeg's decoder and x264 too), so a
run with two sources and an encoder on a 2-core box had 8+ busy threads fighting: measured on the
issue-11 box, ``edge-xcnn run bikes.mp4`` with PyTorch's own thread count ran at 19.6 FPS, the same
model with one thread at 75.7. The plan below gives each stage its share instead: half the cores to
inference (at least one), the rest split between the decoders, and one thread per encoder when
something is encoded; never more threads in total than cores, except that every stage gets one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


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
        return f"{', '.join(parts)} ({self.cores} cores)"
