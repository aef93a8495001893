"""Where the runner's misses arise on *validation* clips: the map (no candidate box), or the check and tracker.

For every ground-truth digit of every frame of the clips (validation digits over held-out footage,
``carphone_pristine.mp4``; never the demo's test clip): does any candidate box the runner's box check
chooses from (contours at the model's threshold and at ``+ refine_step``, min-area as the runner's)
reach IoU >= 0.5, and does the run's MOT output? Misses without a candidate are the map's; they are
split by the best-overlapping candidate into boxes over the digit and more, fragments of it, none
touching it, and other. Also: how many of them a single contour threshold from ``--thresholds`` would
have boxed (what a multi-threshold candidate set could recover at best).

    python benchmarks/miss_sources.py --model edge_xcnn/assets/synthetic.onnx --out runs/misses --clips 12

Candidates are rebuilt from PyAV-decoded frames through ``Backend.predict`` (OpenCV's resize), the run
decodes with libswscale: counts differ from the runner's own by a few per cent.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import numpy as np

from edge_xcnn.backends import open_backend
from edge_xcnn.localize import box_iou, heatmap_to_detections
from edge_xcnn.stream.pipeline import Runner, RunOptions
from edge_xcnn.stream.results import SourceRef
from edge_xcnn.stream.step import FrameStep, LocalizeOptions
from edge_xcnn.stream.tracking import TrackerOptions
from edge_xcnn.train.datasets.moving import write_moving_digits

IOU = 0.5


def xywh_to_xyxy(rows: np.ndarray) -> np.ndarray:
    if not len(rows):
        return np.zeros((0, 4))
    return np.stack([rows[:, 2], rows[:, 3], rows[:, 2] + rows[:, 4], rows[:, 3] + rows[:, 5]], axis=1)


def miss_kind(digit: np.ndarray, candidates: np.ndarray) -> str:
    """How the best-overlapping candidate fails a digit: ``big``, ``fragment``, ``apart`` or ``other``."""
    if not len(candidates):
        return "apart"
    best = candidates[box_iou(digit[None], candidates).argmax()]
    area = lambda b: max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])  # noqa: E731
    inter = area(np.r_[np.maximum(digit[:2], best[:2]), np.minimum(digit[2:], best[2:])])
    if inter == 0:
        return "apart"
    if area(best) > area(digit) and inter > 0.7 * area(digit):
        return "big"
    if area(best) < area(digit) and inter > 0.7 * area(best):
        return "fragment"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="edge_xcnn/assets/synthetic.onnx")
    parser.add_argument("--out", type=Path, default=Path("runs/misses"))
    parser.add_argument("--clips", type=int, default=12, help="validation clips over held-out footage (seeds 0..N-1)")
    parser.add_argument("--thresholds", default="0.20,0.24,0.28,0.36,0.44,0.52,0.60")
    args = parser.parse_args()
    backend = open_backend(args.model, threads=1)
    meta, options = backend.meta, LocalizeOptions()
    singles = [float(t) for t in args.thresholds.split(",")]
    counts = dict.fromkeys(("digits", "tracked", "candidate not kept", "no candidate"), 0)
    kinds = dict.fromkeys(("big", "fragment", "apart", "other"), 0)
    rescued = dict.fromkeys(singles, 0)
    for seed in range(args.clips):
        clip = write_moving_digits(args.out / f"held-out-{seed}", split="val", seed=seed, footage="held-out")
        mot = args.out / "mot.txt"
        Runner(RunOptions(sources=[str(clip.video)], mot_path=mot, overwrite=True, localize=options), backend).run()
        gt = np.loadtxt(clip.gt, delimiter=",", ndmin=2)
        out = np.loadtxt(mot, delimiter=",", ndmin=2) if mot.stat().st_size else np.zeros((0, 6))
        source = SourceRef(index=0, name=clip.video.stem, uri=str(clip.video), width=clip.size[1],
                           height=clip.size[0], fps=float(clip.fps))  # fmt: skip
        step = FrameStep(source, meta, options, TrackerOptions(name="none"))  # the runner's own candidates
        with av.open(str(clip.video)) as container:
            for index, frame in enumerate(container.decode(video=0), start=1):
                _, heatmaps, geometries = backend.predict([frame.to_ndarray(format="rgb24")])
                heat, geometry = heatmaps[0], geometries[0]
                min_area = options.min_area * heat.shape[-2] * heat.shape[-1]

                def boxes(threshold: float, heat: np.ndarray = heat, geometry=geometry, area=min_area) -> np.ndarray:
                    rule = {"polarity": meta.polarity, "keep": "all", "min_area": area}
                    return heatmap_to_detections(heat, geometry, threshold=threshold, **rule).xyxy

                candidates = step.detect(heat, geometry, candidates=True).xyxy
                tracked = xywh_to_xyxy(out[out[:, 0] == index])
                for digit in xywh_to_xyxy(gt[gt[:, 0] == index]):
                    counts["digits"] += 1
                    if not len(candidates) or box_iou(digit[None], candidates).max() < IOU:
                        counts["no candidate"] += 1
                        kinds[miss_kind(digit, candidates)] += 1
                        for t in singles:
                            single = boxes(t)
                            rescued[t] += bool(len(single)) and box_iou(digit[None], single).max() >= IOU
                    elif len(tracked) and box_iou(digit[None], tracked).max() >= IOU:
                        counts["tracked"] += 1
                    else:
                        counts["candidate not kept"] += 1
        print(f"clip {seed}: {counts}", flush=True)
    n = counts["digits"]
    print(", ".join(f"{k} {v} ({100 * v / n:.1f}%)" for k, v in counts.items() if k != "digits") + f" of {n} digits")
    print("no candidate, by the best-overlapping candidate: " + ", ".join(f"{k} {v}" for k, v in kinds.items()))
    print("of those, boxed by one threshold alone: " + ", ".join(f"{t:.2f}: {v}" for t, v in rescued.items()))
    print(f"a perfect check's MOTA ceiling on these clips: {100 * (1 - counts['no candidate'] / n):.1f}%")


if __name__ == "__main__":
    main()
