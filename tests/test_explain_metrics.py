"""WSOL and faithfulness metrics on hand-made maps whose right answer is known."""

import subprocess
import sys

import numpy as np
import pytest

from edge_xcnn.explain.metrics import (
    BoxAccumulator,
    PxAPAccumulator,
    average_ranks,
    box_mask,
    cam_thresholds,
    causal_auc,
    causal_order,
    causal_plan,
    normalize_scoremap,
    peak_point,
    pointing_hit,
    scoremap_boxes,
    spearman,
    ssim,
    wsol_iou,
)


def blobs(shape=(32, 32), rects=((8, 8, 16, 24, 1.0),)):
    """A map of zeros with rectangles (y1, x1, y2, x2, value) painted on it."""
    cam = np.zeros(shape)
    for y1, x1, y2, x2, value in rects:
        cam[y1:y2, x1:x2] = value
    return cam


def test_normalize_scoremap_like_wsolevaluation():
    np.testing.assert_allclose(normalize_scoremap(np.array([[2.0, 4.0], [3.0, 6.0]])), [[0, 0.5], [0.25, 1]])
    assert not normalize_scoremap(np.full((3, 3), 7.0)).any()  # constant: zeros
    assert not normalize_scoremap(np.array([[np.nan, 1.0], [0.0, 2.0]])).any()  # NaN: zeros
    assert normalize_scoremap(np.ones((1, 4, 5))).shape == (4, 5)
    with pytest.raises(ValueError, match="H x W"):
        normalize_scoremap(np.ones((2, 3, 4)))


def test_thresholds_are_0_to_099():
    thresholds = cam_thresholds()
    assert len(thresholds) == 100 and thresholds[0] == 0 and thresholds[-1] == pytest.approx(0.99)


def test_boxes_per_threshold_follow_the_reference_code():
    # A blob touching the right and bottom edges: x1, y1 are clipped to width - 1, height - 1.
    cam = blobs(rects=((20, 25, 32, 32, 1.0),))
    boxes, counts = scoremap_boxes(cam, [0.0, 0.5])
    assert counts == [1, 1]
    np.testing.assert_array_equal(boxes[0], [[25, 20, 31, 31]])
    # Pixels must be > int(t * max): at t = 0.99 the threshold is 252 and 255 survives.
    boxes, _ = scoremap_boxes(blobs(), [0.99])
    np.testing.assert_array_equal(boxes[0], [[8, 8, 24, 16]])  # x, y, x + w, y + h
    # Nothing above the threshold: the single box 0, 0, 0, 0.
    boxes, counts = scoremap_boxes(np.zeros((16, 16)), [0.0])
    assert counts == [1] and boxes[0].tolist() == [[0, 0, 0, 0]]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        scoremap_boxes(blobs() * 2, [0.5])


def test_wsol_iou_counts_pixels_inclusively():
    assert wsol_iou([[0, 0, 0, 0]], [[0, 0, 0, 0]])[0, 0] == 1.0  # one pixel
    assert wsol_iou([[0, 0, 9, 9]], [[20, 20, 29, 29]])[0, 0] == 0.0
    # 10x10 inclusive vs 10x5 inclusive inside it: 50 / 100.
    assert wsol_iou([[0, 0, 9, 9]], [[0, 0, 9, 4]])[0, 0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="x1 >= x0"):
        wsol_iou([[5, 0, 0, 5]], [[0, 0, 1, 1]])


def test_maxboxacc_picks_the_largest_contour_and_v2_every_contour():
    # Two blobs of the same value: a big wrong one and a small right one.
    cam = blobs(rects=((0, 0, 12, 20, 1.0), (20, 20, 28, 28, 1.0)))
    truth = np.array([[20, 20, 28, 28]])
    v1, v2 = BoxAccumulator(multi_contour=False), BoxAccumulator(multi_contour=True)
    v1.accumulate(cam, truth)
    v2.accumulate(cam, truth)
    assert v1.compute()["MaxBoxAcc"] == 0.0  # the largest contour is always the wrong blob
    result = v2.compute()
    assert result["MaxBoxAccV2"] == 1.0
    assert result["MaxBoxAccV2_IoU30"] == result["MaxBoxAccV2_IoU70"] == 1.0


def test_maxboxacc_sweeps_the_threshold_to_drop_a_weaker_blob():
    # The wrong blob is bigger but weaker (0.4): above t = 0.4 only the right blob is left.
    cam = blobs(rects=((0, 0, 12, 20, 0.4), (20, 20, 28, 28, 1.0)))
    acc = BoxAccumulator()
    acc.accumulate(cam, np.array([[20, 20, 28, 28]]))
    result = acc.compute()
    assert result["MaxBoxAcc"] == 1.0
    assert result["best_threshold_50"] == pytest.approx(0.4)  # first threshold where it is right


def test_maxboxaccv2_averages_iou_30_50_70():
    # Estimated box 10..30 x 10..20 (21 x 11 inclusive), truth 10..22 x 10..20 (13 x 11): IoU 143 / 231 = 0.62.
    cam = blobs(rects=((10, 10, 20, 30, 1.0),))
    acc = BoxAccumulator(multi_contour=True)
    acc.accumulate(cam, np.array([[10, 10, 22, 20]]))
    result = acc.compute()
    assert (result["MaxBoxAccV2_IoU30"], result["MaxBoxAccV2_IoU50"], result["MaxBoxAccV2_IoU70"]) == (1, 1, 0)
    assert result["MaxBoxAccV2"] == pytest.approx(2 / 3)


