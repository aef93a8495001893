"""The localizer of the default model: context generator, training scenes, objective, threshold, report."""

import json
from typing import ClassVar

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from edge_xcnn.errors import EdgeXcnnError
from edge_xcnn.meta import ArchSpec, ModelMeta
from edge_xcnn.models import build_model
from edge_xcnn.models.generator import ContextGenerator, InstanceBatchNorm, receptive_field
from edge_xcnn.train.datasets.base import MemoryCache, make_in_processes
from edge_xcnn.train.datasets.scenes import SyntheticScenes, colour_layer, procedural_texture, recolour_background
from edge_xcnn.train.datasets.synthetic import DIGIT_SIDE, SyntheticDigits
from edge_xcnn.train.loc_report import LocalizationReport, background_saturation
from edge_xcnn.train.objective import (
    area_prior,
    classification_loss,
    empty_prior,
    erase_evidence,
    localization_terms,
    ramp,
    suppression_loss,
)
from edge_xcnn.train.polarity import decide_polarity
from edge_xcnn.train.pretrain import DigitCanvases
from edge_xcnn.train.recipes import LOCALIZER, get_recipe
from edge_xcnn.train.threshold import choose_threshold


def context_meta(size=(64, 64)) -> ModelMeta:
    arch = ArchSpec("xcnn", "mnist_net", 3, 16, 3, generator="context")
    return ModelMeta(arch, tuple(str(i) for i in range(10)), size, (0.5,) * 3, (0.5,) * 3)


def test_context_generator_sees_the_largest_digit_at_the_default_input_size():
    largest = DIGIT_SIDE[1] * 64
    assert receptive_field(3) >= largest  # computed
    torch.manual_seed(0)
    gen = ContextGenerator(3, 16, 3).eval()
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    gen(x)[0, 0, 32, 32].backward()
    rows = np.flatnonzero(x.grad.abs().sum((0, 1, 3)).numpy() > 0)
    assert rows.max() - rows.min() + 1 >= largest  # measured: the centre pixel depends on 38+ rows


def test_default_classifier_sees_a_whole_digit_where_the_gmp_head_sees_a_stroke():
    """Rows of the input one output of each net depends on (the global max reads one position)."""
    from edge_xcnn.models.classifiers import MnistNetDeep, MnistNetMaxPool, MnistNetWide

    def reach(net: nn.Module) -> int:
        """Receptive field in rows: max pools become average pools and weights positive, so every path counts."""
        for i, layer in enumerate(net.features):
            if isinstance(layer, nn.MaxPool2d):
                net.features[i] = nn.AvgPool2d(2)
            elif isinstance(layer, nn.Conv2d):
                nn.init.constant_(layer.weight, 0.01)
        x = torch.rand(1, 1, 64, 64, requires_grad=True)
        net.eval().features(x)[0, :, 4, 4].sum().backward()  # a feature cell at the centre of each net's 8x8 grid
        rows = np.flatnonzero(x.grad.abs().sum((0, 1, 3)).numpy() > 0)
        return int(rows.max() - rows.min() + 1)

    torch.manual_seed(0)
    assert reach(MnistNetDeep(1, 10, (64, 64))) >= DIGIT_SIDE[1] * 64 > reach(MnistNetMaxPool(1, 10, (64, 64)))
    wide = MnistNetWide(1, 10, (64, 64))
    assert reach(wide) == reach(MnistNetDeep(1, 10, (64, 64)))  # the same view, twice the filters
    assert wide(torch.rand(2, 1, 64, 64)).shape == (2, 10) and wide.classifier.in_features == 128


def test_glyph_warp_keeps_the_whole_digit_and_is_a_pure_function_of_the_rng():
    from edge_xcnn.train.datasets.mnist5k import load_mnist5k
    from edge_xcnn.train.datasets.scenes import warp_glyph

    digit = load_mnist5k()[0][0].astype(np.float32)
    warps = [warp_glyph(np.random.default_rng(seed), digit) for seed in range(40)]
    assert np.array_equal(warps[3], warp_glyph(np.random.default_rng(3), digit))
    ink = (digit >= 127.5).sum()
    for warped in warps:
        border = np.concatenate([warped[0], warped[-1], warped[:, 0], warped[:, -1]])
        assert border.max() < 127.5  # nothing cut off at the canvas edge
        assert 0.4 * ink <= (warped >= 127.5).sum() <= 3.0 * ink
    assert len({w.shape for w in warps}) > 10  # the warps differ


