import json

import pytest
from typer.testing import CliRunner

from edge_xcnn.bench import Machine, RowSpec, parse_backends, plan_rows
from edge_xcnn.cli import app
from edge_xcnn.errors import EdgeXcnnError

CPU_ONLY = Machine(torch_cuda=False, cpu_bf16=False, ort_providers=("CPUExecutionProvider",), tensorrt=False)
GPU = Machine(
    torch_cuda=True, cpu_bf16=True, ort_providers=("CUDAExecutionProvider", "CPUExecutionProvider"), tensorrt=True
)


def test_bench_measures_every_runtime_with_pytorch_as_baseline(tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "--backend", "onnxruntime", "--batch", "1", "--batch", "4", "--seconds", "0.2", "--images", "64"]
    result = CliRunner().invoke(app, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [(r["backend"], r["precision"], r["batch"]) for r in rows] == [
        ("pytorch eager cpu", "fp32", 1), ("pytorch eager cpu", "fp32", 4),
        ("onnxruntime cpu", "fp32", 1), ("onnxruntime cpu", "fp32", 4),
        ("onnxruntime cpu", "int8", 1), ("onnxruntime cpu", "int8", 4),
    ]  # fmt: skip
    assert [r["model"] for r in rows[::2]] == ["synthetic.safetensors", "model.onnx", "model.int8.onnx"]
    for row in rows:
        assert 0 < row["ms_per_frame_p50"] <= row["ms_per_frame_p99"]
        assert row["fps"] > 0 and row["size_kb"] > 0 and 0 <= row["top1"] <= 1
    fp32 = {r["top1"] for r in rows if r["precision"] == "fp32"}
    assert len(fp32) == 1, "PyTorch and ONNX Runtime FP32 classify the same images alike"


def _rows(specs):
    return [(s.backend, s.precision, s.device, s.file) for s in specs]


@pytest.mark.parametrize(
    ("requested", "machine", "expected"),
    [
        (None, CPU_ONLY, [("torch", "fp32", "cpu", "checkpoint"), ("onnxruntime", "fp32", "cpu", "fp32"),
                          ("onnxruntime", "int8", "cpu", "int8")]),
        (["tensorrt"], CPU_ONLY, [("torch", "fp32", "cpu", "checkpoint")]),  # the baseline is always there
        (["onnxruntime:fp16"], CPU_ONLY, [("torch", "fp32", "cpu", "checkpoint"),
                                         ("onnxruntime", "fp16", "cpu", "fp16")]),
        (["torch", "tensorrt:int8"], GPU, [("torch", "fp32", "cpu", "checkpoint"),
                                           ("torch", "bf16", "cpu", "checkpoint"),
                                           ("torch", "fp32", "cuda", "checkpoint"),
                                           ("torch", "fp16", "cuda", "checkpoint"),
                                           ("tensorrt", "int8", "cuda", "engine-int8")]),
        (None, GPU, [("torch", "fp32", "cpu", "checkpoint"), ("torch", "bf16", "cpu", "checkpoint"),
                     ("torch", "fp32", "cuda", "checkpoint"), ("torch", "fp16", "cuda", "checkpoint"),
                     ("onnxruntime", "fp32", "cpu", "fp32"), ("onnxruntime", "int8", "cpu", "int8"),
                     ("onnxruntime", "fp32", "cuda", "fp32"), ("onnxruntime", "fp16", "cuda", "fp16"),
                     ("tensorrt", "fp16", "cuda", "engine-fp16"), ("tensorrt", "int8", "cuda", "engine-int8")]),
    ],
)  # fmt: skip
def test_rows_for_each_machine(requested, machine, expected):
    assert _rows(plan_rows(parse_backends(requested), machine)) == expected


def test_backend_specs():
    assert parse_backends(["torch:fp16", "torch", "onnxruntime:int8"]) == {"torch": None, "onnxruntime": {"int8"}}
    assert plan_rows(parse_backends(["torch:fp32"]), CPU_ONLY) == [RowSpec("torch", "fp32", "cpu")]
    for bad in ("openvino", "onnxruntime:int4"):
        with pytest.raises(EdgeXcnnError, match=r"--backend"):
            parse_backends([bad])
    result = CliRunner().invoke(app, ["bench", "--backend", "openvino"])
    assert result.exit_code == 2 and "--backend must be one of" in result.output
