"""Sweep the runner's heatmap-to-track settings on *validation* clips, never on the demo's test clip.

Clips of validation digits: five over held-out footage (``carphone_pristine.mp4``, seeds 0-4;
``--held-out-clips N`` for more) and three over the training footage (seeds 0-2). Every
combination of ``--grid`` (a JSON object of ``LocalizeOptions`` / ``TrackerOptions`` fields to
lists of values) is run in-process on each clip and scored with the demo's metrics; one line per
combination with mean MOTA / IDF1 / HOTA per footage, then each clip's MOTA and the summed matches
(TP), false boxes (FP), misses (FN) and id switches per footage.

    python benchmarks/postprocess_sweep.py --model edge_xcnn/assets/synthetic.onnx --out runs/sweep \\
        --grid '{"threshold": [0.3, 0.35, 0.4], "min_area": [0.02, 0.03, 0.04],
                 "track_activation_threshold": [0.6, 0.75], "minimum_consecutive_frames": [2, 4]}'

Session 11's figures (README, "How the default was chosen") come from that grid.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
from pathlib import Path

from edge_xcnn.backends import open_backend
from edge_xcnn.stream.demo import track_metrics
from edge_xcnn.stream.pipeline import Runner, RunOptions
from edge_xcnn.stream.step import LocalizeOptions
from edge_xcnn.stream.tracking import TrackerOptions
from edge_xcnn.train.datasets.moving import write_moving_digits

HELD_OUT_CLIPS = 5  # --held-out-clips: more clips, less of one clip's luck (session 13: 12)
TRAINING_FOOTAGE_CLIPS = 3
METRICS = ("MOTA", "IDF1", "HOTA")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="edge_xcnn/assets/synthetic.onnx")
    parser.add_argument("--out", type=Path, default=Path("runs/sweep"))
    parser.add_argument("--grid", default='{"min_area": [0.03]}', help="JSON: option name -> list of values")
    parser.add_argument("--held-out-clips", type=int, default=HELD_OUT_CLIPS, help="clips over held-out footage")
    args = parser.parse_args()
    clip_seeds = (("held-out", range(args.held_out_clips)), ("split", range(TRAINING_FOOTAGE_CLIPS)))
    grid: dict[str, list[object]] = json.loads(args.grid)
    localize_fields = {f.name for f in dataclasses.fields(LocalizeOptions)}
    tracker_fields = {f.name for f in dataclasses.fields(TrackerOptions)}
    unknown = set(grid) - localize_fields - tracker_fields
    if unknown:
        parser.error(f"not a LocalizeOptions or TrackerOptions field: {', '.join(sorted(unknown))}")
    clips = []
    for footage, seeds in clip_seeds:
        for seed in seeds:
            clip = write_moving_digits(args.out / f"{footage}-{seed}", split="val", seed=seed, footage=footage)
            clips.append((footage, clip))
    backend = open_backend(args.model, threads=1)
    for values in itertools.product(*grid.values()):
        setting = dict(zip(grid, values, strict=True))
        localize = LocalizeOptions(**{k: v for k, v in setting.items() if k in localize_fields})  # type: ignore[arg-type]
        tracker = TrackerOptions(**{k: v for k, v in setting.items() if k in tracker_fields})  # type: ignore[arg-type]
        scores: dict[str, list[dict[str, float]]] = {footage: [] for footage, _ in clip_seeds}
        for footage, clip in clips:
            mot = args.out / "mot.txt"
            options = RunOptions(
                sources=[str(clip.video)], mot_path=mot, overwrite=True, localize=localize, tracker=tracker
            )
            Runner(options, backend).run()
            scores[footage].append(track_metrics(clip.gt, mot))
        means = {
            footage: " / ".join(f"{100 * sum(r[m] for r in rows) / len(rows):.1f}" for m in METRICS)
            for footage, rows in scores.items()
        }
        print(f"{json.dumps(setting)}  held-out {means['held-out']}  training footage {means['split']}", flush=True)
        each = {footage: " ".join(f"{100 * r['MOTA']:.0f}" for r in rows) for footage, rows in scores.items()}
        print(f"    MOTA per clip: held-out {each['held-out']}; training footage {each['split']}", flush=True)
        totals = {
            footage: ", ".join(f"{k} {sum(int(r[k]) for r in rows)}" for k in ("TP", "FP", "FN", "IDSW"))
            for footage, rows in scores.items()
        }
        print(f"    summed: held-out {totals['held-out']}; training footage {totals['split']}", flush=True)


if __name__ == "__main__":
    main()