@pytest.mark.parametrize("size", [(64, 64), (45, 37), (32, 32)])
def test_context_xcnn_shapes_and_range_at_odd_sizes(size):
    model = build_model(context_meta(size)).eval()
    with torch.no_grad():
        logits, heat = model(torch.rand(2, 3, *size))
    assert logits.shape == (2, 10) and heat.shape == (2, 1, *size)
    assert heat.abs().max() <= 1


def test_ibn_normalizes_each_images_contrast_in_half_its_channels_only():
    """Instance half: the same output whatever an image's per-channel gain and offset; batch half: not."""
    torch.manual_seed(0)
    norm = InstanceBatchNorm(8)
    x = torch.randn(4, 8, 16, 16) * 2 + 1
    norm.train()
    norm(x)  # one training step moves the batch half's running statistics, and only those exist
    assert not torch.allclose(norm.batch.running_mean, torch.zeros(4))
    norm.eval()
    gain = torch.tensor([3.0, 0.5, 2.0, 7.0, 3.0, 0.5, 2.0, 7.0]).view(1, 8, 1, 1)
    plain, restyled = norm(x), norm(x * gain + 5)
    torch.testing.assert_close(plain[:, :4], restyled[:, :4], atol=1e-4, rtol=1e-4)
    assert (plain[:, 4:] - restyled[:, 4:]).abs().max() > 1.0
    # channels-last in, channels-last-friendly out: the same numbers
    torch.testing.assert_close(norm(x.to(memory_format=torch.channels_last)), plain)


