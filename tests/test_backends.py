"""Runtimes behind Backend.infer: choosing one, providers, precisions, FP16 ONNX, torch-free paths."""

import subprocess
import sys

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from edge_xcnn.backends import open_backend
from edge_xcnn.backends.base import backend_for, parse_device
from edge_xcnn.backends.onnxruntime_backend import CPU, CUDA, TENSORRT, choose_providers
from edge_xcnn.calib.frames import calibration_batch
from edge_xcnn.calib.quantize import quantize_int8
from edge_xcnn.checkpoint import DEFAULT_MODEL, read_meta
from edge_xcnn.cli import app
from edge_xcnn.errors import BadModelFile, EdgeXcnnError
from edge_xcnn.meta import PRECISION_KEY
from edge_xcnn.train.datasets.synthetic import SyntheticDigits

# Measured on 256 synthetic test frames (default model): logits 0.012 (of up to 14), heatmap 4.7e-4.
# FP16 weights and activations: measured on the 256 images, default model, logits 0.011 and heatmap 6.0e-3
# (0.3% of the map's [-1, 1] range); the previous default measured 0.012 / 4.7e-4.
FP16_LOGITS, FP16_HEATMAP = 0.05, 1e-2


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exports")
    result = CliRunner().invoke(app, ["export", "--fp16", "--out", f"{folder}/m.onnx"])
    assert result.exit_code == 0, result.output
    assert "m.fp16.onnx" in result.output
    frames = calibration_batch("synthetic:train", read_meta(DEFAULT_MODEL), count=32)
    quantize_int8(folder / "m.onnx", folder / "m.int8.onnx", frames)
    return {p: folder / name for p, name in (("fp32", "m.onnx"), ("fp16", "m.fp16.onnx"), ("int8", "m.int8.onnx"))}


@pytest.fixture(scope="module")
def frames():
    data = SyntheticDigits("test", size=64)
    return [data[i].image for i in range(128)]


def test_fp16_onnx_keeps_float32_io_runs_on_the_cpu_and_stays_close(exports, frames):
    model = onnx.load(str(exports["fp16"]))
    assert {p.key: p.value for p in model.metadata_props}[PRECISION_KEY] == "fp16"
    float32, float16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert [v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)] == [float32] * 3
    assert any(i.data_type == float16 for i in model.graph.initializer), "weights are FP16"
    reference, half = open_backend(exports["fp32"]), open_backend(exports["fp16"])
    assert (half.name, half.precision) == ("onnxruntime cpu", "fp16")
    (l32, h32, _), (l16, h16, _) = reference.predict(frames), half.predict(frames)
    assert l16.dtype == h16.dtype == np.float32
    assert np.abs(l32 - l16).max() <= FP16_LOGITS and np.abs(h32 - h16).max() <= FP16_HEATMAP
    assert (l32.argmax(1) == l16.argmax(1)).mean() >= 0.99


@pytest.mark.parametrize(
    ("precision", "device", "limit"),
    [("fp16", "cpu", 0.1), ("bf16", "cpu", 0.6)],  # bf16 has 8 mantissa bits
)
def test_torch_reduced_precision_returns_float32_close_to_fp32(frames, precision, device, limit):
    reference = open_backend(None, "torch", device="cpu")
    reduced = open_backend(None, "torch", device=device, precision=precision)
    assert (reduced.name, reduced.precision) == ("pytorch eager cpu", precision)
    (l32, _, _), (lr, hr, _) = reference.predict(frames[:32]), reduced.predict(frames[:32])
    assert lr.dtype == hr.dtype == np.float32
    assert np.abs(l32 - lr).max() <= limit and (l32.argmax(1) == lr.argmax(1)).mean() >= 0.9


def test_auto_picks_the_runtime_from_the_file(exports, tmp_path):
    assert backend_for(DEFAULT_MODEL) == "torch" and backend_for(exports["int8"]) == "onnxruntime"
    assert backend_for(tmp_path / "m.fp16.engine") == "tensorrt" and backend_for(tmp_path / "m.plan") == "tensorrt"
    assert open_backend(None).name == "onnxruntime cpu"  # auto: the shipped ONNX export of the default
    assert open_backend(None, "torch", device="cpu").name == "pytorch eager cpu"
    int8 = open_backend(exports["int8"])
    assert (int8.name, int8.precision) == ("onnxruntime cpu", "int8")
    with pytest.raises(BadModelFile, match="the torch backend runs checkpoints"):
        open_backend(exports["fp32"], "torch")
    with pytest.raises(BadModelFile, match="the tensorrt backend runs TensorRT engines"):
        open_backend(exports["fp32"], "tensorrt")
    with pytest.raises(EdgeXcnnError, match="backend must be one of"):
        open_backend(None, "openvino")


