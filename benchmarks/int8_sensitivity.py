"""Which layers of a model cost its INT8 export the most box agreement: one layer kept in float at a time.

Usage: ``python benchmarks/int8_sensitivity.py MODEL.onnx [--images 1000] [--json out.json]``

The measure is the one ``edge-xcnn export --int8`` reports (box agreement at IoU >= 0.5, top-1 drop),
taken on the **validation** split, so that a rule chosen from it is not tuned on test. Calibration is
the export's default (the training split, percentile), computed once and reused for every variant.
Rows: all layers quantized; each Conv/Gemm kept in float alone; then the rule ``calib.quantize``
applies by default (``keep_float_nodes``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import onnx

from edge_xcnn.backends import open_backend
from edge_xcnn.calib.agreement import agreement
from edge_xcnn.calib.frames import calibration_batch, default_calibration_spec
from edge_xcnn.calib.quantize import keep_float_nodes, quantize_int8
from edge_xcnn.train.data_spec import open_for_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--rule-only", action="store_true", help="only the all-quantized and default-rule rows")
    args = parser.parse_args()
    reference = open_backend(args.model, "onnxruntime")
    meta = reference.meta
    val, spec = open_for_model(None, meta, default_split="val")
    graph = onnx.load(str(args.model)).graph
    layers = [n.name for n in graph.node if n.op_type in ("Conv", "Gemm")]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        ranges = Path(work) / "ranges.json"
        frames = calibration_batch(default_calibration_spec(meta), meta, count=256)
        variants = [("all quantized", [])] + [(f"float: {name}", [name]) for name in layers if not args.rule_only]
        variants.append(("default rule: " + ", ".join(keep_float_nodes(args.model)), keep_float_nodes(args.model)))
        for label, keep in variants:
            out = Path(work) / "int8.onnx"
            quantize_int8(args.model, out, frames, ranges=ranges, keep_float=keep)
            report = agreement(reference, open_backend(out, "onnxruntime"), val, limit=args.images)
            row = {"variant": label, "keep_float": keep, **report.to_dict()}
            rows.append(row)
            drop = report.top1_fp32 - report.top1_int8
            print(f"{label:60s} box {report.box_agreement:.2%}  top-1 drop {drop * 100:+.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "data": str(spec), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