def test_maxboxacc_takes_one_threshold_for_the_whole_data_set():
    # Image A is right only at low thresholds (its object is the weak part), image B only at high ones.
    a = blobs(rects=((0, 0, 16, 16, 0.3), (4, 4, 8, 8, 1.0)))  # object 0..16; at t >= 0.3 only the core
    b = blobs(rects=((0, 0, 16, 16, 0.3), (20, 20, 30, 30, 1.0)))  # object 20..30, wrong big blob below 0.3
    acc = BoxAccumulator()
    acc.accumulate(a, np.array([[0, 0, 16, 16]]))
    acc.accumulate(b, np.array([[20, 20, 30, 30]]))
    assert acc.compute()["MaxBoxAcc"] == 0.5  # never both at one threshold
    with pytest.raises(ValueError, match="no image"):
        BoxAccumulator().compute()


def test_pxap_perfect_constant_and_hand_computed():
    mask = np.zeros((8, 8), bool)
    mask[2:4, 2:6] = True  # 8 of 64 pixels
    perfect = PxAPAccumulator()
    perfect.accumulate(mask.astype(float), mask)
    assert perfect.compute() == pytest.approx(1.0)
    constant = PxAPAccumulator()
    constant.accumulate(np.ones((8, 8)), mask)
    assert constant.compute() == pytest.approx(8 / 64)  # precision of "everything", recall 1
    # Four pixels, scores 1 (object), 0.75 (background), 0.5 (object), 0 (background):
    # recall 0.5 at precision 1, then recall 1 at precision 2/3 -> AP = 0.5 * 1 + 0.5 * 2/3 = 5/6.
    graded = PxAPAccumulator()
    graded.accumulate(np.array([[1.0, 0.75, 0.5, 0.0]]), np.array([[True, False, True, False]]))
    assert graded.compute() == pytest.approx(5 / 6)
    empty = PxAPAccumulator()
    empty.accumulate(np.ones((4, 4)), np.zeros((4, 4), bool))
    assert np.isnan(empty.compute())


def test_pxap_of_a_batch_counts_exactly_as_one_image_at_a_time():
    rng = np.random.default_rng(0)
    cams = rng.normal(size=(12, 16, 16))
    cams[3] = 2.0  # a constant map: all zeros, as normalize_scoremap makes it
    cams[5, 0, 0] = np.nan  # a NaN map: all zeros as well
    masks = rng.random((12, 16, 16)) < 0.2
    one_by_one, batch = PxAPAccumulator(), PxAPAccumulator()
    for cam, mask in zip(cams, masks, strict=True):
        one_by_one.accumulate(cam, mask)
    batch.accumulate_many(cams, masks)
    np.testing.assert_array_equal(batch.true_hist, one_by_one.true_hist)
    np.testing.assert_array_equal(batch.false_hist, one_by_one.false_hist)
    assert batch.compute() == one_by_one.compute()
    with pytest.raises(ValueError, match="N x H x W"):
        batch.accumulate_many(cams[0], masks[0])


def test_pointing_game_tolerance_is_strict_and_empty_masks_miss():
    mask = np.zeros((64, 64), bool)
    mask[10, 20] = True
    assert pointing_hit(mask, (20, 24))  # distance 14 < 15
    assert not pointing_hit(mask, (20, 25))  # distance 15 is not < 15
    assert pointing_hit(mask, (20, 10), tolerance=1) and not pointing_hit(mask, (21, 10), tolerance=1)
    assert not pointing_hit(np.zeros((64, 64), bool), (20, 10))
    assert peak_point(blobs(rects=((5, 7, 6, 8, 1.0),))) == (7, 5)
    assert peak_point(np.ones((4, 4))) == (0, 0)  # ties: first in raster order, as argmax


def test_box_mask_fills_exclusive_box():
    mask = box_mask(np.array([2, 1, 5, 3]), (4, 6))
    assert mask.sum() == 6 and mask[1:3, 2:5].all()


def test_causal_auc_plan_and_order():
    assert causal_auc(np.ones(5)) == pytest.approx(1.0)
    assert causal_auc(np.linspace(1, 0, 11)) == pytest.approx(0.5)
    np.testing.assert_allclose(causal_auc(np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])), [0.25, 0.25])
    plan = causal_plan(64 * 64, 64)
    assert len(plan) == 64 and all(s.stop - s.start == 64 for s in plan)
    assert [s.stop - s.start for s in causal_plan(10, 3)] == [4, 4, 2]
    assert causal_order(np.array([[0.5, 1.0], [0.5, 0.2]])).tolist() == [1, 0, 2, 3]  # ties keep raster order
    with pytest.raises(ValueError):
        causal_auc(np.ones(1))


def test_map_similarity_for_the_sanity_check():
    a = np.arange(64, dtype=float).reshape(8, 8)
    assert spearman(a, a**2) == pytest.approx(1.0)  # monotone: same ranks
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.ones((8, 8))) == 0.0  # a constant map has no ranks
    ties = np.array([3.0, 1.0, 3.0, 2.0, 3.0])
    np.testing.assert_array_equal(average_ranks(ties), [4, 1, 4, 2, 4])  # scipy.stats.rankdata's
    assert ssim(a, 3 * a + 1) == pytest.approx(1.0)  # normalized first
    assert ssim(a, np.random.default_rng(0).random((8, 8))) < 0.5


def test_metrics_need_no_torch():
    code = "import sys; sys.modules['torch'] = None; import edge_xcnn.explain.metrics"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
