"""degrade: longest side R, area averaging down, bicubic up, nearest masks, padding to R×R."""

from __future__ import annotations

import numpy as np
import pytest

from adaptsam.data import IGNORE_INDEX, degrade


def test_shapes_padding_and_valid_hw():
    rng = np.random.default_rng(0)
    image = rng.integers(1, 256, size=(50, 100, 3), dtype=np.uint8)
    mask = rng.integers(0, 3, size=(50, 100))
    out = degrade(image, mask, 20)
    assert out.image.shape == (20, 20, 3) and out.image.dtype == np.uint8
    assert out.mask.shape == (20, 20) and out.mask.dtype == np.int64
    assert out.valid_hw == (10, 20) and out.scale == pytest.approx(0.2)
    assert (out.image[10:] == 0).all() and (out.mask[10:] == IGNORE_INDEX).all()
    assert (out.mask[:10] != IGNORE_INDEX).all() and set(np.unique(out.mask[:10])) <= {0, 1, 2}


def test_portrait_pads_right():
    out = degrade(np.full((40, 10, 3), 9, np.uint8), np.ones((40, 10), np.int64), 8)
    assert out.valid_hw == (8, 2)
    assert (out.image[:, 2:] == 0).all() and (out.mask[:, 2:] == IGNORE_INDEX).all() and (out.mask[:, :2] == 1).all()


def test_shrinking_averages_areas():
    image = np.zeros((8, 8, 3), np.uint8)
    image[::2, ::2] = 200  # one bright pixel per 2×2 block: point sampling would give 0 or 200
    image[:4, 4:] += 40
    out = degrade(image, np.zeros((8, 8), np.int64), 4)
    expected = np.full((4, 4), 50, np.uint8)
    expected[:2, 2:] = 90
    np.testing.assert_array_equal(out.image[..., 0], expected)


def test_mask_nearest_keeps_labels():
    mask = np.zeros((64, 64), np.int64)
    mask[:, 32:] = 7
    mask[0:4, 0:4] = IGNORE_INDEX
    out = degrade(np.zeros((64, 64, 3), np.uint8), mask, 16)
    assert set(np.unique(out.mask)) == {0, 7, IGNORE_INDEX}
    assert (out.mask[:, :8] != 7).all() and (out.mask[:, 8:] == 7).all()


def test_enlarging_is_smooth():
    image = np.zeros((4, 8, 3), np.uint8)
    image[:, 4:] = 255
    out = degrade(image, np.zeros((4, 8), np.int64), 32)
    assert out.valid_hw == (16, 32) and out.scale == 4.0
    row = out.image[8, :, 0].astype(int)
    assert ((row > 10) & (row < 245)).sum() >= 2  # interpolated, not blocky
    assert row[0] <= 5 and row[-1] >= 250


def test_same_size_is_a_copy_plus_no_padding():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    out = degrade(image, np.ones((2, 3), np.int64), 3)
    np.testing.assert_array_equal(out.image[:2], image)
    assert out.valid_hw == (2, 3) and (out.mask[2] == IGNORE_INDEX).all()


@pytest.mark.parametrize("resolution", [0, -4, 1.5, True, "128", None])
def test_bad_resolution(resolution):
    with pytest.raises(ValueError, match="positive integer"):
        degrade(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.int64), resolution)


def test_bad_inputs():
    with pytest.raises(ValueError, match="mask of the image's size"):
        degrade(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.int64), 8)
    with pytest.raises(ValueError, match="uint8"):
        degrade(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.int64), 8)
    with pytest.raises(ValueError, match="mask values"):
        degrade(np.zeros((4, 4, 3), np.uint8), np.full((4, 4), 300), 8)
