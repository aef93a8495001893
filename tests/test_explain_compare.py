"""Saliency methods, layers, RISE curves, the randomization check and ``edge-xcnn compare`` end to end."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edge_xcnn.checkpoint import DEFAULT_MODEL, load_model, read_meta
from edge_xcnn.cli import app
from edge_xcnn.explain.causal import causal_curves, rise_kernel
from edge_xcnn.explain.cost import measure_cost
from edge_xcnn.explain.methods import (
    METHODS,
    build_explainer,
    cam_layers,
    classifier_convs,
    parse_methods,
    prepare_for_attribution,
    source_problem,
)
from edge_xcnn.explain.sanity import cascade, sanity_check
from edge_xcnn.meta import ArchSpec
from edge_xcnn.models import build_model
from edge_xcnn.preprocess import preprocess
from edge_xcnn.train.datasets.synthetic import SyntheticDigits

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread: these tiny models gain nothing from more, and a shared CI machine loses a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def default():
    model, meta = load_model(None)
    data = SyntheticDigits("test", size=64)
    samples = [data[i] for i in range(3)]
    x = torch.from_numpy(np.stack([preprocess(s.image, meta)[0] for s in samples]))
    return model, meta, x, torch.tensor([s.label for s in samples])


def test_cam_layers_on_vgg16_at_32x32_are_8x8_and_2x2():
    meta = read_meta(DEFAULT_MODEL).replace(
        arch=ArchSpec(classifier="vgg16_bn", generator_width=8), input_size=(32, 32)
    )
    convs = classifier_convs(prepare_for_attribution(build_model(meta)), meta.input_size)
    layers = cam_layers(convs)
    assert layers["ge8"].label == "conv 7/13, 8x8" and layers["last"].label == "conv 13/13, 2x2"
    assert isinstance(layers["last"].module, torch.nn.ReLU)  # the conv's activation (conv - BN - ReLU)


def test_cam_layers_on_the_default_model_are_its_last_conv_at_8x8(default):
    """mnist_net_deep: the last conv's map is 8x8, so "at least 8x8" and "last" are the same layer."""
    model, meta, _, _ = default
    layers = cam_layers(classifier_convs(prepare_for_attribution(model), meta.input_size))
    assert list(layers) == ["last"] and layers["last"].label == "conv 4/4, 8x8"


def test_xcnn_map_is_the_models_heatmap_with_polarity(default):
    model, meta, x, y = default
    wrapped = prepare_for_attribution(model)
    maps = build_explainer(METHODS["xcnn"], model, wrapped, None, polarity=meta.polarity, input_size=(64, 64))
    with torch.no_grad():
        expected = model(x)[1][:, 0].numpy() * meta.polarity
    np.testing.assert_array_equal(maps.explain(x, y), expected)


