import numpy as np
import pytest

from edge_xcnn.localize import heatmap_to_detections
from edge_xcnn.meta import ArchSpec, ModelMeta
from edge_xcnn.preprocess import preprocess, resize_image
from edge_xcnn.train.augment import Augment
from edge_xcnn.train.datasets.base import Sample


def tight_box(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def object_sample(h=32, w=40, box=(6, 9, 20, 25)):
    x1, y1, x2, y2 = box
    mask = np.zeros((h, w), bool)
    mask[y1:y2, x1:x2] = True
    mask[y1 + 3, x1 + 2 : x2 - 4] = False  # not a plain rectangle: asymmetric inside
    image = np.where(mask[..., None], 255, 30).astype(np.uint8).repeat(3, 2)
    return Sample(image, 3, tight_box(mask), mask)


@pytest.mark.parametrize("seed", range(20))
def test_crop_and_flip_keep_box_and_mask_true(seed):
    sample = object_sample()
    out = Augment(crop_padding=4, hflip=True)(sample, np.random.default_rng(seed))
    assert out.image.shape == sample.image.shape
    assert out.label == sample.label
    np.testing.assert_array_equal(out.box, tight_box(out.mask))  # box still wraps the object's pixels
    np.testing.assert_array_equal(out.mask, out.image[..., 0] == 255)  # mask moved with the pixels


def test_flip_mirrors_the_box():
    sample = object_sample()
    out = Augment(hflip=True)(sample, np.random.default_rng(1))  # rng draws < 0.5 for seed 1
    flipped = out.box.tolist() != sample.box.tolist()
    expected = [40 - 20, 9, 40 - 6, 25] if flipped else sample.box.tolist()
    assert out.box.tolist() == expected


def test_box_leaving_the_image_is_clipped_to_it():
    sample = object_sample(box=(0, 0, 10, 10))
    rng = np.random.default_rng(3)
    for _ in range(20):
        out = Augment(crop_padding=4)(sample, rng)
        assert out.box.min() >= 0 and out.box[2] <= 40 and out.box[3] <= 32


def meta(resize):
    return ModelMeta(
        arch=ArchSpec("xcnn", "mnist_net", 3, 8, 1),
        classes=("a",),
        input_size=(32, 32),
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        resize=resize,
    )


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_heatmap_boxes_map_back_to_source_pixels(resize):
    """An object's box found at network resolution lands on the object in the source frame."""
    frame = np.zeros((120, 200, 3), np.uint8)
    frame[30:90, 100:160] = 255
    x, geometry = preprocess(frame, meta(resize))
    assert x.shape == (3, 32, 32) and x.dtype == np.float32 and x.max() <= 1.0
    heat = x[0] * 2 - 1  # a "heatmap" that is the object itself
    box = heatmap_to_detections(heat, geometry).xyxy[0]
    np.testing.assert_allclose(box, [100, 30, 160, 90], atol=200 / 32 + 0.5)


def test_letterbox_pads_and_gray_models_get_one_channel():
    out, geometry = resize_image(np.zeros((50, 100, 3), np.uint8), (32, 32), "letterbox")
    assert out.shape == (32, 32, 3) and out[0, 0, 0] == 114 and out[16, 16, 0] == 0
    assert geometry.offset == (0.0, 8.0)
    gray = meta("stretch").replace(color="gray", mean=(0.5,), std=(0.5,), arch=ArchSpec("xcnn", "mnist_net", 1, 8, 1))
    x, _ = preprocess(np.full((28, 28, 3), 255, np.uint8), gray)
    assert x.shape == (1, 32, 32) and np.allclose(x, 1.0)
