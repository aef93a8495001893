"""``edge-xcnn demo``: moving digits on real footage, the default model, tracks scored against ground truth."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_xcnn.backends.base import Backend
from edge_xcnn.stream.pipeline import Runner, RunOptions, RunSummary


@dataclass
class DemoResult:
    """The files the demo wrote, the run summary and the tracking metrics."""

    clip: Path
    video: Path
    jsonl: Path
    mot: Path
    summary: RunSummary
    metrics: dict[str, float]  # MOTA, IDF1, HOTA, IDSW, ...
    stills: list[Path] = field(default_factory=list)  # three annotated frames as PNG, to look at


def write_stills(video: Path, folder: Path, count: int = 3) -> list[Path]:
    """``count`` evenly spaced frames of the annotated video as PNGs (``demo-frame-N.png``)."""
    import av
    import cv2

    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    if not frames:
        return []
    picks = [round((k + 1) * len(frames) / (count + 1)) for k in range(count)]
    written = []
    for k, index in enumerate(picks, 1):
        path = folder / f"demo-frame-{k}.png"
        cv2.imwrite(str(path), frames[min(index, len(frames) - 1)])
        written.append(path)
    return written


def track_metrics(gt: Path, mot: Path) -> dict[str, float]:
    """CLEAR (MOTA, IDSW), Identity (IDF1) and HOTA of ``mot`` against ``gt``, IoU 0.5.

    Computed by Roboflow's ``trackers`` evaluation, which follows TrackEval's matching.
    """
    from trackers.eval import evaluate_mot_sequence

    result = evaluate_mot_sequence(gt, mot, metrics=["CLEAR", "HOTA", "Identity"], threshold=0.5)
    clear, hota, identity = result.CLEAR, result.HOTA, result.Identity
    assert clear is not None and hota is not None and identity is not None
    return {
        "MOTA": float(clear.MOTA),
        "MOTP": float(clear.MOTP),
        "IDF1": float(identity.IDF1),
        "HOTA": float(hota.HOTA),
        "DetA": float(hota.DetA),
        "AssA": float(hota.AssA),
        "IDSW": int(clear.IDSW),
        "TP": int(clear.CLR_TP),
        "FP": int(clear.CLR_FP),
        "FN": int(clear.CLR_FN),
    }


def run_demo(
    out: Path,
    backend: Backend,
    *,
    frames: int = 150,
    seed: int = 0,
    overwrite: bool = False,
    options: dict[str, Any] | None = None,
    started: Callable[[Runner], Any] | None = None,
) -> DemoResult:
    """Write the clip (3 test digits over bigbuckbunny.mp4, 256x256), run the model on it, score the tracks.

    ``started`` gets the runner before it runs (the CLI routes SIGINT/SIGTERM to its ``stop``).
    """
    from edge_xcnn.train.datasets.moving import write_moving_digits

    video, jsonl, mot = out / "demo.mp4", out / "demo.jsonl", out / "demo.mot.txt"
    run_options = RunOptions(
        sources=[], outputs=[str(video)], json_path=jsonl, mot_path=mot, overwrite=overwrite, **(options or {})
    )
    clip = write_moving_digits(out / "clip", split="test", frames=frames, seed=seed)
    run_options.sources = [str(clip.video)]
    runner = Runner(run_options, backend)
    if started is not None:
        started(runner)
    summary = runner.run()
    metrics = track_metrics(clip.gt, mot) if summary.signal is None else {}
    stills = write_stills(video, out) if summary.signal is None and video.is_file() else []
    return DemoResult(clip.video, video, jsonl, mot, summary, metrics, stills)


def plain_reading(metrics: dict[str, float]) -> str:
    """What the demo's figures mean, in words, from the figures themselves (what a newcomer reads last)."""
    tp, fp, fn = int(metrics["TP"]), int(metrics["FP"]), int(metrics["FN"])
    objects = tp + fn
    lines = [
        f"Reading: the clip holds {objects} digit appearances (digits x frames); the model boxed {tp} of "
        f"them ({tp / max(objects, 1):.0%}) and missed {fn}.",
        f"It also drew {fp} boxes where no digit was. MOTA counts misses, false boxes and id switches "
        f"against the {objects} appearances, so "
        + ("below 0 means the errors outnumber the digits." if metrics["MOTA"] < 0 else "100% would be perfect."),
        f"IDF1 {metrics['IDF1']:.0%}: how much of the time each digit is followed by the same track id; "
        f"HOTA {metrics['HOTA']:.0%} combines finding (DetA {metrics['DetA']:.0%}) and keeping (AssA "
        f"{metrics['AssA']:.0%}) the digits.",
    ]
    return "\n".join(lines)
