"""Time one training step of a recipe, with and without the decoder's dense-gradient step, in one process.

The two variants run in interleaved rounds on the same model, batch and optimizer, so the ratio is
measured under the same load (these machines are shared and noisy; a ratio, never a timed assertion):

    python benchmarks/train_step.py [--recipe synthetic] [--rounds 8] [--steps 10] [--batch 128]

Random images and multi-hot labels stand in for the scenes (the step's cost does not depend on the
pixels); the recipe's model, channels-last layout, bf16 autocast where the CPU has it, compiled
instance norm when the recipe compiles, area prior on: what ``train.loop`` runs once the priors are in.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import edge_xcnn.models.generator as generator_module
from edge_xcnn.models import build_model, forward_logits_heatmap
from edge_xcnn.train.loop import _param_groups, amp_available
from edge_xcnn.train.objective import classification_loss, localization_terms
from edge_xcnn.train.recipes import get_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="synthetic")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="steps per variant per round")
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()

    recipe = get_recipe(args.recipe)
    meta = recipe.meta([str(i) for i in range(10)])
    torch.manual_seed(0)
    model = build_model(meta).to(memory_format=torch.channels_last).train()
    generator_module.compile_instance_norm(recipe.compile)
    optimizer = torch.optim.Adam(_param_groups(model, recipe), lr=recipe.lr, betas=recipe.betas)
    h, w = meta.input_size
    images = torch.randn(args.batch, meta.arch.in_channels, h, w).contiguous(memory_format=torch.channels_last)
    labels = (torch.rand(args.batch, meta.num_classes) < 0.2).float()
    use_amp = amp_available(torch.device("cpu"))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_amp):
            logits, heatmap = forward_logits_heatmap(model, images)
            loss = classification_loss(logits.float(), labels, "bce")
            terms = localization_terms(
                model, images, heatmap.float(), labels, kind="bce", area_weight=0.2, bas_weight=0.0,
                bas_fraction=recipe.bas_fraction, empty_weight=0.0,
            )  # fmt: skip
            loss = loss + sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    variants = {"dense gradient (the code)": generator_module._dense_grad, "without": lambda x: x}
    try:
        for fn in variants.values():  # warm-up: compile, allocator, oneDNN primitives
            generator_module._dense_grad = fn
            for _ in range(3):
                step()
        ms: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, fn in variants.items():
                generator_module._dense_grad = fn
                start = time.perf_counter()
                for _ in range(args.steps):
                    step()
                ms[name].append(1000 * (time.perf_counter() - start) / args.steps)
    finally:
        generator_module._dense_grad = variants["dense gradient (the code)"]
        generator_module.compile_instance_norm(False)
    print(f"recipe {recipe.name}, batch {args.batch}, bf16 {use_amp}, {torch.get_num_threads()} threads")
    for name, values in ms.items():
        print(f"{name}: median {statistics.median(values):.1f} ms/step  rounds {[round(v) for v in values]}")
    medians = [statistics.median(v) for v in ms.values()]
    print(f"speed-up: {medians[1] / medians[0]:.2f}x")


if __name__ == "__main__":
    main()
