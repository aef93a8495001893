"""The synthetic benchmark on the real shipped data: mnist5k split, backgrounds, stills, moving clip."""

from __future__ import annotations

import gzip
import hashlib
import json

import av
import numpy as np
import pytest

from edge_xcnn.train.datasets.backgrounds import (
    SCENE_EXTRA_SOURCES,
    SOURCES,
    background_names,
    background_pool,
    random_crop,
    scene_pool,
    video_frames,
)
from edge_xcnn.train.datasets.base import LabelledImages
from edge_xcnn.train.datasets.mnist5k import Mnist5k, load_mnist5k, mnist5k_indices, mnist5k_path
from edge_xcnn.train.datasets.moving import write_moving_digits
from edge_xcnn.train.datasets.synthetic import (
    MIN_LUMA_GAP,
    SyntheticDigits,
    materialize,
    pick_colour,
)
from edge_xcnn.train.evaluate import trivial_boxes

N = 300  # samples per split for the contract statistics
SIZE = 64
# sha256 of mnist5k_indices("test") as little-endian int64: the split must never move.
TEST_INDICES_SHA256 = "0b8160b66cc57cf75b3ef959afafaf6786f0200f482cc22f21b03d0b2407b220"


def tight_box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def area(b: np.ndarray) -> np.ndarray:
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    return w * h


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = intersection(a, b)
    return inter / (area(a) + area(b) - inter)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list]:
    """N (sample, layout) pairs per split, rendered once for all the contract tests."""
    return {split: [SyntheticDigits(split, size=SIZE).render(i) for i in range(N)] for split in ("train", "test")}


# --- mnist5k ---------------------------------------------------------------------------------------


def test_mnist5k_file_has_label_in_last_column() -> None:
    with gzip.open(mnist5k_path(), "rt") as f:
        row = [int(v) for v in f.readline().split(",")]
    assert len(row) == 785
    images, labels = load_mnist5k()
    assert row[-1] == labels[0] and row[:784] == images[0].ravel().tolist()


def test_mnist5k_loads_5000_balanced_digits() -> None:
    images, labels = load_mnist5k()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64
    assert np.bincount(labels, minlength=10).tolist() == [500] * 10
    assert load_mnist5k() is load_mnist5k()  # cached


def test_mnist5k_split_fixed_disjoint_stratified() -> None:
    _, labels = load_mnist5k()
    train, val, test = (mnist5k_indices(s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (3600, 400, 1000)
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    assert np.array_equal(np.sort(np.concatenate([train, val, test])), np.arange(5000))
    assert np.array_equal(mnist5k_indices("trainval"), np.sort(np.concatenate([train, val])))
    assert np.bincount(labels[test], minlength=10).tolist() == [100] * 10
    assert np.bincount(labels[val], minlength=10).tolist() == [40] * 10
    assert hashlib.sha256(test.astype("<i8").tobytes()).hexdigest() == TEST_INDICES_SHA256


def test_mnist5k_dataset_samples() -> None:
    ds = Mnist5k("val")
    assert isinstance(ds, LabelledImages) and len(ds) == 400 and ds.classes == [str(d) for d in range(10)]
    s = ds[3]
    assert s.image.shape == (28, 28) and s.mask.dtype == bool
    assert np.array_equal(s.mask, s.image >= 128)
    assert np.array_equal(s.box, tight_box(s.mask))
    with pytest.raises(IndexError):
        ds[400]


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: mnist5k_indices("valid"), ValueError),
        (lambda: SyntheticDigits("trainval"), ValueError),
        (lambda: SyntheticDigits("test", size=8), ValueError),
        (lambda: SyntheticDigits("test", length=5)[5], IndexError),
        (lambda: background_pool("val"), ValueError),
    ],
)
def test_bad_arguments(make, error) -> None:
    with pytest.raises(error):
        make()


# --- backgrounds -----------------------------------------------------------------------------------


def test_background_pools_are_real_disjoint_and_bounded() -> None:
    for split, (video, photos) in SOURCES.items():
        pool, names = background_pool(split), background_names(split)
        assert len(pool) == len(names) > len(photos)
        assert all(im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3 for im in pool)
        frames = video_frames(split)
        assert len(frames) == len(pool) - len(photos) and names[0] == f"{video}#0"
        assert max(min(f.shape[:2]) for f in frames) <= 272
        assert names[-len(photos) :] == list(photos)
    assert len(video_frames("train")) == 250 and video_frames("train")[0].shape == (272, 640, 3)
    assert len(video_frames("test")) == 132 and video_frames("test")[0].shape == (272, 484, 3)
    assert not set(background_names("train")) & set(background_names("test"))
    crop = random_crop(background_pool("test"), np.random.default_rng(0), 48)
    assert crop.shape == (48, 48, 3) and crop.dtype == np.uint8 and crop.std() > 0


