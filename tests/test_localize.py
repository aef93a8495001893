import numpy as np
import pytest

from edge_xcnn.localize import box_iou, heatmap_to_boxes, normalize_heatmap


def blob_map(shape=(40, 50), blobs=((5, 8, 15, 20, 1.0),), base=-1.0):
    """A raw tanh-like map: ``base`` everywhere, rectangles (y1, x1, y2, x2, value) on top."""
    heat = np.full(shape, base, np.float32)
    for y1, x1, y2, x2, value in blobs:
        heat[y1:y2, x1:x2] = value
    return heat


def test_single_blob_gives_its_exact_box():
    boxes = heatmap_to_boxes(blob_map())
    assert len(boxes) == 1
    np.testing.assert_array_equal(boxes.xyxy[0], [8, 5, 20, 15])  # x1, y1, x2 (exclusive), y2
    assert boxes.score[0] == pytest.approx(1.0)


def test_largest_contour_wins_and_all_keeps_every_blob_sorted_by_area():
    heat = blob_map(blobs=((2, 2, 6, 6, 1.0), (10, 20, 30, 45, 0.9)))
    largest = heatmap_to_boxes(heat)
    np.testing.assert_array_equal(largest.xyxy, [[20, 10, 45, 30]])
    every = heatmap_to_boxes(heat, keep="all")
    np.testing.assert_array_equal(every.xyxy, [[20, 10, 45, 30], [2, 2, 6, 6]])
    # Peak scores of the normalized map: the small blob holds the maximum.
    assert every.score[1] == pytest.approx(1.0)
    assert every.score[0] == pytest.approx(0.95)


def test_polarity_flips_which_region_is_evidence():
    heat = blob_map(blobs=((5, 8, 15, 20, -1.0),), base=1.0)  # evidence is the negative blob
    assert heatmap_to_boxes(heat, polarity=1).xyxy[0].tolist() == [0, 0, 50, 40]
    assert heatmap_to_boxes(heat, polarity=-1).xyxy[0].tolist() == [8, 5, 20, 15]


def test_threshold_is_on_the_normalized_map():
    heat = blob_map(blobs=((0, 0, 10, 10, 1.0), (20, 20, 30, 40, 0.2)))  # 0.2 -> 0.6 normalized
    assert len(heatmap_to_boxes(heat, threshold=0.5, keep="all")) == 2
    assert len(heatmap_to_boxes(heat, threshold=0.7, keep="all")) == 1


def test_flat_map_gives_no_box_and_min_area_filters():
    assert len(heatmap_to_boxes(np.zeros((16, 16)))) == 0
    heat = blob_map(blobs=((2, 2, 4, 4, 1.0), (10, 10, 30, 30, 1.0)))
    assert len(heatmap_to_boxes(heat, keep="all", min_area=10)) == 1


def test_boxes_are_mapped_to_source_pixels():
    heat = blob_map(shape=(32, 32), blobs=((8, 8, 16, 24, 1.0),))
    # Network 32x32 letterboxed from a 128x64 (W x H) frame: scale 4, 8 px of padding on top.
    boxes = heatmap_to_boxes(heat, scale=(4.0, 4.0), offset=(0.0, 8.0))
    np.testing.assert_allclose(boxes.xyxy[0], [32, 0, 96, 32])


def test_normalize_rejects_non_2d_and_handles_channel_axis():
    assert normalize_heatmap(np.ones((1, 4, 4))).shape == (4, 4)
    with pytest.raises(ValueError, match="H x W"):
        normalize_heatmap(np.ones((2, 4, 4)))


@pytest.mark.parametrize(
    ("a", "b", "iou"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),
        ([0, 0, 10, 10], [10, 10, 20, 20], 0.0),
        ([0, 0, 10, 10], [2, 2, 4, 4], 4 / 100),
    ],
)
def test_box_iou(a, b, iou):
    assert box_iou(np.array(a), np.array(b))[0, 0] == pytest.approx(iou)
