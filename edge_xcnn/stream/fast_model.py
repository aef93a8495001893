"""Which file the runner opens: a checkpoint given with ``--backend auto`` runs as its ONNX export.

On the CPUs here ONNX Runtime runs the default model in about 2.0 ms per frame at batch 1 with one
thread, PyTorch eager in 3.6-4.5 ms (same machine, same minute), so a checkpoint is exported once
(torch's exporter, about 11 s on this 2-core box) and the export cached by the checkpoint's SHA-256
under ``$EDGE_XCNN_CACHE`` or ``$XDG_CACHE_HOME/edge-xcnn/onnx`` (default ``~/.cache``). The export is
checked like any ONNX (metadata, graph); a checkpoint that cannot be loaded fails as it would in
PyTorch. ``--backend torch`` still runs the checkpoint itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path

from edge_xcnn.engine_sidecar import ENGINE_SUFFIXES


def cache_dir() -> Path:
    explicit = os.environ.get("EDGE_XCNN_CACHE")
    if explicit:
        return Path(explicit) / "onnx"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edge-xcnn" / "onnx"


def _can_export() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "onnx", "onnxruntime"))


def runner_model(
    model: str | os.PathLike[str] | None, backend: str, precision: str | None = None
) -> tuple[str | Path | None, str | None]:
    """The model file ``run`` should open, and a line saying what was done (None: nothing changed).

    Only a checkpoint with ``backend == "auto"`` and FP32 (the export's precision) changes: to its cached
    ONNX export, made now if missing. When the export cannot be made here (no onnx/onnxruntime, an
    unwritable cache) it stays a checkpoint.
    """
    if model is None or backend != "auto" or precision not in (None, "fp32"):
        return model, None
    path = Path(model)
    if not path.is_file() or path.suffix.lower() in {".onnx", *ENGINE_SUFFIXES} or not _can_export():
        return model, None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:20]
    target = cache_dir() / f"{path.stem}-{digest}.onnx"
    if target.is_file():
        return target, f"{path.name}: running its ONNX export in ONNX Runtime (cached: {target})"
    from edge_xcnn.export.onnx_export import export_onnx

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as work:
            written = export_onnx(path, Path(work) / "model.onnx")
            os.replace(written, target)
    except PermissionError:
        return model, f"{path.name}: cache {target.parent} not writable, running the checkpoint in PyTorch"
    return target, f"{path.name}: exported to ONNX for ONNX Runtime, the faster runtime here (cached: {target})"
