"""TensorRT engine logic without TensorRT: version flags, profiles, sidecars, stale/foreign engines.

No fake ``tensorrt`` module: these are the pure functions the thin TensorRT layer follows. The layer
itself (export/tensorrt_engine.py, backends/tensorrt_backend.py) needs a GPU and is not run here.
"""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from edge_xcnn.checkpoint import DEFAULT_MODEL, read_meta
from edge_xcnn.cli import app
from edge_xcnn.engine_sidecar import (
    EngineSidecar,
    GpuInfo,
    TrtRuntime,
    engine_problem,
    file_sha256,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from edge_xcnn.errors import BadModelFile, EdgeXcnnError
from edge_xcnn.export.tensorrt_plan import (
    default_engine_path,
    existing_engine_action,
    network_typing,
    parse_trt_version,
    plan_build,
    profile_shapes,
    timing_cache_path,
)

ORIN = GpuInfo("Orin", "8.7")
H100 = GpuInfo("NVIDIA H100 80GB HBM3", "9.0")
JETPACK6 = TrtRuntime("10.3.0.30", ORIN)
DYNAMIC = profile_shapes(3, (64, 64))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10.3.0.30", (10, 3, 0)), ("10.12.0.36", (10, 12, 0)), ("11.4.0.106", (11, 4, 0)), ("10.3", (10, 3, 0))],
)
def test_parse_trt_version(text, expected):
    assert parse_trt_version(text) == expected


@pytest.mark.parametrize("text", ["", "ten", "v10.3", ".3"])
def test_parse_trt_version_rejects_non_versions(text):
    with pytest.raises(ValueError, match="not a TensorRT version"):
        parse_trt_version(text)


@pytest.mark.parametrize(
    ("version", "typing"),
    [
        ((10, 0, 1), "weak"),
        ((10, 3, 0), "weak"),
        ((10, 11, 9), "weak"),
        ((10, 12, 0), "strong"),
        ((11, 0, 0), "strong"),
    ],
)
def test_strong_typing_from_10_12(version, typing):
    assert network_typing(version) == typing


def test_tensorrt_8_is_refused_in_one_line():
    with pytest.raises(EdgeXcnnError, match=r"older than 10\.0"):
        network_typing((8, 6, 1))


@pytest.mark.parametrize(
    ("version", "precision", "typing", "onnx", "network_flags", "builder_flags"),
    [
        ("10.3.0.30", "fp32", "weak", "fp32", (), ()),
        ("10.3.0.30", "fp16", "weak", "fp32", (), ("FP16",)),  # JetPack 6: FP16 flag over the FP32 ONNX
        ("10.3.0.30", "int8", "weak", "int8", (), ("INT8", "FP16")),  # Q/DQ ONNX + flags, FP16 outside Q/DQ
        ("10.12.0.36", "fp16", "strong", "fp16", ("STRONGLY_TYPED",), ()),  # FP16 ONNX, no flags
        ("10.13.3.9", "int8", "strong", "int8", ("STRONGLY_TYPED",), ()),
        ("11.4.0.106", "fp32", "strong", "fp32", ("STRONGLY_TYPED",), ()),  # flag kept, ignored by 11
    ],
)
def test_flags_and_onnx_for_each_version_and_precision(version, precision, typing, onnx, network_flags, builder_flags):
    plan = plan_build(version, precision, DYNAMIC, workspace_gib=0.5)
    assert (plan.typing, plan.onnx, plan.network_flags, plan.builder_flags) == (
        typing, onnx, network_flags, builder_flags
    )  # fmt: skip
    assert plan.workspace_bytes == 1 << 29 and plan.dla_core is None


def test_profiles_static_and_dynamic():
    static = profile_shapes(3, (32, 32), batch=4)
    assert static.min == static.opt == static.max == (4, 3, 32, 32) and static.static
    dynamic = profile_shapes(1, (28, 28), max_batch=16)
    assert (dynamic.min, dynamic.opt, dynamic.max) == ((1, 1, 28, 28), (8, 1, 28, 28), (16, 1, 28, 28))
    assert profile_shapes(3, (64, 64), dynamic=True, max_batch=1).to_dict() == {
        "min": [1, 3, 64, 64], "opt": [1, 3, 64, 64], "max": [1, 3, 64, 64]
    }  # fmt: skip
    with pytest.raises(EdgeXcnnError, match="exclude each other"):
        profile_shapes(3, (64, 64), batch=2, dynamic=True)
    assert profile_shapes(3, (64, 64), dla=True).max == (1, 3, 64, 64)  # DLA: static batch 1 by default
    assert profile_shapes(3, (64, 64), batch=4, dla=True).static
    with pytest.raises(EdgeXcnnError, match="DLA has no dynamic shapes"):
        profile_shapes(3, (64, 64), dynamic=True, dla=True)