def test_ibn_generator_builds_from_its_metadata_and_exports_to_onnx(tmp_path):
    import onnx
    import onnxruntime as ort

    from edge_xcnn.checkpoint import save_checkpoint
    from export.onnx_export import export_onnx

    arch = ArchSpec("xcnn", "mnist_net_deep", 3, 8, 3, generator="context-ibn")
    meta = ModelMeta(arch, tuple(str(i) for i in range(10)), (64, 64), (0.5,) * 3, (0.5,) * 3)
    torch.manual_seed(0)
    model = build_model(meta)
    model.train()
    model(torch.rand(8, 3, 64, 64))  # batch statistics that are not the initial ones
    model.eval()
    save_checkpoint(tmp_path / "ibn.safetensors", model, meta)
    out = export_onnx(tmp_path / "ibn.safetensors", tmp_path / "ibn.onnx")
    ops = {node.op_type for node in onnx.load(out).graph.node}
    assert {"Split", "InstanceNormalization", "BatchNormalization"} <= ops  # TensorRT runs all three
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        logits, heat = model(x)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(got[0], logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(got[1], heat.numpy(), atol=1e-4)


def test_decoder_gradients_are_bitwise_those_without_the_dense_layout_step(monkeypatch):
    """The training-speed step in the decoder (``_GradInInputLayout``) changes where gradients lie, not their bits."""
    import edge_xcnn.models.generator as generator_module

    dense_grad = generator_module._dense_grad
    meta = get_recipe("synthetic").meta([str(i) for i in range(10)])
    x = torch.rand(16, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    grads = []
    for dense in (True, False):
        if not dense:
            monkeypatch.setattr(generator_module, "_dense_grad", lambda t: t)
        torch.manual_seed(0)
        model = build_model(meta).to(memory_format=torch.channels_last).train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, heat = model(x)
            (logits.float().square().mean() + heat.float().mean()).backward()
        grads.append({name: p.grad for name, p in model.generator.named_parameters()})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 20
    for name, grad in grads[0].items():
        assert torch.equal(grad, grads[1][name]), name
    # the step is in the graph only while gradients flow: inference and export see plain ops
    upsampled = torch.rand(2, 4, 8, 8, requires_grad=True)
    assert type(dense_grad(upsampled).grad_fn).__name__ == "_GradInInputLayoutBackward"
    with torch.no_grad():
        assert dense_grad(upsampled) is upsampled


def test_map_start_sets_where_the_generators_map_begins():
    """--map-start v: a fresh generator's map sits near v (its head's bias atanh(v)); only context generators."""
    from edge_xcnn.train.loop import _start_map_at

    recipe = get_recipe("synthetic").with_overrides(map_start=-0.8)
    recipe.validate()
    torch.manual_seed(0)
    model = build_model(recipe.meta([str(i) for i in range(10)])).eval()
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        before = model.generator(x)
        _start_map_at(model, recipe.map_start)
        after = model.generator(x)
    assert abs(before.mean().item()) < 0.3 and abs(after.mean().item() + 0.8) < 0.1
    with pytest.raises(EdgeXcnnError, match="--map-start"):
        recipe.with_overrides(map_start=1.0).validate()
    with pytest.raises(EdgeXcnnError, match="--map-start needs a context generator"):
        get_recipe("synthetic-paper").with_overrides(map_start=-0.5).validate()


def test_paper_recipe_keeps_the_papers_setup_and_default_recipe_its_parts():
    paper = get_recipe("synthetic-paper")
    assert (paper.generator, paper.generator_levels, paper.loss, paper.area_prior, paper.bas) == (
        "paper",
        1,
        "ce",
        0.0,
        0.0,
    )
    assert (paper.train_data, paper.threshold, paper.lr, paper.epochs) == ("digits", 0.5, 1e-3, 16)
    default = get_recipe("synthetic")
    assert default.generator == "context-ibn" and default.compile
    assert default.train_data == "scenes" and default.loss == "bce"
    assert default.area_prior > 0 and default.bas == 0 and default.threshold is None
    assert default.fixes_polarity and not paper.fixes_polarity


def test_vgg16_recipe_localizes_like_the_default():
    vgg, default = get_recipe("synthetic-vgg16"), get_recipe("synthetic")
    for field, value in LOCALIZER.items():
        assert getattr(vgg, field) == value, field
        # The default's generator has IBN since session 13; the VGG-16 recipe keeps the context
        # generator its reported runs used (IBN with VGG-16 was not trained: no GPU session since).
        assert field == "generator" or getattr(default, field) == value, field
    assert (vgg.generator, default.generator) == ("context", "context-ibn")
    assert vgg.classifier == "vgg16_bn" and vgg.classifier_lr_scale < default.classifier_lr_scale


def test_memory_cache_filled_by_forked_processes_keeps_every_sample_as_made_in_order():
    # Training makes the cached scenes on every core before its first epoch (MemoryCache.fill); the
    # model stays byte-identical only if each scene is exactly what scenes[i] makes here, in order.
    scenes = SyntheticScenes(64, seed=3, length=1100)  # three chunks: forked processes are used
    cache, seen = MemoryCache(scenes), []
    cache.fill(2, seen.append)
    assert sum(seen) == 1100 and len(seen) == 3
    for i in (0, 499, 500, 1099):
        made, kept = scenes[i], cache[i]
        assert np.array_equal(made.image, kept.image) and np.array_equal(made.mask, kept.mask)
        assert made.labels == kept.labels and np.array_equal(made.boxes, kept.boxes)
    assert len(cache._samples) == 1100  # nothing left to make during the first epoch
    serial = MemoryCache(scenes)
    serial.fill(1)
    assert all(np.array_equal(serial[i].image, cache[i].image) for i in range(0, 1100, 37))


def test_pretraining_canvases_made_in_processes_are_the_canvases_made_one_by_one():
    canvases = DigitCanvases(64, seed=2, length=1100)
    made = make_in_processes(canvases, range(1100), 2)
    assert len(made) == 1100
    for i in (0, 500, 1099):
        canvas, target = canvases[i]
        assert np.array_equal(made[i][0], canvas) and np.array_equal(made[i][1], target)


def test_scenes_are_deterministic_and_their_labels_match_their_digits():
    scenes = SyntheticScenes(64, seed=0, length=300)
    a, b = scenes[17], scenes[17]
    assert np.array_equal(a.image, b.image) and a.labels == b.labels
    counts = np.bincount([len(s.boxes) for s in (scenes[i] for i in range(300))], minlength=4)
    assert counts.sum() == 300 and all(counts > 10)  # 0, 1, 2 and 3 digits all occur
    for i in range(60):
        s = scenes[i]
        assert set(s.labels) <= set(range(10)) and len(s.labels) <= len(s.boxes) <= 3
        if len(s.boxes):
            assert (s.boxes[:, :2] >= 0).all() and (s.boxes[:, 2:] <= 64).all()
            assert s.mask.any() and s.label in s.labels
        else:
            assert s.label == -1 and not s.mask.any() and s.box is None


def test_wide_scenes_differ_only_in_their_backgrounds():
    train, wide = SyntheticScenes(64, seed=0, length=50), SyntheticScenes(64, seed=0, length=50, backgrounds="wide")
    same_layout = sum(a.labels == b.labels and np.array_equal(a.boxes, b.boxes) for a, b in zip(
        (train[i] for i in range(50)), (wide[i] for i in range(50)), strict=True))  # fmt: skip
    assert same_layout == 50
    assert sum(not np.array_equal(train[i].image, wide[i].image) for i in range(50)) >= 25
    with pytest.raises(ValueError, match="backgrounds"):
        SyntheticScenes(64, backgrounds="test")


def test_texture_backgrounds_replace_footage_only_when_on():
    """``textures``: off, the scenes keep their bytes; on, every scene differs from its footage version
    and still holds its digits with boxes inside the image; a texture's two colours stay within 170
    levels per channel, so it never out-contrasts a digit stroke."""
    plain = SyntheticScenes(64, seed=0, length=12)
    assert SyntheticScenes(64, seed=0, length=12, textures=0.0)[3].image.tobytes() == plain[3].image.tobytes()
    textured = SyntheticScenes(64, seed=0, length=12, textures=1.0)
    for i in range(12):
        sample = textured[i]
        assert sample.image.shape == (64, 64, 3) and sample.image.tobytes() != plain[i].image.tobytes()
        assert ((sample.boxes >= 0) & (sample.boxes <= 64)).all() and len(sample.labels) <= 3
    rng = np.random.default_rng(1)
    for _ in range(40):
        texture = procedural_texture(rng, 64).astype(np.int16)
        assert (texture.max(axis=(0, 1)) - texture.min(axis=(0, 1)) <= 171).all()
    with pytest.raises(ValueError, match="textures"):
        SyntheticScenes(64, textures=-0.1)


def test_photometric_jitter_restyles_the_background_and_keeps_the_digits_where_they_were():
    """Off: the scenes keep their bytes. On: the same digits, masks and boxes on a background that looks
    different (its own random numbers; the digits' colours are then picked against the new background)."""
    plain = SyntheticScenes(64, seed=0, length=16)
    assert SyntheticScenes(64, seed=0, length=16, photometric=0.0)[5].image.tobytes() == plain[5].image.tobytes()
    styled = SyntheticScenes(64, seed=0, length=16, photometric=1.0)
    differs = 0
    for i in range(16):
        a, b = plain[i], styled[i]
        assert a.labels == b.labels
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.mask, b.mask)
        differs += int(np.abs(a.image.astype(int) - b.image.astype(int))[~a.mask].mean() > 5)
    assert differs >= 12
    with pytest.raises(ValueError, match="photometric"):
        SyntheticScenes(64, photometric=1.5)


def test_shape_clutter_adds_strokes_off_the_digits_and_leaves_the_scene_otherwise_as_it_was():
    """``shape_clutter``: same digits, boxes and masks; new strokes only outside the digits' boxes."""
    plain = SyntheticScenes(64, seed=0, length=40)
    clutter = SyntheticScenes(64, seed=0, length=40, shape_clutter=1.0)
    changed = 0
    for i in range(40):
        a, b = plain[i], clutter[i]
        assert a.labels == b.labels and np.array_equal(a.boxes, b.boxes) and np.array_equal(a.mask, b.mask)
        outside = np.ones((64, 64), bool)
        for x0, y0, x1, y1 in b.boxes.astype(int):
            outside[y0:y1, x0:x1] = False
        diff = np.abs(a.image.astype(np.int16) - b.image.astype(np.int16)).max(axis=2)
        changed += int((diff[outside] > 40).sum() >= 10)  # strokes drawn where no digit is
    assert changed >= 30
    # off by default, and then the stream of random numbers is the old one (the default model's bytes)
    assert SyntheticScenes(64, seed=0, length=40, shape_clutter=0.0)[5].image.tobytes() == plain[5].image.tobytes()
    with pytest.raises(ValueError, match="shape_clutter"):
        SyntheticScenes(64, shape_clutter=1.5)


def test_scene_backgrounds_cover_the_saturation_range_of_the_test_split():
    """Saturation must not predict a digit: training backgrounds reach past the test split's range."""
    scenes = SyntheticScenes(64, seed=0, length=200)
    test = SyntheticDigits("test", size=64, length=200)
    train_sat = np.array([background_saturation(s.image, s.mask) for s in (scenes[i] for i in range(200))])
    test_sat = np.array([background_saturation(s.image, s.mask) for s in (test[i] for i in range(200))])
    assert np.percentile(train_sat, 90) >= np.percentile(test_sat, 90)
    # and the greyest test backgrounds are common in training too (measured: 6% of scenes at or below
    # the test split's 10th percentile; the hue/saturation jitter reaches both ends)
    assert (train_sat <= np.percentile(test_sat, 10)).mean() >= 0.05
    rng = np.random.default_rng(0)
    grey = np.full((64, 64, 3), 120, np.uint8)
    assert background_saturation(colour_layer(rng, 64).astype(np.uint8), None) > 100
    assert recolour_background(grey, rng).shape == grey.shape


def test_area_prior_and_erasure_act_on_the_evidence_sign():
    images = torch.rand(2, 3, 8, 8)
    dark, lit = torch.full((2, 1, 8, 8), -1.0), torch.ones(2, 1, 8, 8)
    assert float(area_prior(dark)) == 0.0 and float(area_prior(lit)) == 1.0
    assert torch.allclose(erase_evidence(images, dark), images)
    fill = images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    assert torch.allclose(erase_evidence(images, lit), fill)


def test_suppression_loss_falls_as_the_erased_scores_fall():
    targets = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    high, low = torch.full((2, 3), 3.0), torch.full((2, 3), -3.0)
    assert suppression_loss(high, targets, "bce") > suppression_loss(low, targets, "bce")
    assert float(suppression_loss(high, torch.zeros(2, 3), "bce")) == 0.0  # no digit, nothing to suppress
    labels = torch.tensor([1, 2])
    peaked = torch.tensor([[0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    assert suppression_loss(peaked, labels, "ce") > suppression_loss(-peaked, labels, "ce")
    assert classification_loss(peaked, labels, "ce") < classification_loss(-peaked, labels, "ce")


def test_empty_prior_grades_the_brightest_pixels_of_empty_scenes_only():
    targets = torch.tensor([[0.0, 1.0], [0.0, 0.0]])  # a scene with a digit, an empty one
    heat = torch.full((2, 1, 10, 10), -1.0)
    heat[:, :, :3, :3] = 1.0  # a 9-pixel blob on both
    heat.requires_grad_(True)
    value = empty_prior(heat, targets, top=0.09)  # the 9 brightest of 100 pixels
    assert value.item() == 1.0  # the empty scene's blob, whole
    value.backward()
    assert float(heat.grad[0].abs().sum()) == 0.0  # the scene with a digit is left to the classifier
    assert float(heat.grad[1, 0, :3, :3].abs().min()) > 0 and float(heat.grad[1, 0, 3:, 3:].abs().sum()) == 0.0
    blob_free = torch.full((2, 1, 10, 10), -1.0)
    assert float(empty_prior(blob_free, targets)) == 0.0
    assert float(empty_prior(heat.detach(), torch.ones(2, 2))) == 0.0  # no empty scene in the batch
    # Through the objective: only with multi-hot targets, where an empty scene exists.
    terms = localization_terms(nn.Identity(), torch.zeros(2, 3, 10, 10), heat.detach(), targets, kind="bce",
                               area_weight=0.0, bas_weight=0.0, bas_fraction=0.25, empty_weight=0.5)  # fmt: skip
    assert set(terms) == {"empty"} and float(terms["empty"]) > 0.0
    with pytest.raises(ValueError, match="multi-hot"):
        localization_terms(nn.Identity(), torch.zeros(2, 3, 10, 10), heat.detach(), torch.tensor([1, 0]), kind="ce",
                           area_weight=0.0, bas_weight=0.0, bas_fraction=0.25, empty_weight=0.5)  # fmt: skip


def test_empty_prior_option_is_checked_and_fixes_the_sign():
    recipe = get_recipe("synthetic").with_overrides(empty_prior=0.3, area_prior=0.0)
    recipe.validate()
    assert recipe.fixes_polarity
    with pytest.raises(EdgeXcnnError, match="--empty-prior"):
        get_recipe("synthetic").with_overrides(empty_prior=0.3, loss="ce", train_data="digits").validate()
    with pytest.raises(EdgeXcnnError, match="--empty-prior"):
        get_recipe("synthetic").with_overrides(empty_prior=-1.0).validate()


def test_localization_terms_ramp_in_after_warmup():
    assert ramp(0.5, 1.0) == 0.0 and ramp(1.5, 1.0) == 0.5 and ramp(7.0, 1.0) == 1.0


class MaskModel(nn.Module):
    """A real network whose map is +1 on bright pixels (the digit in these tests), for polarity/threshold."""

    def __init__(self, sign: int = 1, classes: int = 10) -> None:
        super().__init__()
        self.sign, self.classes = sign, classes

    def forward(self, x):
        bright = x.mean(1, keepdim=True)
        heat = torch.tanh((bright - 0.5) * 20) * self.sign
        logits = torch.zeros(x.shape[0], self.classes)
        logits[:, 0] = (bright > 0.5).float().mean((1, 2, 3)) * 100  # evidence = the bright pixels
        return logits, heat


def bright_square_images(n=8, size=32):
    images = torch.full((n, 3, size, size), 0.2)
    boxes = []
    for i in range(n):
        x0, y0 = 2 + i, 4 + i
        images[i, :, y0 : y0 + 10, x0 : x0 + 12] = 0.9
        boxes.append(np.array([x0, y0, x0 + 12, y0 + 10], np.float32))
    return images, boxes


@pytest.mark.parametrize("sign", [1, -1])
def test_polarity_follows_the_evidence_on_a_sparse_map(sign):
    images, _ = bright_square_images()
    assert decide_polarity(MaskModel(sign), images) == sign


def test_threshold_is_chosen_on_the_given_split_by_the_papers_rule():
    from edge_xcnn.train.datasets.base import Sample

    images, boxes = bright_square_images(6)

    class Data:
        classes: ClassVar[list[str]] = [str(i) for i in range(10)]

        def __len__(self):
            return len(boxes)

        def __getitem__(self, i):
            image = (images[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            return Sample(image, 0, boxes[i])

    meta = ModelMeta(ArchSpec("xcnn", "mnist_net", 3, 8, 1), tuple(Data.classes), (32, 32), (0.0,) * 3, (1.0,) * 3)
    chosen, scores = choose_threshold(MaskModel(), Data(), meta, torch.device("cpu"))
    assert scores[chosen] == 1.0 and 0.1 <= chosen <= 0.9


def test_map_quality_grades_a_map_that_marks_the_object_and_one_that_marks_the_rest():
    from edge_xcnn.train.datasets.base import Sample
    from edge_xcnn.train.threshold import EPOCH_CANDIDATES, grade_maps, has_map_truth, map_truth, validation_maps

    images, boxes = bright_square_images(6)

    class Data:
        def __len__(self):
            return len(boxes)

        def __getitem__(self, i):
            image = (images[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            mask = np.zeros(image.shape[:2], bool)
            x0, y0, x1, y1 = boxes[i].astype(int)
            mask[y0:y1, x0:x1] = True
            return Sample(image, 0, boxes[i], mask=mask)

    classes = tuple(str(i) for i in range(10))
    meta = ModelMeta(ArchSpec("xcnn", "mnist_net", 3, 8, 1), classes, (32, 32), (0.0,) * 3, (1.0,) * 3)
    assert has_map_truth(Data(), meta) and not has_map_truth(Data(), meta.replace(input_size=(64, 64)))
    right = grade_maps(validation_maps(MaskModel(1), Data(), meta, torch.device("cpu")), meta.polarity)
    assert right.gt_known == 1.0 and right.pxap == pytest.approx(1.0) and right.threshold in EPOCH_CANDIDATES
    wrong = grade_maps(validation_maps(MaskModel(-1), Data(), meta, torch.device("cpu")), meta.polarity)  # wrong sign
    assert wrong.gt_known == 0.0 and wrong.pxap < 0.2
    assert set(right.as_row()) == {"val_gt_known", "val_loc_threshold", "val_pxap"}

    class Unboxed(Data):
        def __getitem__(self, i):
            return Sample(super().__getitem__(i).image, 0) if i == 3 else super().__getitem__(i)

    assert map_truth(Data()) is not None and map_truth(Unboxed()) is None  # one image without a box: no grade


def test_localization_report_on_maps_whose_answer_is_known():
    report = LocalizationReport(polarity=1, threshold=0.3)
    image = np.zeros((32, 32, 3), np.uint8)
    for k in range(6):
        heat = -np.ones((32, 32), np.float32)
        mask = np.zeros((32, 32), bool)
        mask[5 + k : 15 + k, 6:20] = True
        heat[mask] = 1.0
        if k >= 3:
            heat = -heat  # the wrong sign: the box becomes the whole background
        box = np.array([6, 5 + k, 20, 15 + k], np.float32)
        image[..., 1] = 40 * k  # saturation grows with k: the last images are the most saturated third
        report.add(heat, image.copy(), box, mask, correct=True, scale=(1.0, 1.0), offset=(0.0, 0.0))
    figures = report.figures()
    assert figures["gt_known_loc"] == 0.5 and figures["at_0.5"]["gt_known_loc"] == 0.5
    thirds = figures["saturation_thirds"]
    assert thirds["least"]["gt_known_loc"] == 1.0 and thirds["most"]["gt_known_loc"] == 0.0
    assert 0.0 < figures["PxAP"] < 1.0 and 0.0 < figures["MaxBoxAccV2"] <= 1.0


@pytest.mark.integration
def test_default_recipe_trains_end_to_end_with_every_part_on(tmp_path):
    """Pretraining, scenes, sigmoid loss, both localization terms, the polarity check, the val threshold."""
    from edge_xcnn.checkpoint import read_meta
    from edge_xcnn.train.loop import TrainOptions, train
    from edge_xcnn.train.threshold import EPOCH_CANDIDATES

    recipe = get_recipe("synthetic").with_overrides(
        epochs=2, objective_warmup=1.0, classifier_pretrain_epochs=1, train_images=256, batch_size=64
    )
    result = train(TrainOptions(recipe=recipe, out_dir=tmp_path, limit_val=64, quiet=True))
    meta = read_meta(result.best)
    assert meta.arch.generator == "context-ibn" and meta.arch.classifier == "mnist_net_deep"
    assert meta.threshold in [float(t) for t in np.round(np.arange(0.10, 0.91, 0.02), 2)]
    assert meta.polarity in (1, -1) and len(result.history) == 2
    # Every epoch grades the map on the box-labelled validation split, in the history and results.json.
    for row in (*result.history, *json.loads((tmp_path / "results.json").read_text())["history"]):
        assert 0.0 <= row["val_gt_known"] <= 1.0 and 0.0 < row["val_pxap"] < 1.0
        assert row["val_loc_threshold"] in [float(t) for t in EPOCH_CANDIDATES]
    curves = cv2.imread(str(tmp_path / "results.png"))  # four panels: loss, top-1, the map, lr
    assert curves is not None and curves.shape[1] == round(3.4 * 4 * 100)


def test_training_stops_loudly_when_the_polarity_check_disagrees_with_the_objective():
    from edge_xcnn.errors import TrainingFailed
    from edge_xcnn.train.loop import _with_polarity

    images, _ = bright_square_images()
    meta = context_meta((32, 32))
    assert _with_polarity(MaskModel(1), meta, images, fixed_sign=True).polarity == 1
    assert _with_polarity(MaskModel(-1), meta, images, fixed_sign=False).polarity == -1
    with pytest.raises(TrainingFailed, match="polarity"):
        _with_polarity(MaskModel(-1), meta, images, fixed_sign=True)
