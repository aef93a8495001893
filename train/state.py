"""Training state for ``--resume``: optimizer tensors in safetensors, scalars as JSON. No pickle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from edge_xcnn.errors import BadModelFile
from edge_xcnn.fileio import atomic_output

STATE_KEY = "edge_xcnn_train_state"


def save_train_state(
    path: Path, optimizer: torch.optim.Optimizer, scalars: dict[str, Any], extra: dict[str, torch.Tensor] | None = None
) -> None:
    """Write the optimizer's tensors and param groups, ``scalars`` (epoch, best, RNG...) and ``extra`` tensors.

    ``extra`` holds the raw weights when the checkpoints hold their moving average (``--ema``).
    """
    from safetensors.torch import save_file

    opt = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain_state: dict[str, dict[str, Any]] = {}
    for idx, entries in opt["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain_state.setdefault(str(idx), {})[name] = value
    tensors["rng.torch"] = torch.get_rng_state()
    for name, value in (extra or {}).items():
        tensors[f"extra.{name}"] = value.detach().cpu().contiguous()
    header = {"param_groups": opt["param_groups"], "plain_state": plain_state, "scalars": scalars}
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata={STATE_KEY: json.dumps(header)})


def load_train_state(path: Path, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore the optimizer (and torch's RNG) from ``path``; returns the saved scalars and extra tensors."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise BadModelFile(f"--resume: no training state at {path}; train without --resume first")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads((f.metadata() or {})[STATE_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as e:
        raise BadModelFile(f"--resume: {path} is not an edge-xcnn training state ({e})") from e
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, entries in header["plain_state"].items():
        state.setdefault(int(idx), {}).update(entries)
    optimizer.load_state_dict({"state": state, "param_groups": header["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    extra = {k.removeprefix("extra."): v for k, v in tensors.items() if k.startswith("extra.")}
    return header["scalars"], extra
