"""Helpers of ``benchmarks/throughput.sh`` (issue 11): the 1080p file, the model-bound model, the tables.

python benchmarks/throughput.py upscale IN.mp4 OUT.mp4 [HEIGHT]  # 1080p from the 720p file (PyAV)
python benchmarks/throughput.py vgg16 OUT.onnx                   # VGG-16 recipe, untrained: speed only
python benchmarks/throughput.py summaries DIR                    # run summaries -> one markdown table
python benchmarks/throughput.py bench DIR                        # bench --video JSON -> one markdown table
"""

from __future__ import annotations

import json
import re
import sys
from fractions import Fraction
from pathlib import Path


def upscale(source: Path, target: Path, height: int = 1080) -> None:
    """Re-encode ``source`` at ``height`` lines (x264 ``veryfast`` crf 20: a realistic 1080p H.264 file)."""
    import av

    with av.open(str(source)) as src, av.open(str(target), "w") as out:
        stream = src.streams.video[0]
        width = round(stream.width * height / stream.height / 2) * 2
        rate = Fraction(stream.average_rate or 25).limit_denominator(1001)
        enc = out.add_stream("libx264", rate=rate, options={"preset": "veryfast", "crf": "20"})
        enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
        for frame in src.decode(stream):
            big = frame.reformat(width, height, "yuv420p", interpolation="BICUBIC")
            big.pts = None
            for packet in enc.encode(big):
                out.mux(packet)
        for packet in enc.encode():
            out.mux(packet)


def vgg16(target: Path) -> None:
    """The synthetic-vgg16 recipe's network with its initial weights, exported: its speed is the trained one's."""
    import torch

    from edge_xcnn.checkpoint import save_checkpoint
    from edge_xcnn.export.onnx_export import export_onnx
    from edge_xcnn.models.build import build_model
    from edge_xcnn.train.recipes import get_recipe

    torch.manual_seed(0)
    meta = get_recipe("synthetic-vgg16").meta([str(k) for k in range(10)])
    checkpoint = save_checkpoint(target.with_suffix(".safetensors"), build_model(meta).eval(), meta)
    export_onnx(checkpoint, target)


def summaries(folder: Path) -> None:
    """``NAME[.rK].json`` run summaries -> | run | median e2e FPS | every round (sorted) | that run's stages |."""
    print("| run | end-to-end FPS (median) | every round, sorted "
          "| decode / inference / boxes+tracking / write or draw+encode, ms per frame (the median run) |")  # fmt: skip
    print("|---|---|---|---|")
    runs: dict[str, list[dict]] = {}
    for path in sorted(folder.glob("*.json")):
        name = re.sub(r"\.r\d+$", "", path.stem)
        runs.setdefault(name, []).append(json.loads(path.read_text()))
    for name, found in runs.items():
        found.sort(key=lambda s: s["end_to_end_fps"])
        s = found[(len(found) - 1) // 2]  # the median run (the lower one of an even count)
        stages = " / ".join(f"{v['ms_per_frame']:.2f}" for v in s["stages"].values() if v["ms_per_frame"])
        every = ", ".join(f"{r['end_to_end_fps']:.1f}" for r in found)
        print(f"| {name} | {s['end_to_end_fps']:.1f} | {every} | {stages} |")


def bench(folder: Path) -> None:
    """``bench --video`` JSON files -> one row per file with every rate and ratio."""
    keys = ("raw_decode_fps", "decode_fps", "model_fps", "limit_fps", "results_fps", "end_to_end_fps", "sources_fps")
    print("| file | raw decode | pipeline decode | model-only | limit | results-only | annotated | 4 sources "
          "| results / limit | annotated / limit | 4 sources / limit |")  # fmt: skip
    print("|---" * 11 + "|")
    for path in sorted(folder.glob("bench-*.json")):
        for row in json.loads(path.read_text()):
            v = row.get("video")
            if not v:
                continue
            cells = [f"{v[k]:.1f}" if v.get(k) else "-" for k in keys]
            ratios = [f"{v[k]:.2f}" if v.get(k) else "-" for k in
                      ("results_over_limit", "annotated_over_limit", "sources_over_limit")]  # fmt: skip
            print(f"| {path.stem.removeprefix('bench-')} | " + " | ".join(cells + ratios) + " |")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "upscale":
        upscale(Path(args[0]), Path(args[1]), int(args[2]) if len(args) > 2 else 1080)
    elif command == "vgg16":
        vgg16(Path(args[0]))
    elif command == "summaries":
        summaries(Path(args[0]))
    elif command == "bench":
        bench(Path(args[0]))
    else:
        raise SystemExit(__doc__)
