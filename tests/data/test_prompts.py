"""Prompts from masks: boxes (MedSAM convention), jitter bounds, points inside the object."""

from __future__ import annotations

import numpy as np
import pytest

from adaptsam.data import IGNORE_INDEX, box_from_mask, point_from_box, point_from_mask, present_classes


def rectangle_mask() -> np.ndarray:
    mask = np.zeros((20, 30), np.int64)
    mask[4:9, 10:17] = 1  # rows 4..8, columns 10..16
    mask[15, 0:3] = 2
    mask[0, :] = IGNORE_INDEX
    return mask


def test_box_of_a_rectangle():
    box = box_from_mask(rectangle_mask(), 1)
    assert box.dtype == np.float32 and box.tolist() == [10, 4, 16, 8]
    assert box_from_mask(rectangle_mask(), 2).tolist() == [0, 15, 2, 15]
    assert box_from_mask(rectangle_mask(), 3) is None


def test_ignore_is_never_a_class():
    mask = np.full((5, 5), IGNORE_INDEX)
    mask[2, 2] = 1
    assert box_from_mask(mask, 1).tolist() == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="ignore"):
        box_from_mask(mask, IGNORE_INDEX)
    with pytest.raises(ValueError, match="ignore"):
        point_from_mask(mask, IGNORE_INDEX)
    assert present_classes(mask, [1, 2, IGNORE_INDEX]) == [1]


def test_jitter_stays_within_bounds_and_image():
    mask = rectangle_mask()
    exact = np.array([10, 4, 16, 8], dtype=np.float64)
    rng = np.random.default_rng(0)
    boxes = np.stack([box_from_mask(mask, 1, jitter=3.0, rng=rng) for _ in range(500)])
    assert np.abs(boxes - exact).max() <= 3.0 + 1e-5
    assert np.abs(boxes - exact).max() > 2.5  # the whole range is used
    assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()
    corner = box_from_mask(mask, 2, jitter=10.0, rng=np.random.default_rng(1))
    assert corner.min() >= 0 and corner[2] <= 29 and corner[3] <= 19
    again = box_from_mask(mask, 1, jitter=3.0, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(again, boxes[0])
    with pytest.raises(ValueError, match="jitter"):
        box_from_mask(mask, 1, jitter=-1)


def test_centre_of_an_l_shape_is_inside():
    mask = np.zeros((40, 40), np.int64)
    mask[5:35, 5:10] = 1  # vertical bar
    mask[30:35, 5:35] = 1  # horizontal bar: centre of mass (≈ 15, 25) falls outside the L
    cx, cy = mask.nonzero()[1].mean(), mask.nonzero()[0].mean()
    assert mask[round(cy), round(cx)] == 0
    x, y = point_from_mask(mask, 1)
    assert mask[int(y), int(x)] == 1 and float(x) == int(x) and float(y) == int(y)


def test_centre_of_a_convex_object_is_its_centre_of_mass():
    mask = np.zeros((20, 20), np.int64)
    mask[2:7, 10:19] = 1
    np.testing.assert_allclose(point_from_mask(mask, 1), [14.0, 4.0])


def test_centre_of_a_ring_is_on_the_ring():
    rows, cols = np.mgrid[:41, :41]
    radius = np.hypot(rows - 20, cols - 20)
    mask = ((radius > 12) & (radius < 18)).astype(np.int64)
    x, y = point_from_mask(mask, 1).astype(int)
    assert mask[y, x] == 1 and 14 <= np.hypot(x - 20, y - 20) <= 16  # the middle of the ring's band


def test_random_points_are_inside_and_seeded():
    mask = rectangle_mask()
    rng = np.random.default_rng(3)
    points = [point_from_mask(mask, 1, mode="random", rng=rng) for _ in range(50)]
    assert all(mask[int(y), int(x)] == 1 for x, y in points)
    assert len({tuple(p) for p in points}) > 10
    np.testing.assert_array_equal(point_from_mask(mask, 1, mode="random", rng=np.random.default_rng(3)), points[0])
    assert point_from_mask(mask, 5, mode="random") is None
    with pytest.raises(ValueError, match="center, random"):
        point_from_mask(mask, 1, mode="middle")


def test_point_from_box():
    np.testing.assert_array_equal(point_from_box(np.array([10, 4, 16, 8])), [13, 6])
    assert point_from_box([0, 0, 1, 1]).dtype == np.float32
    with pytest.raises(ValueError):
        point_from_box([1, 2, 3])


def test_present_classes_keeps_order_for_few_and_many_classes():
    mask = np.array([[0, 3, 3], [7, 255, 1]])
    assert present_classes(mask, (1,)) == [1]
    assert present_classes(mask, (7, 1, 2)) == [7, 1]
    assert present_classes(mask, tuple(range(11))) == [0, 1, 3, 7]
    assert present_classes(mask, (10, 9, 8, 7, 6, 5)) == [7]


def test_fallback_depth_without_scipy_picks_an_inner_pixel():
    from adaptsam.data.prompts import _chamfer_distance

    inside = np.zeros((9, 9), bool)
    inside[1:8, 1:8] = True
    depth = _chamfer_distance(inside)
    assert np.unravel_index(depth.argmax(), depth.shape) == (4, 4) and depth[0, 0] == 0 and depth[1, 1] == 1