def test_the_scenes_wider_pool_adds_footage_and_never_the_test_pool() -> None:
    wide, train = scene_pool(), background_pool("train")
    assert wide.names[: len(train.names) - len(SOURCES["train"][1])] == train.names[: -len(SOURCES["train"][1])]
    assert set(train.names) < set(wide.names)
    assert not set(wide.names) & set(background_names("test"))
    assert set(SCENE_EXTRA_SOURCES[1]) <= set(wide.names)
    assert sum(n.startswith("carphone_pristine.mp4#") for n in wide.names) == 120
    assert all(im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3 for im in wide)
    is_frame = np.array(["#" in n for n in wide.names])
    assert wide.weights.sum() == pytest.approx(1.0) and wide.weights[is_frame].sum() == pytest.approx(0.5)
    bikes = np.array([n.startswith("bikes.mp4#") for n in wide.names])
    assert wide.weights[bikes].sum() == pytest.approx(0.25)  # each video an equal share, whatever its length


# --- still samples ---------------------------------------------------------------------------------


def test_sample_is_a_pure_function_of_its_index() -> None:
    a, b = SyntheticDigits("train", seed=3), SyntheticDigits("train", seed=3)
    order = [0, 7, 123, 19999]
    first = [a[i] for i in order]
    again = [b[i] for i in reversed(order)][::-1]
    for x, y in zip(first, again, strict=True):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.mask, y.mask)
        assert np.array_equal(x.box, y.box) and x.label == y.label
    assert a[-1].label == a[19999].label
    assert not np.array_equal(SyntheticDigits("train", seed=4)[0].image, first[0].image)
    assert not np.array_equal(SyntheticDigits("val", seed=3)[0].image, first[0].image)


def test_samples_follow_the_protocol() -> None:
    ds = SyntheticDigits("val", size=SIZE)
    assert isinstance(ds, LabelledImages)
    assert len(ds) == 2000 and len(SyntheticDigits("train")) == 20000 and len(SyntheticDigits("test", length=7)) == 7
    s = ds[0]
    assert s.image.shape == (SIZE, SIZE, 3) and s.image.dtype == np.uint8
    assert s.mask.shape == (SIZE, SIZE) and s.box.dtype == np.float32 and 0 <= s.label <= 9


@pytest.mark.parametrize("split", ["train", "test"])
def test_difficulty_contract(rendered, split: str) -> None:
    lo, hi = 0.25 * SIZE - 1, 0.6 * SIZE + 1
    for sample, layout in rendered[split]:
        box, mask = sample.box, sample.mask
        assert mask.any()
        assert np.array_equal(box, tight_box(mask))
        assert box[0] >= 0 and box[1] >= 0 and box[2] <= SIZE and box[3] <= SIZE
        assert lo <= max(box[2] - box[0], box[3] - box[1]) <= hi
        assert np.array_equal(box, np.array(layout.target.box, dtype=np.float32))
        assert 4 <= len(layout.fragments) <= 7
        assert 0.6 <= layout.target.contrast <= 1.0
        for frag in layout.fragments:
            f = np.array(frag.box)
            assert f[0] >= 0 and f[1] >= 0 and f[2] <= SIZE and f[3] <= SIZE
            assert intersection(f, box) <= 0.1 * area(f)
            assert frag.digit != layout.target.digit
    sides = np.array([max(s.box[2] - s.box[0], s.box[3] - s.box[1]) for s, _ in rendered[split]]) / SIZE
    assert sides.min() < 0.3 and sides.max() > 0.55  # the whole range is used
    labels = np.array([s.label for s, _ in rendered[split]])
    assert len(np.unique(labels)) == 10


def test_colour_rule_keeps_luminance_apart() -> None:
    rng = np.random.default_rng(0)
    weights = np.array([0.299, 0.587, 0.114])
    for luma in np.linspace(0, 255, 52):
        colour = np.array(pick_colour(rng, float(luma)))
        assert abs(colour @ weights - luma) >= MIN_LUMA_GAP - 1e-3


def test_train_and_test_never_share_digits_or_backgrounds(rendered) -> None:
    used = {
        split: {p.digit for _, lay in pairs for p in (lay.target, *lay.fragments)} for split, pairs in rendered.items()
    }
    assert used["train"] <= set(mnist5k_indices("train").tolist())
    assert used["test"] <= set(mnist5k_indices("test").tolist())
    val = SyntheticDigits("val").layout(0)
    assert {p.digit for p in (val.target, *val.fragments)} <= set(mnist5k_indices("val").tolist())
    sources = {split: {lay.background for _, lay in pairs} for split, pairs in rendered.items()}
    assert sources["train"] <= set(background_names("train"))
    assert sources["test"] <= set(background_names("test"))
    for split, (video, photos) in SOURCES.items():  # both the video and the photos are drawn
        assert any(s.startswith(video) for s in sources[split])
        assert len(sources[split] & set(photos)) >= 4


def test_trivial_baselines_score_low(rendered) -> None:
    boxes = np.stack([s.box for s, _ in rendered["test"]])
    baselines = trivial_boxes(boxes, np.full((len(boxes), 2), SIZE))
    assert set(baselines) == {"centred_mean_box", "whole_image"}
    whole = baselines["whole_image"]
    assert whole.shape == (N, 4) and np.array_equal(whole[0], [0, 0, SIZE, SIZE])
    centred = baselines["centred_mean_box"][0]
    assert np.allclose((centred[:2] + centred[2:]) / 2, SIZE / 2)
    for name, pred in baselines.items():
        scores = iou(pred, boxes)
        assert scores.mean() < 0.35, name
        assert (scores >= 0.5).mean() < 0.2, name