def test_dla_with_gpu_fallback_needs_reduced_precision_and_static_shapes():
    plan = plan_build("10.3.0.30", "int8", profile_shapes(3, (64, 64), batch=1), dla_core=1)
    assert plan.dla_core == 1 and plan.builder_flags == ("INT8", "FP16", "GPU_FALLBACK")
    with pytest.raises(EdgeXcnnError, match="FP16 or INT8"):
        plan_build("10.3.0.30", "fp32", profile_shapes(3, (64, 64), batch=1), dla_core=0)
    with pytest.raises(EdgeXcnnError, match="no dynamic shapes"):
        plan_build("10.3.0.30", "fp16", DYNAMIC, dla_core=0)
    with pytest.raises(EdgeXcnnError, match="precision must be"):
        plan_build("10.3.0.30", "int4", DYNAMIC)


def _engine(tmp_path, *, runtime=JETPACK6, precision="fp16", source=b"onnx v1", plan=None):
    """A file standing in for an engine (its bytes are never parsed here) with a real sidecar."""
    engine = tmp_path / f"model.{precision}.engine"
    engine.write_bytes(b"serialized engine " + precision.encode())
    (tmp_path / "model.onnx").write_bytes(source)
    plan = plan or plan_build(runtime.tensorrt, precision, DYNAMIC)
    sidecar = EngineSidecar(
        tensorrt=runtime.tensorrt, gpu=runtime.gpu, precision=precision, typing=plan.typing, input_name="images",
        outputs={"logits": "logits", "heatmap": "heatmap"}, shapes=plan.profile.to_dict(), source_onnx="model.onnx",
        source_sha256=file_sha256(tmp_path / "model.onnx"), engine_sha256=file_sha256(engine),
        meta=read_meta(DEFAULT_MODEL), dla_core=plan.dla_core,
    )  # fmt: skip
    write_sidecar(engine, sidecar)
    return engine, plan


def test_sidecar_round_trip_carries_the_model_metadata(tmp_path):
    engine, _ = _engine(tmp_path)
    assert sidecar_path(engine).name == "model.fp16.engine.json"
    sidecar = read_sidecar(engine)
    assert sidecar.meta == read_meta(DEFAULT_MODEL) and sidecar.gpu == ORIN and sidecar.batch_range == (1, 16)
    assert EngineSidecar.from_dict(json.loads(json.dumps(sidecar.to_dict()))) == sidecar


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("gpu"), "malformed"),
        (lambda d: d.update(precision="int4"), "malformed"),
        (lambda d: d["shapes"].update(min=[32, 3, 64, 64]), "malformed"),  # min > max
        (lambda d: d["meta"].update(input_size=[4]), "malformed"),
        (lambda d: d.update(sidecar_version=99), "newer than this edge-xcnn"),
    ],
)
def test_malformed_sidecars_are_bad_model_files(tmp_path, change, message):
    engine, _ = _engine(tmp_path)
    data = json.loads(sidecar_path(engine).read_text())
    change(data)
    sidecar_path(engine).write_text(json.dumps(data))
    with pytest.raises(BadModelFile, match=message):
        read_sidecar(engine)


def test_missing_or_unreadable_sidecar(tmp_path):
    engine, _ = _engine(tmp_path)
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(BadModelFile, match="not readable JSON"):
        read_sidecar(engine)
    sidecar_path(engine).unlink()
    with pytest.raises(BadModelFile, match="has no sidecar"):
        read_sidecar(engine)


