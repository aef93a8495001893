import numpy as np
import pytest

from edge_xcnn.detections import Detections
from edge_xcnn.localize import box_iou, heatmap_to_boxes, heatmap_to_detections, normalize_heatmap
from edge_xcnn.preprocess import Geometry, resize_image


def blob_map(shape=(40, 50), blobs=((5, 8, 15, 20, 1.0),), base=-1.0):
    """A raw tanh-like map: ``base`` everywhere, rectangles (y1, x1, y2, x2, value) on top."""
    heat = np.full(shape, base, np.float32)
    for y1, x1, y2, x2, value in blobs:
        heat[y1:y2, x1:x2] = value
    return heat


def test_single_blob_gives_its_exact_box():
    boxes = heatmap_to_detections(blob_map())
    assert len(boxes) == 1
    np.testing.assert_array_equal(boxes.xyxy[0], [8, 5, 20, 15])  # x1, y1, x2 (exclusive), y2
    assert boxes.confidence[0] == pytest.approx(1.0)


def test_largest_contour_wins_and_all_keeps_every_blob_sorted_by_area():
    heat = blob_map(blobs=((2, 2, 6, 6, 1.0), (10, 20, 30, 45, 0.9)))
    largest = heatmap_to_detections(heat)
    np.testing.assert_array_equal(largest.xyxy, [[20, 10, 45, 30]])
    every = heatmap_to_detections(heat, keep="all")
    np.testing.assert_array_equal(every.xyxy, [[20, 10, 45, 30], [2, 2, 6, 6]])
    # Peak scores of the normalized map: the small blob holds the maximum.
    assert every.confidence[1] == pytest.approx(1.0)
    assert every.confidence[0] == pytest.approx(0.95)


def test_polarity_flips_which_region_is_evidence():
    heat = blob_map(blobs=((5, 8, 15, 20, -1.0),), base=1.0)  # evidence is the negative blob
    assert heatmap_to_detections(heat, polarity=1).xyxy[0].tolist() == [0, 0, 50, 40]
    assert heatmap_to_detections(heat, polarity=-1).xyxy[0].tolist() == [8, 5, 20, 15]


def test_threshold_is_on_the_normalized_map():
    heat = blob_map(blobs=((0, 0, 10, 10, 1.0), (20, 20, 30, 40, 0.2)))  # 0.2 -> 0.6 normalized
    assert len(heatmap_to_detections(heat, threshold=0.5, keep="all")) == 2
    assert len(heatmap_to_detections(heat, threshold=0.7, keep="all")) == 1


def test_flat_map_gives_no_box_and_min_area_filters():
    assert len(heatmap_to_detections(np.zeros((16, 16)))) == 0
    heat = blob_map(blobs=((2, 2, 4, 4, 1.0), (10, 10, 30, 30, 1.0)))
    assert len(heatmap_to_detections(heat, keep="all", min_area=10)) == 1


def test_boxes_are_mapped_to_source_pixels():
    heat = blob_map(shape=(32, 32), blobs=((8, 8, 16, 24, 1.0),))
    # Network 32x32 letterboxed from a 128x64 (W x H) frame: scale 4, 8 px of padding on top.
    boxes = heatmap_to_detections(heat, Geometry((4.0, 4.0), (0.0, 8.0)))
    np.testing.assert_allclose(boxes.xyxy[0], [32, 0, 96, 32])
    # The deprecated spelling is the same function.
    np.testing.assert_allclose(heatmap_to_boxes(heat, scale=(4.0, 4.0), offset=(0.0, 8.0)).xyxy, boxes.xyxy)


def test_geometry_maps_both_ways_and_clips_to_the_frame():
    frame = np.zeros((64, 128, 3), np.uint8)
    _, geometry = resize_image(frame, (32, 32), "letterbox")
    assert geometry.source == (64, 128) and geometry.offset == (0.0, 8.0)
    box = np.array([[10.0, 4.0, 50.0, 40.0]])
    np.testing.assert_allclose(geometry.to_source(geometry.to_network(box)), box)
    # A box reaching into the padding is clipped to the frame.
    np.testing.assert_allclose(geometry.to_source(np.array([[0, 0, 32, 32]])), [[0, 0, 128, 64]])
    assert geometry.source_region(np.zeros((32, 32))).shape == (16, 32)
    assert geometry.point_to_source(0, 8) == pytest.approx((1.5, 1.5))
    mask = np.zeros((64, 128), bool)
    mask[:, 64:] = True  # the right half of the frame
    net = geometry.mask_to_network(mask, (32, 32))
    assert not net[:8].any() and not net[24:].any()  # padding rows are background
    assert net[8:24, 16:].all() and not net[8:24, :16].any()


def test_rule_arguments_are_checked():
    with pytest.raises(ValueError, match="threshold"):
        heatmap_to_detections(blob_map(), threshold=1.5)
    with pytest.raises(ValueError, match="keep"):
        heatmap_to_detections(blob_map(), keep="biggest")


def test_detections_are_validated_and_round_trip_through_supervision():
    with pytest.raises(ValueError, match="N x 4"):
        Detections(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="one value per box"):
        Detections(np.zeros((2, 4)), np.zeros(3))
    d = Detections(np.array([[0, 0, 4, 4], [1, 1, 5, 5]]), [0.9, 0.8], class_id=[3, 4], tracker_id=[1, -1])
    back = Detections.from_supervision(d.to_supervision())
    np.testing.assert_array_equal(back.xyxy, d.xyxy)
    np.testing.assert_array_equal(back.tracker_id, [1, -1])
    np.testing.assert_array_equal(d[1].class_id, [4])


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