@pytest.mark.parametrize(
    ("model", "available", "kwargs", "providers", "precision"),
    [
        ("fp32", [CPU], {}, [CPU], "fp32"),
        ("fp32", [CUDA, CPU], {}, [(CUDA, {"device_id": 0}), CPU], "fp32"),
        ("fp32", [CUDA, CPU], {"device": "cpu"}, [CPU], "fp32"),
        ("fp16", [CUDA, CPU], {"device": "cuda:1"}, [(CUDA, {"device_id": 1}), CPU], "fp16"),
        ("int8", [CUDA, CPU], {}, [CPU], "int8"),  # auto keeps INT8 off the CUDA provider
        (
            "int8",
            [TENSORRT, CUDA, CPU],
            {},
            [(TENSORRT, {"device_id": 0, "trt_fp16_enable": True, "trt_int8_enable": True}), CPU],
            "int8",
        ),
        (
            "fp32",
            [TENSORRT, CUDA, CPU],
            {"providers": [TENSORRT], "precision": "fp16"},
            [(TENSORRT, {"device_id": 0, "trt_fp16_enable": True, "trt_int8_enable": False})],
            "fp16",
        ),
    ],
)
def test_provider_choice(model, available, kwargs, providers, precision):
    assert choose_providers(model, available, **kwargs) == (providers, precision)


@pytest.mark.parametrize(
    ("model", "available", "kwargs", "message"),
    [
        ("int8", [CUDA, CPU], {"device": "cuda"}, "INT8 does not run on ONNX Runtime's CUDA provider"),
        ("int8", [CUDA, CPU], {"providers": [CUDA, CPU]}, "INT8 does not run on ONNX Runtime's CUDA provider"),
        ("fp32", [CPU], {"device": "cuda"}, "needs ONNX Runtime's CUDA provider"),
        ("fp32", [CPU], {"providers": [TENSORRT]}, "offers CPUExecutionProvider, not TensorrtExecutionProvider"),
        ("fp32", [CPU], {"precision": "int8"}, "open the .int8.onnx (edge-xcnn export --int8)"),
        ("int8", [CPU], {"precision": "fp16"}, "open the .fp16.onnx"),
        ("fp32", [CPU], {"device": "gpu0"}, "device must be cpu, cuda or cuda:N"),
    ],
)
def test_provider_and_precision_errors_are_one_clear_line(model, available, kwargs, message):
    with pytest.raises(EdgeXcnnError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        choose_providers(model, available, **kwargs)


def test_parse_device():
    assert [parse_device(d) for d in (None, "cpu", "cuda", "cuda:2")] == [(None, 0), ("cpu", 0), ("cuda", 0),
                                                                             ("cuda", 2)]  # fmt: skip


def test_precision_a_runtime_cannot_give_is_refused(exports):
    with pytest.raises(EdgeXcnnError, match="INT8 runs in ONNX Runtime or TensorRT"):
        open_backend(None, "torch", device="cpu", precision="int8")
    with pytest.raises(EdgeXcnnError, match="this ONNX is fp32"):
        open_backend(exports["fp32"], precision="int8")
    result = CliRunner().invoke(app, ["eval", "--model", str(exports["fp32"]), "--device", "cuda"])
    assert result.exit_code == 2 and "needs ONNX Runtime's CUDA provider" in result.output


def test_engine_without_sidecar_is_named(tmp_path):
    (tmp_path / "m.engine").write_bytes(b"\x00" * 64)
    with pytest.raises(BadModelFile, match="has no sidecar"):
        open_backend(tmp_path / "m.engine")


TORCH_FREE = """
import sys
sys.modules["torch"] = None
sys.modules["tensorrt"] = None
import numpy as np
from edge_xcnn.backends import open_backend
from edge_xcnn.errors import EdgeXcnnError
for path in sys.argv[1:3]:
    backend = open_backend(path)
    logits, heatmap = backend.infer(np.zeros((2, 3, 64, 64), np.float32))
    assert logits.shape == (2, 10) and heatmap.shape == (2, 1, 64, 64)
try:
    open_backend(sys.argv[3])
except EdgeXcnnError as e:
    print(e)
"""


def test_onnxruntime_and_tensorrt_paths_import_no_torch(exports, tmp_path):
    from edge_xcnn.engine_sidecar import EngineSidecar, GpuInfo, file_sha256, write_sidecar

    engine = tmp_path / "m.fp16.engine"
    engine.write_bytes(b"engine")
    write_sidecar(engine, EngineSidecar(
        tensorrt="10.3.0.30", gpu=GpuInfo("Orin", "8.7"), precision="fp16", typing="weak", input_name="images",
        outputs={"logits": "logits", "heatmap": "heatmap"}, shapes={"min": [1, 3, 64, 64], "opt": [1, 3, 64, 64],
        "max": [1, 3, 64, 64]}, source_onnx="m.onnx", source_sha256="0" * 64, engine_sha256=file_sha256(engine),
        meta=read_meta(DEFAULT_MODEL),
    ))  # fmt: skip
    args = [str(exports["fp16"]), str(exports["int8"]), str(engine)]
    done = subprocess.run([sys.executable, "-c", TORCH_FREE, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "needs TensorRT's Python package 'tensorrt'" in done.stdout
