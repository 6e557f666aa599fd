"""Post-processing steps on constructed masks whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adaptsam.postprocess import (
    PostprocessConfig,
    class_labels,
    clean_label_map,
    fill_small_holes,
    keep_largest_component,
    mask_iou,
    mask_nms,
    postprocess_masks,
    remove_small_components,
    upsample_logits,
)


def disc(size: int, cy: float, cx: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2


def square(size: int, y0: int, x0: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[y0:y0 + side, x0:x0 + side] = True
    return mask


def test_a_three_pixel_speck_is_removed_and_the_object_kept():
    obj = square(40, 5, 5, 20)
    speck = np.zeros_like(obj)
    speck[35, 35:38] = True
    cleaned = remove_small_components(obj | speck, min_area=5)
    assert np.array_equal(cleaned, obj)
    assert np.array_equal(remove_small_components(obj | speck, min_area=0), obj | speck)


def test_connectivity_decides_whether_diagonal_pixels_are_one_component():
    mask = np.zeros((10, 10), dtype=bool)
    mask[2, 2] = mask[3, 3] = True  # touching only at a corner
    assert not remove_small_components(mask, min_area=2, connectivity=1).any()
    assert np.array_equal(remove_small_components(mask, min_area=2, connectivity=2), mask)


def test_a_small_hole_is_filled_a_large_one_and_the_border_region_are_not():
    ring = square(50, 5, 5, 20)
    ring[12:15, 12:15] = False  # 9-pixel hole
    filled = fill_small_holes(ring, max_area=10)
    assert np.array_equal(filled, square(50, 5, 5, 20))
    assert np.array_equal(fill_small_holes(ring, max_area=9), ring)  # "smaller than": 9 is not < 9
    frame = square(50, 0, 0, 50)
    frame[10:40, 10:40] = False  # a 900-pixel hole
    assert np.array_equal(fill_small_holes(frame, max_area=100), frame)
    u_shape = square(50, 10, 10, 20)
    u_shape[10:25, 15:25] = False  # the inside of the U opens to the background above: not a hole
    assert np.array_equal(fill_small_holes(u_shape, max_area=10_000), u_shape)
    outside = square(20, 0, 0, 10)  # the background touches the border: never a hole
    assert np.array_equal(fill_small_holes(outside, max_area=10_000), outside)


def test_keep_largest_component_keeps_only_the_biggest():
    big, small = square(60, 2, 2, 20), square(60, 40, 40, 10)
    assert np.array_equal(keep_largest_component(big | small), big)
    assert not keep_largest_component(np.zeros((5, 5), bool)).any()


def test_mask_iou_of_half_overlapping_squares_is_one_third():
    a, b = square(30, 0, 0, 10), square(30, 0, 5, 10)
    iou = mask_iou(np.stack([a, b, np.zeros_like(a)]))
    assert iou[0, 1] == pytest.approx(50 / 150)
    assert iou[0, 0] == pytest.approx(1.0)
    assert iou[2, 2] == 0.0  # empty vs empty is not a duplicate of anything


def test_two_overlapping_discs_lose_the_lower_scored_one_a_separate_disc_stays():
    first, second, apart = disc(64, 20, 20, 10), disc(64, 21, 21, 10), disc(64, 50, 50, 8)
    masks = np.stack([first, second, apart])
    assert mask_iou(masks)[0, 1] > 0.8
    assert mask_nms(masks, [0.9, 0.8, 0.1], iou_threshold=0.5).tolist() == [0, 2]
    assert mask_nms(masks, [0.7, 0.8, 0.1], iou_threshold=0.5).tolist() == [1, 2]
    assert mask_nms(masks, [0.9, 0.8, 0.1], iou_threshold=0.95).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="one score per mask"):
        mask_nms(masks, [0.5], iou_threshold=0.5)


def test_postprocess_masks_cleans_then_suppresses_and_keeps_indices():
    speck = np.zeros((64, 64), bool)
    speck[60, 60] = True
    first, second = disc(64, 20, 20, 10) | speck, disc(64, 21, 21, 10)
    config = PostprocessConfig(min_component_area=4, nms_iou=0.5)
    masks, kept = postprocess_masks(np.stack([first, second]), [0.5, 0.9], config)
    assert masks.shape == (2, 64, 64)
    assert not masks[0, 60, 60]
    assert kept.tolist() == [False, True]


def test_upsample_logits_crops_the_padding_and_resizes_logits_to_the_original_size():
    logits = torch.full((1, 8, 8), -5.0)
    logits[:, :, 6:] = 100.0  # padding columns (content is 8 rows × 6 columns) must not leak in
    logits[:, :4, :3] = 5.0
    out = upsample_logits(logits, valid_hw=(8, 6), size_hw=(40, 30))
    assert out.shape == (1, 40, 30)
    mask = (out > 0)[0]
    assert not mask[:, 25:].any()
    assert mask[:18, :13].all() and not mask[22:].any() and not mask[:, 17:].any()
    ramp = torch.linspace(-1, 1, 8).repeat(8, 1)[None]  # x-ramp: the boundary lands between R-pixels
    crossing = (upsample_logits(ramp, (8, 8), (64, 64))[0, 0] > 0).float().argmax()
    assert int(crossing) == 32
    with pytest.raises(ValueError, match="valid region"):
        upsample_logits(logits, valid_hw=(9, 6), size_hw=(40, 30))


def test_class_labels_takes_the_argmax_with_a_background_threshold():
    logits = torch.full((3, 2, 2), -10.0)
    logits[0, 0, 0] = 3.0
    logits[1, 0, 0] = 1.0
    logits[2, 0, 1] = 0.5
    logits[1, 1, 1] = -0.1  # best probability 0.475 < 0.5
    labels = class_labels(logits, class_ids=[1, 2, 3], threshold=0.5, background=0)
    assert labels.tolist() == [[1, 3], [0, 0]]


def test_class_labels_agree_with_the_class_prompt_head():
    from adaptsam.adapters.class_prompt import ClassPrompts

    head = ClassPrompts((1, 2, 4), tokens=2, dim=8, threshold=0.4, trainable=False)
    logits = torch.randn(2, 3, 16, 16) * 3
    expected = head.labels(logits)
    got = class_labels(logits, [1, 2, 4], 0.4, head.background_label)
    assert torch.equal(got, expected)


def test_label_maps_are_cleaned_per_class():
    labels = np.zeros((40, 40), dtype=np.int64)
    labels[5:25, 5:25] = 1
    labels[12:14, 12:14] = 0  # small background hole in class 1: filled
    labels[16:18, 16:18] = 2  # class 2 region inside class 1: a real region, kept (and not a removable speck)
    labels[35, 35] = 2  # class 2 speck: removed
    cleaned = clean_label_map(labels, PostprocessConfig(min_component_area=3, max_hole_area=10), background=0)
    assert (cleaned[12:14, 12:14] == 1).all()
    assert (cleaned[16:18, 16:18] == 2).all()
    assert cleaned[35, 35] == 0


@pytest.mark.parametrize(("options", "match"), [
    ({"min_component_area": -1}, "min_component_area"),
    ({"max_hole_area": 2.5}, "max_hole_area"),
    ({"nms_iou": 0.0}, "nms_iou"),
    ({"connectivity": 3}, "connectivity"),
    ({"class_threshold": 1.0}, "class_threshold"),
])
def test_bad_postprocess_options_are_refused_with_the_expected_range(options, match):
    with pytest.raises(ValueError, match=match):
        PostprocessConfig(**options)