@pytest.mark.parametrize(
    ("here", "source", "reason"),
    [
        (JETPACK6, None, None),
        (
            TrtRuntime("10.3.0.26", ORIN),
            None,
            "foreign: it was built with TensorRT 10.3.0.30 and this machine has TensorRT 10.3.0.26",
        ),
        (
            TrtRuntime("10.3.0.30", H100),
            None,
            "foreign: it was built for Orin (compute capability 8.7) and this GPU "
            "is NVIDIA H100 80GB HBM3 (compute capability 9.0)",
        ),
        (JETPACK6, b"onnx v2", "stale: the model it was built from changed"),
        (None, b"onnx v1", None),  # the runtime checks no staleness and, without TensorRT, no origin
    ],
)
def test_one_reason_line_for_foreign_and_stale_engines(tmp_path, here, source, reason):
    engine, _ = _engine(tmp_path)
    digest = None
    if source is not None:
        (tmp_path / "model.onnx").write_bytes(source)
        digest = file_sha256(tmp_path / "model.onnx")
    problem = engine_problem(engine, read_sidecar(engine), here, source_sha256=digest)
    if reason is None:
        assert problem is None
    else:
        assert reason in problem and "\n" not in problem and problem.startswith("engine model.fp16.engine is")


def test_a_replaced_engine_file_does_not_match_its_sidecar(tmp_path):
    engine, _ = _engine(tmp_path)
    engine.write_bytes(b"another engine")
    assert "does not match its sidecar" in engine_problem(engine, read_sidecar(engine), JETPACK6)


def test_build_reuse_refuse_and_rebuild(tmp_path):
    engine, plan = _engine(tmp_path)
    digest = file_sha256(tmp_path / "model.onnx")
    assert existing_engine_action(tmp_path / "absent.engine", plan, JETPACK6, digest) == ("build", "")
    action, why = existing_engine_action(engine, plan, JETPACK6, digest)
    assert action == "reuse" and "up to date" in why
    action, why = existing_engine_action(engine, plan, JETPACK6, "0" * 64)
    assert action == "refuse" and "stale" in why and why.endswith("pass --rebuild to replace it")
    assert existing_engine_action(engine, plan, JETPACK6, "0" * 64, rebuild=True)[0] == "build"
    action, why = existing_engine_action(engine, plan, TrtRuntime("10.3.0.30", H100), digest)
    assert action == "refuse" and "foreign" in why
    other = plan_build("10.3.0.30", "int8", profile_shapes(3, (64, 64), batch=4))
    action, why = existing_engine_action(engine, other, JETPACK6, digest)
    assert action == "refuse" and "built for fp16, not int8, for batch 1..16, not 4..4" in why
    sidecar_path(engine).unlink()
    action, why = existing_engine_action(engine, plan, JETPACK6, digest)
    assert action == "refuse" and "no sidecar" in why


def test_timing_cache_is_keyed_on_tensorrt_and_gpu(tmp_path):
    jetson = timing_cache_path(JETPACK6, tmp_path)
    assert jetson == tmp_path / "tensorrt-10.3.0.30-orin-sm87.timing-cache"
    assert timing_cache_path(TrtRuntime("10.3.0.30", H100), tmp_path).name == (
        "tensorrt-10.3.0.30-nvidia-h100-80gb-hbm3-sm90.timing-cache"
    )
    assert timing_cache_path(TrtRuntime("10.13.0.35", ORIN), tmp_path) != jetson


def test_default_engine_names(tmp_path):
    assert default_engine_path(DEFAULT_MODEL, "int8").name == "synthetic.int8.engine"
    assert default_engine_path(tmp_path / "best.int8.onnx", "fp16", tmp_path) == tmp_path / "best.fp16.engine"


def _run_cli_without(*modules, args):
    code = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    code += f"from edge_xcnn.cli import app\napp({args!r})\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_engine_export_without_tensorrt_says_so_in_one_line():
    # Blocking the import makes this hold on machines that do have TensorRT too (and proves torch is not needed).
    done = _run_cli_without("tensorrt", "torch", args=["export", "--format", "engine", "--int8"])
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "'tensorrt'" in lines[0], done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fp16", "--int8"], "--fp16 or --int8, not both"),
        (["--via", "onnx2trt"], "--via must be torch-tensorrt"),
        (["--batch", "2", "--dynamic"], "exclude each other"),
    ],
)
def test_engine_export_option_errors(args, message):
    result = CliRunner().invoke(app, ["export", "--format", "engine", *args])
    assert result.exit_code == 2 and message in result.output, result.output


def test_onnx_only_options_are_refused_for_onnx_format():
    result = CliRunner().invoke(app, ["export", "--dla-core", "0"])
    assert result.exit_code == 2 and "apply to --format engine" in result.output


def test_tensorrt_is_imported_lazily():
    code = "import sys\nimport edge_xcnn.export.tensorrt_engine, edge_xcnn.backends.tensorrt_backend\n"
    code += "assert 'tensorrt' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
