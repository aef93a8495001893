"""The README's ablation: from the paper's recipe to the default one, one change per row, same budget.

    python benchmarks/ablation.py --epochs 3 --limit 6000 --out runs/ablation

Every row trains with the same seed, optimizer, batch, epochs and number of training images
(``--limit`` images spread over the row's training split), then is scored by the same code as
``edge-xcnn eval`` (synthetic:test, 2,000 images) and ``edge-xcnn demo`` (MOTA / IDF1 / HOTA on the
moving-digits clip), and the wall time of its training is kept. Rows:

1. ``synthetic-paper``: the paper's generator and classifier, cross-entropy, the benchmark's
   training split;
2. + the global max-pool head and classifier pretraining on digit canvases (first, because without
   them no XCNN leaves chance at this budget: the next rows would all read 10%);
3. + the context generator;
4. + the area prior;
5. + background-activation suppression;
6. + the colour-robust multi-digit scenes (which need the per-class sigmoid loss) and the threshold
   chosen on validation;
7. + the whole-digit classifier and glyph warps;
8. + the default's weights (area prior 0.2, suppression 1.0): session 8's ``synthetic``;
9. - suppression: the ``synthetic`` recipe itself at this budget (session 9 switched it off).

The box-supervised ceiling is ``benchmarks/box_supervised.py`` with the same ``--epochs``/``--images``.
Writes ``ablation.json`` and ``ablation.md`` into ``--out``; rows already done there are reused.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console

HEAD = {"classifier": "mnist_net_gmp", "classifier_pretrain_epochs": 3, "classifier_lr_scale": 0.3}
CONTEXT = {**HEAD, "generator": "context", "generator_width": 16, "generator_levels": 3}
AREA = {**CONTEXT, "area_prior": 0.5}
BAS = {**AREA, "bas": 0.5, "bas_fraction": 0.25}
# The synthetic recipe with the parts of rows 7-8 switched back off.
DATA = {"classifier": "mnist_net_gmp", "glyph_warps": False, "area_prior": 0.5, "bas": 0.5}
WHOLE_DIGIT = {"area_prior": 0.5, "bas": 0.5}
ROWS: list[tuple[str, str, dict[str, Any]]] = [
    ("paper recipe", "synthetic-paper", {}),
    ("+ max-pool head, classifier pretraining", "synthetic-paper", HEAD),
    ("+ context generator", "synthetic-paper", CONTEXT),
    ("+ area prior", "synthetic-paper", AREA),
    ("+ background suppression", "synthetic-paper", BAS),
    ("+ data (scenes, sigmoid loss), val threshold", "synthetic", DATA),
    ("+ whole-digit classifier (mnist_net_deep), glyph warps", "synthetic", WHOLE_DIGIT),
    ("+ area prior 0.2, suppression 1.0 (session 8's synthetic)", "synthetic", {"bas": 1.0}),
    ("- suppression (= synthetic since session 9)", "synthetic", {}),
]


def run_row(name: str, recipe_name: str, changes: dict[str, Any], args: argparse.Namespace, console: Console) -> dict:
    from edge_xcnn.backends.factory import open_backend
    from edge_xcnn.stream.demo import run_demo
    from edge_xcnn.train.datasets.synthetic import SyntheticDigits
    from edge_xcnn.train.evaluate import evaluate
    from edge_xcnn.train.loop import TrainOptions, train
    from edge_xcnn.train.recipes import get_recipe

    folder = args.out / recipe_name / "-".join(f"{k}={v}" for k, v in sorted(changes.items())).replace("/", "_")
    recipe = get_recipe(recipe_name).with_overrides(epochs=args.epochs, seed=args.seed, **changes)
    recipe.validate()
    started = time.perf_counter()
    result = train(TrainOptions(recipe=recipe, out_dir=folder, limit_train=args.limit, quiet=True))
    wall = time.perf_counter() - started
    backend = open_backend(result.best, "torch", device="cpu")
    report = evaluate(backend, SyntheticDigits("test", size=64), data_name="synthetic:test").to_dict()
    demo = run_demo(folder / "demo", backend, overwrite=True)
    loc = report["localization"]
    return {
        "row": name,
        "recipe": recipe_name,
        "changes": changes,
        "top1": report["top1"],
        "threshold": loc["threshold"],
        "gt_known_loc": loc["gt_known_loc"],
        "gt_known_loc_0.5": loc["at_0.5"]["gt_known_loc"],
        "MaxBoxAccV2": loc["MaxBoxAccV2"],
        "PxAP": loc["PxAP"],
        "loc_least_saturated": loc["saturation_thirds"]["least"]["gt_known_loc"],
        "loc_most_saturated": loc["saturation_thirds"]["most"]["gt_known_loc"],
        "MOTA": demo.metrics["MOTA"],
        "IDF1": demo.metrics["IDF1"],
        "HOTA": demo.metrics["HOTA"],
        "train_wall_s": wall,
    }


def markdown(rows: list[dict]) -> str:
    head = ("| row | top-1 | GT-known loc (thr) | at 0.5 | MaxBoxAccV2 | PxAP | loc least / most sat. | "
            "MOTA | IDF1 | HOTA | train wall |")  # fmt: skip
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            f"| {r['row']} | {r['top1']:.1%} | {r['gt_known_loc']:.1%} ({r['threshold']:.2f}) | "
            f"{r['gt_known_loc_0.5']:.1%} | {r['MaxBoxAccV2']:.1%} | {r['PxAP']:.1%} | "
            f"{r['loc_least_saturated']:.1%} / {r['loc_most_saturated']:.1%} | {r['MOTA']:.1%} | {r['IDF1']:.1%} | "
            f"{r['HOTA']:.1%} | {r['train_wall_s']:.0f} s |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=6000, help="training images per row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=str, default="", help="comma-separated row numbers (1-based); default all")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    args = parser.parse_args()
    console = Console(stderr=True)
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "ablation.json"
    done = {r["row"]: r for r in json.loads(store.read_text())} if store.is_file() else {}
    wanted = {int(v) for v in args.rows.split(",") if v} or set(range(1, len(ROWS) + 1))
    for number, (name, recipe_name, changes) in enumerate(ROWS, 1):
        if number not in wanted or name in done:
            continue
        console.print(f"row {number}/{len(ROWS)}: {name}")
        done[name] = run_row(name, recipe_name, changes, args, console)
        rows = [done[n] for n, _, _ in ROWS if n in done]
        store.write_text(json.dumps(rows, indent=2))
        (args.out / "ablation.md").write_text(markdown(rows))
        console.print(markdown(rows))


if __name__ == "__main__":
    main()
