"""The model-randomization sanity check (Adebayo et al., NeurIPS 2018), cascading from the top.

Layers with weights (``Conv2d``, ``Linear``) are re-initialised one more at a time, top to bottom:
the classifier's fully connected layer, its convolutions from the last to the first, then (XCNN
only) the generator's convolutions from the last to the first. After each step every method's maps
for the same images and classes are compared with the maps of the trained model (Spearman rank
correlation and SSIM, averaged over the images). A method that explains the model must change
when the weights it depends on are destroyed.

XCNN's map is computed by the generator before the classifier sees it: randomizing the classifier
leaves it exactly unchanged (correlation 1). That is not a failed check but what the architecture
means: the map says what the generator passes on, not why the classifier decides as it does; it
changes as soon as a generator layer is randomized. Re-initialisation uses PyTorch's default
initialisers under a fixed seed; batch-norm statistics are kept, as in the paper's Inception runs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from edge_xcnn.explain.metrics import spearman, ssim


@dataclass
class SanityRow:
    """How much one method's maps changed after one cumulative randomization step."""

    model: str
    method: str
    layer: str
    step: int
    randomized: str
    spearman: float
    ssim: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def cascade(model: nn.Module) -> list[tuple[str, str]]:
    """The randomization order, top first: ``(label, module path)`` of each layer with weights."""
    order: list[tuple[str, str]] = []
    parts = [("classifier", model.classifier)]
    if hasattr(model, "generator"):
        parts.append(("generator", model.generator))
    for part_name, part in parts:
        named = [(name, m) for name, m in part.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        convs = [name for name, m in named if isinstance(m, nn.Conv2d)]
        for name, module in reversed(named):
            if isinstance(module, nn.Linear):
                label = f"{part_name} fc"
            else:
                label = f"{part_name} conv {convs.index(name) + 1}/{len(convs)}"
            order.append((label, f"{part_name}.{name}"))
    return order


def randomize(module: nn.Module, seed: int) -> None:
    """Re-initialise one layer's weights with PyTorch's default initialiser, reproducibly."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module.reset_parameters()


def sanity_check(
    model: nn.Module,
    model_name: str,
    methods: list[tuple[str, str, Callable[[nn.Module], np.ndarray]]],
    seed: int = 0,
) -> list[SanityRow]:
    """Run the cascade on ``model`` for several methods.

    Args:
        model: the trained model (left untouched; a copy is randomized).
        model_name: for the rows (``xcnn`` / ``plain``).
        methods: ``(method name, layer label, maps)`` where ``maps(model)`` returns N x H x W maps of the
            fixed images and classes for the given (possibly randomized) model.
        seed: re-initialisation seed (layer k uses ``seed + k``).

    Returns:
        One row per method and step; step 0 is the trained model compared with itself.
    """
    original = {(name, layer): maps(model) for name, layer, maps in methods}
    rows = [SanityRow(model_name, name, layer, 0, "none", 1.0, 1.0) for name, layer, _ in methods]
    randomized = copy.deepcopy(model)
    for k, (label, path) in enumerate(cascade(randomized), start=1):
        randomize(randomized.get_submodule(path), seed + k)
        for name, layer, maps in methods:
            now = maps(randomized)
            before = original[(name, layer)]
            rows.append(
                SanityRow(
                    model=model_name,
                    method=name,
                    layer=layer,
                    step=k,
                    randomized=label,
                    spearman=float(np.mean([spearman(a, b) for a, b in zip(before, now, strict=True)])),
                    ssim=float(np.mean([ssim(a, b) for a, b in zip(before, now, strict=True)])),
                )
            )
    return rows
