"""ONNX export: ONNX Runtime agrees with PyTorch, metadata travels, damaged files are named."""

import base64
import json

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from edge_xcnn.backends import open_backend
from edge_xcnn.box_evidence import evidence_maps
from edge_xcnn.checkpoint import DEFAULT_MODEL, read_meta, save_checkpoint
from edge_xcnn.cli import app
from edge_xcnn.errors import BadModelFile
from edge_xcnn.export.onnx_export import export_onnx
from edge_xcnn.meta import MAP_CLASSIFIER_KEY, META_KEY, ArchSpec, ModelMeta
from edge_xcnn.models import build_model
from edge_xcnn.train.datasets.synthetic import SyntheticDigits

TOLERANCE = 1e-4  # max abs difference, logits and heatmap


def max_diffs(checkpoint, onnx_path, batch):
    reference = open_backend(checkpoint, "torch", device="cpu")
    exported = open_backend(onnx_path, "onnxruntime")
    assert exported.meta == reference.meta  # the metadata travelled unchanged
    (lt, ht), (lo, ho) = reference.infer(batch), exported.infer(batch)
    return float(np.abs(lt - lo).max()), float(np.abs(ht - ho).max())


@pytest.fixture(scope="module")
def default_onnx(tmp_path_factory):
    return export_onnx(None, tmp_path_factory.mktemp("onnx") / "default.onnx")


def test_default_model_parity_on_real_frames_any_batch(default_onnx):
    data = SyntheticDigits("test", size=64)
    exported = open_backend(default_onnx)
    frames = [data[i].image for i in range(9)]
    batch = np.stack([np.transpose(f, (2, 0, 1)) for f in frames]).astype(np.float32) / 255
    for size in (1, 9):  # dynamic batch
        logits_diff, heat_diff = max_diffs(DEFAULT_MODEL, default_onnx, batch[:size])
        assert logits_diff <= TOLERANCE and heat_diff <= TOLERANCE
    model = onnx.load(str(default_onnx))
    assert {p.key: p.value for p in model.metadata_props}[META_KEY] == read_meta(DEFAULT_MODEL).to_json()
    assert [o.name for o in model.graph.output] == ["logits", "heatmap"]
    assert [i.name for i in model.graph.input] == ["images"]
    assert model.opset_import[0].version >= 17
    assert exported.predict(frames)[1].shape == (9, 1, 64, 64)


def test_the_box_checks_classifier_travels_in_the_metadata_and_reads_maps_as_pytorch(default_onnx, tmp_path):
    """The classifier alone, serialized under ``edge_xcnn.map_classifier``: the same logits as PyTorch's."""
    data = SyntheticDigits("test", size=64)
    batch = np.stack([np.transpose(data[i].image, (2, 0, 1)) for i in range(6)]).astype(np.float32) / 255
    torch_backend, onnx_backend = open_backend(DEFAULT_MODEL, "torch", device="cpu"), open_backend(default_onnx)
    _, heatmaps = torch_backend.infer(batch)
    maps = np.concatenate([
        evidence_maps(heatmaps[k], np.array([data[k].box]), torch_backend.meta.polarity) for k in range(6)
    ])  # fmt: skip
    assert torch_backend.can_classify_maps and onnx_backend.can_classify_maps
    reference, exported = torch_backend.classify_maps(maps), onnx_backend.classify_maps(maps)
    assert exported.shape == (6, 10) and float(np.abs(reference - exported).max()) <= TOLERANCE
    # The digit's own box is read as its class: the head computes the classifier, not noise.
    assert (reference.argmax(1) == np.array([data[k].label for k in range(6)])).mean() >= 0.5
    head = onnx.load_from_string(base64.b64decode(onnx_meta_props(default_onnx)[MAP_CLASSIFIER_KEY]))
    assert [i.name for i in head.graph.input] == ["maps"] and [o.name for o in head.graph.output] == ["map_logits"]
    # A file without it (an older export) runs as before and cannot be asked about boxes.
    model = onnx.load(str(default_onnx))
    kept = [p for p in model.metadata_props if p.key != MAP_CLASSIFIER_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(tmp_path / "older.onnx"))
    older = open_backend(tmp_path / "older.onnx")
    assert not older.can_classify_maps and older.classify_maps(maps) is None
    assert all(np.array_equal(a, b) for a, b in zip(older.infer(batch), onnx_backend.infer(batch), strict=True))


def onnx_meta_props(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_vgg16_xcnn_parity_at_32x32(tmp_path):
    meta = ModelMeta(
        arch=ArchSpec("xcnn", "vgg16_bn", 3, 128, 1),
        classes=tuple("0123456789"),
        input_size=(32, 32),
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        polarity=-1,
    )
    torch.manual_seed(0)
    model = build_model(meta)
    with torch.no_grad():  # give batch norm real running statistics
        for _ in range(3):
            model(torch.rand(16, 3, 32, 32))
    checkpoint = save_checkpoint(tmp_path / "vgg.safetensors", model.eval(), meta)
    path = export_onnx(checkpoint, tmp_path / "vgg.onnx", batch=4)
    batch = np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32)
    logits_diff, heat_diff = max_diffs(checkpoint, path, batch)
    assert logits_diff <= TOLERANCE and heat_diff <= TOLERANCE
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [4, 3, 32, 32]  # --batch 4: static


def test_eval_gives_the_same_figures_from_onnx(default_onnx, tmp_path):
    runner = CliRunner()
    figures = []
    for model in (str(DEFAULT_MODEL), str(default_onnx)):
        out = tmp_path / f"{len(figures)}.json"
        result = runner.invoke(app, ["eval", "--model", model, "--limit", "300", "--json", str(out)])
        assert result.exit_code == 0, result.output
        figures.append(json.loads(out.read_text()))
    assert figures[0]["top1"] == figures[1]["top1"]
    assert figures[0]["localization"]["gt_known_loc"] == pytest.approx(
        figures[1]["localization"]["gt_known_loc"], abs=0.005
    )


def test_damaged_and_foreign_onnx_files_are_named(tmp_path, default_onnx):
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(default_onnx.read_bytes()[:5000])
    with pytest.raises(BadModelFile, match="not an ONNX model"):
        open_backend(damaged)
    foreign = onnx.load(str(default_onnx))
    del foreign.metadata_props[:]
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    with pytest.raises(BadModelFile, match="not an edge-xcnn export"):
        open_backend(tmp_path / "foreign.onnx")
    result = CliRunner().invoke(app, ["eval", "--model", str(damaged)])
    assert result.exit_code == 2 and result.output.startswith("error:") and len(result.output.strip().splitlines()) == 1
