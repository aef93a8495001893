"""The ceiling weak supervision chases: the default model's classifier trained *with* the boxes.

The issue's upper-bound row: the same classifier as the default model's (the default recipe's
``classifier``, ``mnist_net_deep``: widths 16-32-64-64 at half resolution, global max-pool class
head), here on the RGB image, on
the same training scenes (recoloured footage, grey and coloured warped digits, clutter; here exactly
one digit per image so that one box is well defined), with a second head that regresses the digit's
box (sigmoid cx, cy, w, h of the image; L1 + GIoU loss) from the flattened 8x8 features, beside the
class head (a global max pool forgets where things are, so the box head cannot use it).
Scored on the frozen synthetic test split by the same rule as XCNN (IoU >= 0.5 with the true box).

    python benchmarks/box_supervised.py --epochs 8 --out runs/box-supervised

Same seed, optimizer, learning-rate schedule, batch and epochs as the default recipe; prints and
writes JSON figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_xcnn.localize import box_iou
from edge_xcnn.models.classifiers import CLASSIFIER_TYPES
from edge_xcnn.models.xcnn import Normalize
from edge_xcnn.train.datasets.base import MemoryCache
from edge_xcnn.train.datasets.scenes import SyntheticScenes
from edge_xcnn.train.datasets.synthetic import SyntheticDigits
from edge_xcnn.train.loop import recipe_lr
from edge_xcnn.train.recipes import get_recipe


class BoxRegressor(nn.Module):
    """The default classifier's features on the RGB image, its class head, and a box head on the 8x8 grid."""

    def __init__(self, classifier: str) -> None:
        super().__init__()
        self.normalize = Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        net = CLASSIFIER_TYPES[classifier](3, 10, (64, 64))
        self.features, self.pool, self.classifier = net.features, net.pool, net.classifier
        self.box = nn.Linear(net.classifier.in_features * 8 * 8, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(self.normalize(x))
        return self.classifier(torch.flatten(self.pool(f), 1)), torch.sigmoid(self.box(torch.flatten(f, 1)))


def to_xyxy(cxcywh: torch.Tensor, size: int) -> torch.Tensor:
    cx, cy, w, h = cxcywh.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) * size


def giou_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lt, rb = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp_min(0).prod(1)
    area_a, area_b = (a[:, 2:] - a[:, :2]).clamp_min(0).prod(1), (b[:, 2:] - b[:, :2]).prod(1)
    union = area_a + area_b - inter
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).prod(1)
    return (1 - inter / union + (hull - union) / hull).mean()


def tensors(dataset, indices) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    samples = [dataset[int(i)] for i in indices]
    x = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2).float() / 255
    y = torch.tensor([s.label for s in samples])
    b = torch.from_numpy(np.stack([s.box for s in samples]))
    return x, y, b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=get_recipe("synthetic").epochs)
    parser.add_argument("--images", type=int, default=get_recipe("synthetic").train_images)
    parser.add_argument("--out", type=Path, default=Path("runs/box-supervised"))
    args = parser.parse_args()
    recipe = get_recipe("synthetic")
    schedule = recipe.with_overrides(epochs=args.epochs)  # the recipe's learning-rate schedule over --epochs
    torch.manual_seed(recipe.seed)
    size = recipe.input_size[0]
    train = MemoryCache(SyntheticScenes(size, recipe.seed, args.images, count_p=(0.0, 1.0, 0.0, 0.0)))
    test = SyntheticDigits("test", size=size)
    model = BoxRegressor(recipe.classifier).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
    started = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(recipe.seed * 1000 + epoch))
        model.train()
        for start in range(0, len(order), recipe.batch_size):
            for group in optimizer.param_groups:
                group["lr"] = recipe_lr(schedule, epoch, start / len(order))
            x, y, b = tensors(train, order[start : start + recipe.batch_size])
            logits, box = model(x.to(memory_format=torch.channels_last))
            target = torch.cat([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], 1) / size
            loss = F.cross_entropy(logits, y) + F.l1_loss(box, target) * 5 + giou_loss(to_xyxy(box, size), b)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        elapsed = time.perf_counter() - started
        print(f"epoch {epoch + 1}/{args.epochs} loss {float(loss.detach()):.3f} {elapsed:.0f}s", flush=True)
    model.eval()
    hits, correct = [], []
    with torch.no_grad():
        for start in range(0, len(test), 256):
            x, y, b = tensors(test, range(start, min(len(test), start + 256)))
            logits, box = model(x)
            pred = to_xyxy(box, size).numpy()
            hits += [box_iou(p, g)[0, 0] >= 0.5 for p, g in zip(pred, b.numpy(), strict=True)]
            correct += (logits.argmax(1) == y).tolist()
    hits_a, correct_a = np.array(hits), np.array(correct)
    figures = {
        "data": "synthetic:test",
        "images": len(hits_a),
        "top1": float(correct_a.mean()),
        "box_acc_iou50": float(hits_a.mean()),
        "top1_loc": float((hits_a & correct_a).mean()),
        "epochs": args.epochs,
        "train_images": args.images,
        "wall_s": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
