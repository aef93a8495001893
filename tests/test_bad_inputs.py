"""Every bad input across the commands: one ``error:`` line, exit 2, no traceback, nothing created or lost.

The table is also what ``benchmarks/bad_inputs.py`` runs as real processes for the README's figures.
Each case runs in a folder holding earlier outputs (``keep.*``); after the case every file there must
be byte-identical and no new file may exist, so a refused run has neither clobbered nor started anything.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.media import write_video
from typer.testing import CliRunner

from edge_xcnn.cli import app

KEEP = b"an earlier run's output\n"

# (id, argv with {placeholders}, text the one line must contain)
CASES: list[tuple[str, list[str], str]] = [
    # run: inputs
    ("run-missing-input", ["run", "{dir}/missing.mp4"], "input not found"),
    ("run-not-a-video", ["run", "{notes}"], "not a readable video"),
    ("run-empty-input", ["run", ""], "must not be empty"),
    ("run-ftp", ["run", "ftp://example.com/v.mp4"], "unsupported input"),
    ("run-ipv6", ["run", "rtsp://[::1/stream"], "not a valid URL"),
    ("run-no-host", ["run", "rtsp://:554/stream"], "names no host"),
    ("run-bad-port", ["run", "rtsp://cam:99999/stream"], "not a valid URL"),
    ("run-csi-name", ["run", "csi://left"], "sensor number"),
    # run: option ranges
    ("run-threshold-5", ["run", "{video}", "--threshold", "5"], "--threshold must be in (0, 1)"),
    ("run-threshold-neg", ["run", "{video}", "--threshold", "-1"], "--threshold must be in (0, 1)"),
    ("run-threshold-0", ["run", "{video}", "--threshold", "0"], "--threshold must be in (0, 1)"),
    ("run-min-area-5", ["run", "{video}", "--min-area", "5"], "--min-area must be in [0, 1)"),
    ("run-min-area-neg", ["run", "{video}", "--min-area", "-0.1"], "--min-area must be in [0, 1)"),
    ("run-track-buffer", ["run", "{video}", "--track-buffer", "-5"], "--track-buffer must be >= 1"),
    ("run-track-thresh", ["run", "{video}", "--track-thresh", "2"], "--track-thresh must be in [0, 1]"),
    ("run-match-iou", ["run", "{video}", "--match-iou", "-1"], "--match-iou must be in [0, 1]"),
    ("run-fill-gaps", ["run", "{video}", "--fill-gaps", "-1"], "--fill-gaps must be >= 0"),
    ("run-stride-0", ["run", "{video}", "--vid-stride", "0"], "--vid-stride"),
    ("run-max-frames-0", ["run", "{video}", "--max-frames", "0"], "--max-frames"),
    ("run-duration-0", ["run", "{video}", "--duration", "0"], "--duration must be > 0"),
    ("run-duration-neg", ["run", "{video}", "--duration", "-3"], "--duration must be > 0"),
    ("run-reconnect-neg", ["run", "{video}", "--reconnect-window", "-1"], "--reconnect-window must be >= 0"),
    ("run-threads-0", ["run", "{video}", "--threads", "0"], "--threads"),
    ("run-threads-text", ["run", "{video}", "--threads", "many"], "--threads"),
    ("run-unknown-option", ["run", "{video}", "--treshold", "0.5"], "No such option"),
    ("run-decoder", ["run", "{video}", "--decoder", "vlc"], "--decoder must be one of"),
    ("run-tracker", ["run", "{video}", "--tracker", "deepsort"], "--tracker must be one of"),
    ("run-keep", ["run", "{video}", "--keep", "biggest"], "--keep must be one of"),
    # run: outputs
    ("run-out-under-file", ["run", "{video}", "-o", "{dir}/keep.txt/out.mp4"], "is not a folder"),
    ("run-json-under-file", ["run", "{video}", "--json", "{dir}/keep.txt/x.jsonl"], "is not a folder"),
    ("run-summary-under-file", ["run", "{video}", "--summary", "{dir}/keep.txt/s.json"], "is not a folder"),
    ("run-out-symlink", ["run", "{video}", "-o", "{dir}/link.mp4"], "is a symlink"),
    ("run-json-symlink", ["run", "{video}", "--json", "{dir}/link.jsonl"], "is a symlink"),
    ("run-mot-symlink", ["run", "{video}", "--mot", "{dir}/link.txt"], "is a symlink"),
    ("run-out-exists", ["run", "{video}", "-o", "{dir}/keep.mp4"], "exists: pass --overwrite"),
    ("run-json-exists", ["run", "{video}", "--json", "{dir}/keep.jsonl"], "exists: pass --overwrite"),
    ("run-mot-exists", ["run", "{video}", "--mot", "{dir}/keep.txt"], "exists: pass --overwrite"),
    ("run-summary-exists", ["run", "{video}", "--summary", "{dir}/keep.json", "-o", "{dir}/n.mp4"], "exists"),
    ("run-out-is-input", ["run", "{video}", "-o", "{video}", "-y"], "is one of the inputs"),
    ("run-two-same-outputs", ["run", "{video}", "-o", "{dir}/a.jsonl", "--json", "{dir}/a.jsonl"], "two outputs"),
    ("run-out-scheme", ["run", "{video}", "-o", "gopher://x/y"], "unsupported output"),
    ("run-out-webm", ["run", "{video}", "-o", "{dir}/out.webm"], "cannot write H.264 video into .webm"),
    ("run-frames-under-file", ["run", "{video}", "-o", "{dir}/keep.txt/frames"], "is not a folder"),
    ("run-frames-folder-full", ["run", "{video}", "-o", "{dir}/full"], "is not empty"),
    ("run-display-headless", ["run", "{video}", "-o", "display://0"], "no display"),
    # run: models (the metadata and graph are checked at load, before any output is opened)
    ("run-model-missing", ["run", "{video}", "-m", "{dir}/absent.onnx", "--json", "{dir}/new.jsonl"], "not found"),
    ("run-model-garbage", ["run", "{video}", "-m", "{notes_onnx}", "--json", "{dir}/new.jsonl"], "not an ONNX"),
    (
        "run-model-graph-vs-meta",
        ["run", "{video}", "-m", "{wrong_size_onnx}", "--json", "{dir}/keep.jsonl", "-y"],
        "but its metadata says",
    ),
    (
        "run-model-foreign-graph",
        ["run", "{video}", "-m", "{foreign_onnx}", "--json", "{dir}/keep.jsonl", "-y"],
        "not the one 'images' input",
    ),
    ("run-backend", ["run", "{video}", "--backend", "tflite"], "backend must be one of"),
    ("run-device", ["run", "{video}", "--device", "tpu"], "device must be"),
    # eval
    ("eval-json-exists", ["eval", "--json", "{dir}/keep.json"], "exists: pass --overwrite"),
    ("eval-json-symlink", ["eval", "--json", "{dir}/link.jsonl"], "is a symlink"),
    ("eval-figure-suffix", ["eval", "--figure", "{dir}/grid.txt"], "--figure must be a .png"),
    ("eval-figure-under-file", ["eval", "--figure", "{dir}/keep.txt/g.png"], "is not a folder"),
    ("eval-batch-0", ["eval", "--batch", "0"], "--batch"),
    ("eval-model-missing", ["eval", "--model", "{dir}/absent.safetensors"], "not found"),
    # export
    ("export-out-exists", ["export", "--out", "{dir}/keep.onnx"], "exists: pass --overwrite"),
    ("export-out-suffix", ["export", "--out", "{dir}/model.txt"], "--out must be a .onnx"),
    ("export-int8-exists", ["export", "--out", "{dir}/m.onnx", "--int8", "--calib-count", "8"], "exists"),
    ("export-calib-method", ["export", "--out", "{dir}/x.onnx", "--int8", "--calib-method", "avg"], "--calib-method"),
    ("export-calib-pick", ["export", "--out", "{dir}/x.onnx", "--calib-pick", "first"], "--calib-pick"),
    ("export-workspace", ["export", "--format", "engine", "--workspace", "0"], "--workspace must be"),
    ("export-opset", ["export", "--out", "{dir}/x.onnx", "--opset", "99"], "--opset must be 17 to 23"),
    ("export-format", ["export", "--format", "tflite"], "--format must be onnx, engine or triton"),
    ("export-json-symlink", ["export", "--out", "{dir}/x.onnx", "--json", "{dir}/link.jsonl"], "is a symlink"),
    # train (all refused before torch is imported)
    ("train-lr-neg", ["train", "--lr", "-1", "--out", "{dir}/t"], "--lr must be a positive number"),
    ("train-lr-0", ["train", "--lr", "0", "--out", "{dir}/t"], "--lr must be a positive number"),
    ("train-lr-nan", ["train", "--lr", "nan", "--out", "{dir}/t"], "--lr must be a positive number"),
    ("train-out-file", ["train", "--out", "{dir}/keep.txt"], "is a file, not a folder"),
    ("train-epochs-0", ["train", "--epochs", "0"], "--epochs"),
    ("train-classifier", ["train", "--classifier", "resnet", "--out", "{dir}/t"], "--classifier must be one of"),
    (
        "train-classifier-lr-scale",
        ["train", "--classifier-lr-scale", "0", "--out", "{dir}/t"],
        "--classifier-lr-scale must be > 0",
    ),
    (
        "train-classifier-size",
        ["train", "--recipe", "mnist5k", "--classifier", "mnist_net_deep", "--out", "{dir}/t"],
        "needs inputs of at least 32x32",
    ),
    (
        "train-starts-plain",
        ["train", "--arch", "plain", "--generator-starts", "2", "--out", "{dir}/t"],
        "--generator-starts only applies to --arch xcnn",
    ),
    ("train-starts-0", ["train", "--generator-starts", "0", "--out", "{dir}/t"], "--generator-starts"),
    # bench
    ("bench-json-exists", ["bench", "--json", "{dir}/keep.json"], "exists: pass --overwrite"),
    ("bench-video-missing", ["bench", "--video", "{dir}/missing.mp4"], "input not found"),
    ("bench-seconds", ["bench", "--seconds", "0"], "--seconds"),
    # compare
    ("compare-json-exists", ["compare", "--json", "{dir}/keep.json"], "exists: pass --overwrite"),
    ("compare-report-file", ["compare", "--report", "{dir}/keep.txt"], "is a file, not a folder"),
    ("compare-model-missing", ["compare", "--model", "{dir}/absent.safetensors"], "--model file not found"),
    # demo
    ("demo-out-file", ["demo", "--out", "{dir}/keep.txt"], "is a file, not a folder"),
    ("demo-out-not-empty", ["demo", "--out", "{dir}/full"], "is not empty"),
    ("demo-frames", ["demo", "--frames", "5"], "--frames"),
    ("demo-json-exists", ["demo", "--out", "{dir}/d", "--json", "{dir}/keep.json"], "exists: pass --overwrite"),
]


def make_folder(root: Path, onnx: Path) -> dict[str, str]:
    """The files every case may refer to: earlier outputs, symlinks to them, bad models."""
    import onnx as onnx_lib

    from edge_xcnn.meta import META_KEY, ModelMeta

    for name in ("keep.mp4", "keep.jsonl", "keep.txt", "keep.json", "keep.onnx", "m.int8.onnx"):
        (root / name).write_bytes(KEEP)
    (root / "target.txt").write_bytes(KEEP)
    for name in ("link.mp4", "link.jsonl", "link.txt"):
        os.symlink(root / "target.txt", root / name)
    (root / "full").mkdir()
    (root / "full" / "demo.mp4").write_bytes(KEEP)
    (root / "notes.mp4").write_text("this is not a video\n")
    (root / "notes.onnx").write_text("this is not a model\n")
    (root / "m.onnx").write_bytes(KEEP)
    video = write_video(root / "v.mp4", frames=5, size=(64, 64))
    model = onnx_lib.load(str(onnx))
    props = {p.key: p for p in model.metadata_props}
    meta = ModelMeta.from_json(props[META_KEY].value)
    props[META_KEY].value = meta.replace(input_size=(32, 32)).to_json()  # graph still takes 64 x 64
    onnx_lib.save(model, str(root / "wrong_size.onnx"))
    model.graph.input[0].name = "x"  # edge-xcnn metadata on a graph that is not ours
    for node in model.graph.node:
        node.input[:] = ["x" if i == "images" else i for i in node.input]
    props[META_KEY].value = meta.to_json()
    onnx_lib.save(model, str(root / "foreign.onnx"))
    return {
        "dir": str(root), "video": str(video), "notes": str(root / "notes.mp4"),
        "notes_onnx": str(root / "notes.onnx"), "wrong_size_onnx": str(root / "wrong_size.onnx"),
        "foreign_onnx": str(root / "foreign.onnx"), "model": str(onnx),
    }  # fmt: skip


def snapshot(root: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = f"-> {os.readlink(path)}" if path.is_symlink() else path.read_bytes() if path.is_file() else "dir"
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory, default_model_onnx):
    root = tmp_path_factory.mktemp("bad")
    return root, make_folder(root, default_model_onnx), snapshot(root)


def test_the_table_is_large_and_spans_every_command():
    assert len(CASES) >= 40
    assert {case[1][0] for case in CASES} == {"run", "eval", "export", "train", "bench", "compare", "demo"}


@pytest.mark.parametrize(("name", "argv", "needle"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_loses_nothing(folder, monkeypatch, name, argv, needle):
    root, places, before = folder
    monkeypatch.chdir(root)  # default outputs (runs/...) would land here: none may appear
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    args = [a.format(**places) for a in argv]
    if args[0] == "run" and "-m" not in args:
        args += ["-m", places["model"]]
    result = CliRunner().invoke(app, args)
    text = result.output.strip()
    assert result.exit_code == 2, text
    assert text.startswith("error:") and len(text.splitlines()) == 1, text
    assert "Traceback" not in text and "internal error" not in text
    assert needle in text, text
    assert snapshot(root) == before, "a refused command changed, created or removed a file"
