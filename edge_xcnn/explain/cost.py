"""What each method costs: heatmaps per second and peak memory, batch 1 and 32, same machine and threads.

Each (model, method, layer) is measured in a fresh Python process (``python -m edge_xcnn.explain.cost``),
so one method's freed memory never hides the next one's. Peak memory is:

- on CUDA, ``torch.cuda.max_memory_allocated`` above what was allocated before the method's first call;
- on Linux CPUs, the peak resident set (``VmHWM`` of ``/proc/self/status``, reset through
  ``/proc/self/clear_refs`` after the model is loaded) above the resident set at that moment: every
  allocation the method makes (PyTorch, oneDNN, ONNX Runtime, numpy) counts, including first-call caches;
- elsewhere, the growth of ``ru_maxrss`` (a lower bound).

The batch-32 figure is the peak over the batch-1 and batch-32 runs of the same process. Speed is
timed after one warm-up call, for about ``seconds`` per batch size (at least two calls).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

MEMORY_HOW = {
    "cuda": "torch.cuda.max_memory_allocated above the allocation before the first call",
    "vmhwm": "peak RSS (VmHWM, reset after loading) above the RSS after loading",
    "ru_maxrss": "ru_maxrss growth after loading (lower bound)",
}


@dataclass
class CostRow:
    """Speed and memory of one method at one batch size."""

    model: str
    method: str
    layer: str
    runtime: str
    precision: str
    batch: int
    heatmaps_per_s: float
    ms_per_heatmap: float
    peak_mb: float
    memory: str
    threads: int
    device: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class PeakMemory:
    """Peak memory above a baseline taken at construction; see the module docstring for the three ways."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.how, self.base = "cuda", torch.cuda.memory_allocated()
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.how, self.base = "vmhwm", _status_kb("VmRSS") * 1024
        except OSError:
            self.how, self.base = "ru_maxrss", _maxrss_bytes()

    def peak_bytes(self) -> int:
        if self.how == "cuda":
            import torch

            torch.cuda.synchronize()
            return max(0, torch.cuda.max_memory_allocated() - self.base)
        if self.how == "vmhwm":
            return max(0, _status_kb("VmHWM") * 1024 - self.base)
        return max(0, _maxrss_bytes() - self.base)


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise OSError(f"{key} not in /proc/self/status")


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def time_calls(call: Any, seconds: float, sync: Any = None) -> float:
    """Seconds per call of ``call()`` after one warm-up, over about ``seconds`` (at least two calls)."""
    call()
    if sync:
        sync()
    count, start = 0, time.perf_counter()
    while count < 2 or time.perf_counter() - start < seconds:
        call()
        if sync:
            sync()
        count += 1
    return (time.perf_counter() - start) / count


def _worker(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Measure one method (in this fresh process); ``job`` is what ``measure_cost`` sends."""
    images = np.load(job["images"])
    threads = int(job["threads"])
    rows = []
    if job["runtime"] == "onnxruntime":
        from edge_xcnn.backends.onnxruntime_backend import OnnxRuntimeBackend

        backend = OnnxRuntimeBackend(Path(job["model"]), threads=threads)
        peak = PeakMemory("cpu")
        for batch in job["batches"]:
            x = np.ascontiguousarray(images[:batch])
            per_call = time_calls(lambda x=x: backend.infer(x), job["seconds"])
            rows.append(_row(job, batch, per_call, peak, threads, "cpu"))
        return rows
    import torch

    from edge_xcnn.checkpoint import load_model
    from edge_xcnn.explain import methods

    torch.set_num_threads(threads)
    device = job["device"]
    model, meta = load_model(job["model"], device)
    wrapped = methods.prepare_for_attribution(model)
    layers = methods.cam_layers(methods.classifier_convs(wrapped, meta.input_size))
    layer = layers[job["layer_role"]] if job["layer_role"] else None
    spec = methods.METHODS[job["method"]]
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    with methods.build_explainer(
        spec, model, wrapped, layer, polarity=meta.polarity, input_size=meta.input_size
    ) as explainer:
        peak = PeakMemory(device)
        for batch in job["batches"]:
            x = torch.from_numpy(images[:batch]).to(device)
            target = torch.zeros(batch, dtype=torch.long, device=device)
            per_call = time_calls(lambda x=x, t=target: explainer.explain(x, t), job["seconds"], sync)
            rows.append(_row(job, batch, per_call, peak, threads, device))
    return rows


def _row(job: dict[str, Any], batch: int, per_call: float, peak: PeakMemory, threads: int, device: str) -> dict:
    return CostRow(
        model=job["model_name"],
        method=job["method"],
        layer=job["layer_label"],
        runtime=job["runtime_label"],
        precision=job["precision"],
        batch=batch,
        heatmaps_per_s=batch / per_call,
        ms_per_heatmap=per_call * 1000 / batch,
        peak_mb=peak.peak_bytes() / 2**20,
        memory=peak.how,
        threads=threads,
        device=device,
    ).to_dict()


def measure_cost(job: dict[str, Any], timeout: float = 1800) -> list[CostRow]:
    """Run one measurement job in a fresh process and return its rows.

    ``job`` keys: ``images`` (an .npy file of N x C x H x W float32 images, N >= the largest batch),
    ``model``, ``model_name``, ``method``, ``layer_role`` (``ge8``, ``last`` or None), ``layer_label``,
    ``runtime`` (``torch`` or ``onnxruntime``), ``runtime_label``, ``precision``, ``batches``,
    ``seconds``, ``threads``, ``device``.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(job["threads"])}
    done = subprocess.run(
        [sys.executable, "-m", "edge_xcnn.explain.cost", json.dumps(job)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"cost measurement of {job['method']} failed: {tail[0]}")
    return [CostRow(**row) for row in json.loads(done.stdout.strip().splitlines()[-1])]


if __name__ == "__main__":
    print(json.dumps(_worker(json.loads(sys.argv[1]))))
