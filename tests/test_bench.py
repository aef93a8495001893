import json

from typer.testing import CliRunner

from edge_xcnn.cli import app


def test_bench_measures_every_runtime_with_pytorch_as_baseline(tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "--batch", "1", "--batch", "4", "--seconds", "0.2", "--images", "64", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [(r["backend"], r["precision"], r["batch"]) for r in rows] == [
        ("pytorch eager", "fp32", 1), ("pytorch eager", "fp32", 4),
        ("onnxruntime cpu", "fp32", 1), ("onnxruntime cpu", "fp32", 4),
        ("onnxruntime cpu", "int8", 1), ("onnxruntime cpu", "int8", 4),
    ]  # fmt: skip
    for row in rows:
        assert 0 < row["ms_per_frame_p50"] <= row["ms_per_frame_p99"]
        assert row["fps"] > 0 and row["size_kb"] > 0 and 0 <= row["top1"] <= 1
    fp32 = {r["top1"] for r in rows if r["precision"] == "fp32"}
    assert len(fp32) == 1, "PyTorch and ONNX Runtime FP32 classify the same images alike"
