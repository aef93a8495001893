"""Model files: one safetensors file with the weights and the JSON metadata under ``edge_xcnn``.

Reading the metadata needs no torch (safetensors' numpy side), so inference machines can inspect
any model. Nothing here ever unpickles: a pickled PyTorch file is refused with a clear message.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_xcnn.errors import BadModelFile
from edge_xcnn.fileio import atomic_output
from edge_xcnn.meta import META_KEY, ModelMeta

if TYPE_CHECKING:
    import torch
    from torch import nn

DEFAULT_MODEL = Path(__file__).parent / "assets" / "synthetic.safetensors"
# The same model exported (`edge-xcnn export --model DEFAULT_MODEL`): what `auto` runs, with no torch.
DEFAULT_ONNX = DEFAULT_MODEL.with_suffix(".onnx")
_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save zip archives, legacy pickles


def resolve_model(model: str | os.PathLike[str] | None, prefer_onnx: bool = False) -> Path:
    """The model path to use: the given one (checked to exist) or the shipped default.

    ``prefer_onnx``: for the default, its shipped ONNX export (ONNX Runtime runs it fastest on CPUs
    and needs no torch); otherwise the checkpoint (training, export, compare need the weights).
    """
    if model is None:
        default = DEFAULT_ONNX if prefer_onnx else DEFAULT_MODEL
        if not default.is_file():
            raise BadModelFile(f"the shipped default model is missing from the installation: {default}")
        return default
    path = Path(model)
    if not path.is_file():
        raise BadModelFile(f"model file not found: {path}")
    return path


def _raw_header(path: Path) -> dict[str, Any]:
    """Parse the safetensors header ourselves, so we can say exactly what is wrong with a file."""
    try:
        with path.open("rb") as f:
            head = f.read(9)
            # A safetensors file is an 8-byte header length, then JSON: test that first, since a header
            # length whose low byte is 0x80 starts like a pickle (a real checkpoint hit this).
            size = int.from_bytes(head[:8], "little")
            looks_safetensors = len(head) == 9 and head[8:9] == b"{" and 1 < size <= 100_000_000
            if not looks_safetensors and head.startswith(_PICKLE_MAGIC):
                raise BadModelFile(
                    f"{path} is a pickled PyTorch file; edge-xcnn never unpickles model files "
                    "(they can run code). Use an edge-xcnn .safetensors checkpoint"
                )
            if len(head) < 8:
                raise BadModelFile(f"{path} is not a safetensors file (too short)")
            if size <= 1 or size > 100_000_000 or size + 8 > path.stat().st_size:
                raise BadModelFile(f"{path} is not a safetensors file (bad header length)")
            f.seek(8)
            header = json.loads(f.read(size))
    except OSError as e:
        raise BadModelFile(f"cannot read model file {path}: {e.strerror}") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadModelFile(f"{path} is not a safetensors file (header is not JSON)") from e
    if not isinstance(header, dict):
        raise BadModelFile(f"{path} is not a safetensors file (header is not an object)")
    return header


def read_meta(path: str | os.PathLike[str]) -> ModelMeta:
    """Read a checkpoint's metadata without loading weights or torch."""
    path = Path(path)
    header = _raw_header(path)
    stored = (header.get("__metadata__") or {}).get(META_KEY)
    if stored is None:
        raise BadModelFile(f"{path} is a safetensors file but not an edge-xcnn checkpoint (no '{META_KEY}' metadata)")
    return ModelMeta.from_json(stored)


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, meta: ModelMeta) -> Path:
    """Write weights + metadata atomically; returns the path written."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in _unwrap(model).state_dict().items()}
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: meta.to_json()})
    return Path(path)


def load_model(path: str | os.PathLike[str] | None, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelMeta]:
    """Build the network a checkpoint describes and load its weights, in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from edge_xcnn.models import build_model

    path = resolve_model(path)
    meta = read_meta(path)
    model = build_model(meta)
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as e:
        raise BadModelFile(f"cannot read weights from {path}: {e}") from e
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise BadModelFile(f"{path}: weights do not match the architecture in its metadata") from e
    if missing or unexpected:
        raise BadModelFile(
            f"{path}: weights do not match the architecture in its metadata "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors)"
        )
    return model.to(device).eval(), meta


def _unwrap(model: nn.Module) -> nn.Module:
    """The module under DistributedDataParallel / torch.compile wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model
