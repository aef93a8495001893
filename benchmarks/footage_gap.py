"""How much a model loses on footage it never saw, measured without the test split.

The benchmark's val split shares the training footage (bikes.mp4 and eight photos), so model selection
on it cannot see the default model's largest loss: the test footage (GT-known loc 73.3% on val, 64.5%
on test). This script scores the same validation digits twice, on the training footage (the val split
itself) and on ``backgrounds.held_out_pool`` (the packages' other video and photos, used by neither
the default recipe nor the test split), with ``edge-xcnn eval``'s rule at the model's threshold:

    python benchmarks/footage_gap.py edge_xcnn/assets/synthetic.onnx [--images 2000] [--test]

``--test`` adds the test split's row for reference (do not choose anything on it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_xcnn.backends import open_backend
from edge_xcnn.train.datasets.synthetic import SyntheticDigits
from edge_xcnn.train.evaluate import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--test", action="store_true", help="also the test split (reference only)")
    args = parser.parse_args()
    backend = open_backend(args.model)
    size = backend.meta.input_size[0]
    rows = [
        ("val digits, training footage (the val split)", SyntheticDigits("val", size)),
        ("val digits, held-out footage", SyntheticDigits("val", size, footage="held-out")),
    ]
    if args.test:
        rows.append(("test split (reference)", SyntheticDigits("test", size)))
    print(f"| data ({backend.meta.threshold:.2f} threshold) | top-1 | GT-known loc | at 0.5 | MaxBoxAccV2 | PxAP |")
    print("|---|---|---|---|---|---|")
    for name, data in rows:
        report = evaluate(backend, data, data_name=name, limit=args.images)
        loc = report.localization or {}
        print(
            f"| {name} | {report.top1:.2%} | {loc.get('gt_known_loc', float('nan')):.2%} "
            f"| {loc.get('at_0.5', {}).get('gt_known_loc', float('nan')):.2%} "
            f"| {loc.get('MaxBoxAccV2', float('nan')):.1%} | {loc.get('PxAP') or float('nan'):.1%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