def test_materialize_matches_getitem() -> None:
    ds = SyntheticDigits("test", length=6)
    images, labels, boxes, masks = materialize(ds)
    assert images.shape == (6, SIZE, SIZE, 3) and masks.shape == (6, SIZE, SIZE)
    for i in (0, 5):
        s = ds[i]
        assert np.array_equal(images[i], s.image) and labels[i] == s.label
        assert np.array_equal(boxes[i], s.box) and np.array_equal(masks[i], s.mask)
    parallel = materialize(ds, workers=2)
    assert all(np.array_equal(a, b) for a, b in zip((images, labels, boxes, masks), parallel, strict=True))


# --- moving clip -----------------------------------------------------------------------------------


def test_moving_digits_video_and_ground_truth(tmp_path) -> None:
    result = write_moving_digits(tmp_path / "clip", frames=20, size=(128, 128), digits=3, seed=1)
    with av.open(str(result.video)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert frames.shape == (20, 128, 128, 3)
    assert result.codec in ("libx264", "h264", "mpeg4") and result.background == "bigbuckbunny.mp4"

    rows = np.array([[int(v) for v in line.split(",")] for line in result.gt.read_text().split()])
    assert rows.shape == (60, 9) and (rows[:, 6:] == 1).all()
    assert sorted(set(rows[:, 0])) == list(range(1, 21)) and sorted(set(rows[:, 1])) == [1, 2, 3]
    x, y, w, h = rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5]
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= 128).all() and (y + h <= 128).all()
    assert ((np.maximum(w, h) >= 0.25 * 128) & (np.maximum(w, h) <= 0.45 * 128)).all()
    assert len({(r[2], r[3]) for r in rows if r[1] == 1}) > 1  # it moves

    labels = json.loads(result.labels_path.read_text())
    assert {int(k): v for k, v in labels.items()} == result.labels and set(result.labels) == {1, 2, 3}
    assert set(result.digits.values()) <= set(mnist5k_indices("test").tolist())

    for frame, track, bx, by, bw, bh, *_ in rows:
        region = frames[frame - 1, by : by + bh, bx : bx + bw].astype(np.float32)
        strokes = result.strokes[track]
        assert strokes.shape == (bh, bw)
        dist = np.linalg.norm(region - np.array(result.colours[track], dtype=np.float32), axis=2)
        # the digit's own stroke colour sits on its stroke pixels in the decoded video
        assert dist[~strokes].mean() - dist[strokes].mean() > 30

    again = write_moving_digits(tmp_path / "again", frames=20, size=(128, 128), digits=3, seed=1)
    assert again.gt.read_text() == result.gt.read_text()


def test_held_out_footage_keeps_the_digits_and_changes_only_the_footage():
    """``footage="held-out"``: the val split's digits and boxes over footage neither training nor test uses."""
    from edge_xcnn.train.datasets.backgrounds import background_names, held_out_pool

    val, moved = SyntheticDigits("val", 64), SyntheticDigits("val", 64, footage="held-out")
    held_out = set(held_out_pool().names)
    assert not held_out & set(background_names("train")) and not held_out & set(background_names("test"))
    for i in range(0, 40, 4):
        a, b = val[i], moved[i]
        assert a.label == b.label and np.array_equal(a.box, b.box)  # paired: same digit, same place
        assert moved.layout(i).background in held_out and val.layout(i).background not in held_out
    assert not np.array_equal(val[0].image, moved[0].image)
    with pytest.raises(ValueError, match="never moves"):
        SyntheticDigits("test", 64, footage="held-out")


def test_moving_clip_on_held_out_footage_keeps_the_digits_and_their_tracks(tmp_path):
    """``write_moving_digits(footage="held-out")``: same digits and ground truth, footage no model trains on."""
    from edge_xcnn.train.datasets.backgrounds import held_out_pool

    own = write_moving_digits(tmp_path / "own", split="val", frames=12, size=(96, 96), seed=3)
    moved = write_moving_digits(tmp_path / "moved", split="val", frames=12, size=(96, 96), seed=3, footage="held-out")
    assert own.background == "bikes.mp4" and moved.background == "carphone_pristine.mp4"
    assert any(name.startswith("carphone_pristine.mp4#") for name in held_out_pool().names)
    assert moved.digits == own.digits and moved.labels == own.labels
    assert moved.gt.read_text() == own.gt.read_text()  # the footage is drawn from its own stream of numbers
    with av.open(str(own.video)) as a, av.open(str(moved.video)) as b:
        first_own = next(a.decode(video=0)).to_ndarray(format="rgb24").astype(np.float32)
        first_moved = next(b.decode(video=0)).to_ndarray(format="rgb24").astype(np.float32)
    assert np.abs(first_own - first_moved).mean() > 20  # another scene entirely
    with pytest.raises(ValueError, match="never moves"):
        write_moving_digits(tmp_path / "no", split="test", frames=2, footage="held-out")