def test_captum_gradcam_is_gradcam(default):
    """Captum's Grad-CAM equals the definition computed by hand with hooks on the same activation."""
    model, meta, x, y = default
    wrapped = prepare_for_attribution(model)
    layer = cam_layers(classifier_convs(wrapped, meta.input_size))["last"]
    with build_explainer(METHODS["gradcam"], model, wrapped, layer, polarity=1, input_size=(64, 64)) as method:
        found = method.explain(x, y)
    saved = {}
    hook = layer.module.register_forward_hook(lambda _m, _i, out: saved.setdefault("a", out))
    try:
        logits = wrapped(x.clone().requires_grad_(True))
    finally:
        hook.remove()
    activation = saved["a"]
    grads = torch.autograd.grad(logits[torch.arange(len(y)), y].sum(), activation)[0]
    cam = torch.relu((grads.mean((2, 3), keepdim=True) * activation).sum(1, keepdim=True))
    expected = torch.nn.functional.interpolate(cam, size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    np.testing.assert_allclose(found, expected.detach().numpy(), rtol=1e-4, atol=1e-6)
    assert found.shape == (3, 64, 64) and (found >= 0).all()


@pytest.mark.parametrize("name", ["saliency", "guided-backprop", "guided-gradcam"])
def test_pixel_methods_give_one_nonnegative_map_per_image(default, name):
    model, meta, x, y = default
    wrapped = prepare_for_attribution(model)
    layer = cam_layers(classifier_convs(wrapped, meta.input_size))["last"]
    method = build_explainer(METHODS[name], model, wrapped, layer, polarity=1, input_size=(64, 64))
    maps = method.explain(x, y)
    assert maps.shape == (3, 64, 64) and (maps >= 0).all() and maps.max() > 0


def test_methods_parse_and_unavailable_sources_say_why_in_one_line():
    assert [m.name for m in parse_methods("xcnn, gradcam,xcnn")] == ["xcnn", "gradcam"]
    assert len(parse_methods(None)) == len(METHODS)
    with pytest.raises(Exception, match="unknown method"):
        parse_methods("xcnn,lime")
    assert source_problem("captum") is None
    problem = source_problem("grad-cam")
    try:
        import pytorch_grad_cam  # noqa: F401

        assert problem is None
    except Exception:
        assert "grad-cam" in problem and "\n" not in problem


def test_rise_curves_start_and_end_where_they_must(default):
    model, meta, x, _ = default
    kernel = rise_kernel()
    assert kernel.shape == (11, 11) and kernel.sum() == pytest.approx(1.0, abs=1e-5)
    saliency = np.random.default_rng(0).random((3, 64, 64))
    curves = causal_curves(model, x, saliency, meta.mean, steps=4)
    with torch.no_grad():
        probs = torch.softmax(model(x)[0], 1).max(1).values.numpy()
        mean_image = torch.tensor(meta.mean).view(1, 3, 1, 1).expand_as(x)
        deleted = torch.softmax(model(mean_image)[0], 1)[torch.arange(3), model(x)[0].argmax(1)].numpy()
    assert curves["deletion"].shape == curves["insertion"].shape == (5, 3)
    np.testing.assert_allclose(curves["deletion"][0], probs, rtol=1e-4)  # untouched image
    np.testing.assert_allclose(curves["insertion"][-1], probs, rtol=1e-4)  # every pixel put back
    np.testing.assert_allclose(curves["deletion"][-1], deleted, rtol=1e-4)  # every pixel the mean colour


def test_randomizing_the_classifier_leaves_xcnn_unchanged_but_not_gradcam(default):
    model, meta, x, y = default
    x, y = x[:2], y[:2]

    def maps_of(name):
        def maps(m):
            wrapped = prepare_for_attribution(m)
            layer = cam_layers(classifier_convs(wrapped, meta.input_size))["last"]
            return build_explainer(
                METHODS[name], m, wrapped, layer, polarity=meta.polarity, input_size=(64, 64)
            ).explain(x, y)

        return maps

    n = sum(isinstance(m, torch.nn.Conv2d) for m in model.generator.modules())
    c = sum(isinstance(m, torch.nn.Conv2d) for m in model.classifier.modules())
    assert [label for label, _ in cascade(model)] == [
        "classifier fc", *(f"classifier conv {k}/{c}" for k in range(c, 0, -1)),
        *(f"generator conv {k}/{n}" for k in range(n, 0, -1)),
    ]  # fmt: skip
    rows = sanity_check(model, "xcnn", [("xcnn", "-", maps_of("xcnn")), ("gradcam", "last", maps_of("gradcam"))])
    xcnn = {r.randomized: r.spearman for r in rows if r.method == "xcnn"}
    gradcam = {r.randomized: r.spearman for r in rows if r.method == "gradcam"}
    assert all(xcnn[f"classifier {part}"] == pytest.approx(1.0) for part in ("fc", f"conv {c}/{c}", f"conv 1/{c}"))
    assert xcnn[f"generator conv 1/{n}"] < 0.5  # the map is the generator's
    assert gradcam["classifier fc"] < 0.9 and gradcam[f"generator conv 1/{n}"] < 0.5
    assert model.classifier.classifier.weight.abs().sum() > 0 and rows[0].spearman == 1.0  # original untouched


def test_cost_is_measured_in_a_fresh_process(tmp_path, default):
    _, _, x, _ = default
    np.save(tmp_path / "images.npy", x.numpy())
    job = {
        "images": str(tmp_path / "images.npy"), "model": str(DEFAULT_MODEL), "model_name": "xcnn",
        "method": "xcnn", "layer_role": None, "layer_label": "-", "runtime": "torch",
        "runtime_label": "pytorch eager (cpu)", "precision": "fp32", "batches": [1, 3], "seconds": 0.0,
        "threads": 1, "device": "cpu",
    }  # fmt: skip
    rows = measure_cost(job)
    assert [r.batch for r in rows] == [1, 3]
    assert all(r.heatmaps_per_s > 0 and r.peak_mb >= 0 and r.threads == 1 for r in rows)


@pytest.mark.integration
def test_compare_end_to_end_on_the_default_model(tmp_path):
    out, report = tmp_path / "compare.json", tmp_path / "report"
    args = [
        "compare", "--limit", "6", "--methods", "xcnn,gradcam,saliency,gradcam++", "--sanity", "1",
        "--no-cost", "--causal-steps", "4", "--grid", "3", "--json", str(out), "--report", str(report),
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    found = json.loads(out.read_text())
    methods = {(r["model"], r["method"]) for r in found["rows"]}
    assert {("xcnn", "xcnn"), ("xcnn", "gradcam"), ("xcnn", "saliency"), ("-", "centred_mean_box")} <= methods
    for row in found["rows"]:
        assert 0 <= row["MaxBoxAccV2"] <= 1 and 0 <= row["PxAP"] <= 1 and 0 <= row["pointing"] <= 1
    xcnn = next(r for r in found["rows"] if r["method"] == "xcnn")
    assert 0 <= xcnn["deletion"] <= 1 and 0 <= xcnn["insertion"] <= 1
    if source_problem("grad-cam"):  # listed with its reason, never dropped
        assert [u["method"] for u in found["unavailable"]] == ["gradcam++"]
    assert {r["method"] for r in found["sanity"]} == {"xcnn", "gradcam", "saliency"}
    assert (report / "grid.png").stat().st_size > 1000 and "| XCNN heatmap |" in (report / "report.md").read_text()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--methods", "xcnn,lime"], "unknown method"),
        (["--plain", str(DEFAULT_MODEL)], "not a plain classifier"),
        (["--model", "missing.safetensors"], "not found"),
        (["--onnx", "missing.onnx"], "not found"),
        (["--data", "cifar10:test"], "lives on disk"),
    ],
)
def test_compare_bad_input_is_one_line(args, needle):
    result = runner.invoke(app, ["compare", "--limit", "2", "--no-cost", "--sanity", "0", *args])
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert text.startswith("error:") and len(text.splitlines()) == 1 and needle in text


def test_compare_help_lists_every_method():
    result = runner.invoke(app, ["compare", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in METHODS:
        assert name in result.output
