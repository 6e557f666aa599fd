"""Prompts map exactly between resolutions (docs/conventions.md): boxes to the pixels they cover, points to
pixel centres, in one place (``adaptsam.data.prompts``) used by the policies and predict."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import adaptsam
from adaptsam.data.prompts import box_from_mask, map_boxes, map_points
from adaptsam.model import Prompts
from adaptsam.predict import ImagePrompts


def random_mask(rng: np.random.Generator, r: int) -> np.ndarray:
    """A few random rectangles and pixels (sometimes touching the border)."""
    mask = np.zeros((r, r), np.int64)
    for _ in range(int(rng.integers(1, 4))):
        y0, x0 = rng.integers(0, r, 2)
        h, w = rng.integers(1, r // 2 + 1, 2)
        mask[y0:y0 + h, x0:x0 + w] = 1
    return mask


@pytest.mark.parametrize("seed", range(40))
def test_the_mapped_box_is_the_box_of_the_upsampled_mask(seed):
    rng = np.random.default_rng(seed)
    r = int(rng.choice([8, 13, 32, 64, 128]))
    s = int(rng.choice([1, 2, 3, 4, 8, 16]))
    mask = random_mask(rng, r)
    big = mask.repeat(s, axis=0).repeat(s, axis=1)  # nearest-neighbour upsampling by s
    expected = box_from_mask(big, 1)
    mapped = map_boxes(box_from_mask(mask, 1), s)
    np.testing.assert_array_equal(mapped, expected)
    np.testing.assert_array_equal(map_boxes(torch.from_numpy(box_from_mask(mask, 1)), s).numpy(), expected)
    # and a pixel's centre maps to the centre of its s×s block
    ys, xs = np.nonzero(mask)
    block = np.zeros_like(big)
    block[ys[0] * s:(ys[0] + 1) * s, xs[0] * s:(xs[0] + 1) * s] = 1
    by, bx = np.nonzero(block)
    np.testing.assert_allclose(map_points(np.array([xs[0], ys[0]], float), s), [bx.mean(), by.mean()])


@pytest.mark.parametrize("s", [2, 4, 7, 16])
def test_going_down_and_back_up_is_the_identity_on_whole_blocks(s):
    boxes = np.array([[0, 0, s - 1, s - 1], [s, 2 * s, 5 * s - 1, 3 * s - 1]], float)  # whole s×s blocks
    down = map_boxes(boxes, 1 / s)
    np.testing.assert_allclose(down, [[0, 0, 0, 0], [1, 2, 4, 2]])
    np.testing.assert_allclose(map_boxes(down, s), boxes)
    points = np.array([[3.0, 5.0], [0.0, 0.0]])
    np.testing.assert_allclose(map_points(map_points(points, s), 1 / s), points)


def test_a_sub_pixel_box_never_turns_inside_out():
    box = map_boxes(np.array([5.0, 5.0, 5.0, 5.0]), 0.25)
    assert box[2] >= box[0] and box[3] >= box[1]


def test_per_image_scales_broadcast_over_prompts():
    boxes = torch.tensor([[[0.0, 0.0, 9.0, 4.0]], [[1.0, 1.0, 1.0, 1.0]]])  # B=2, K=1
    sx, sy = torch.tensor([[2.0], [4.0]]), torch.tensor([[3.0], [1.0]])
    out = map_boxes(boxes, sx, sy)
    assert out.tolist() == [[[0, 0, 19, 14]], [[4, 1, 7, 1]]]


def test_upsample_maps_boxes_and_points_to_covered_pixels_native_leaves_them():
    model = adaptsam.create_model("lite_medsam_test", policy="upsample", resolution=32)  # design 128: s = 4
    prompts = Prompts(boxes=torch.tensor([[[2.0, 3.0, 10.0, 31.0]]]),
                      point_coords=torch.tensor([[[[0.0, 31.0]]]]), point_labels=torch.ones(1, 1, 1))
    mapped = model.policy.prompts_to_model(prompts, model)
    assert mapped.boxes.tolist() == [[[8.0, 12.0, 43.0, 127.0]]]
    assert mapped.point_coords.tolist() == [[[[1.5, 125.5]]]]
    native = adaptsam.create_model("lite_medsam_test", policy="native", resolution=32)
    assert native.policy.prompts_to_model(prompts, native).boxes.tolist() == prompts.boxes.tolist()


def test_stretch_maps_each_image_by_its_own_content_size():
    model = adaptsam.create_model("lite_medsam_test", policy="upsample", resolution=32,
                                  policy_cfg={"framing": "stretch"})
    valid_hw = torch.tensor([[32, 16], [8, 32]])  # (h, w): x scale 128/16 = 8 and 4, y scale 4 and 16
    prompts = Prompts(boxes=torch.tensor([[[0.0, 0.0, 15.0, 31.0]], [[0.0, 0.0, 31.0, 7.0]]]))
    mapped = model.policy.prompts_to_model(prompts, model, valid_hw=valid_hw)
    assert mapped.boxes.tolist() == [[[0, 0, 127, 127]], [[0, 0, 127, 127]]]  # the content fills the square
    images = torch.zeros(2, 3, 32, 32)
    images[0, :, :, :16] = 1.0
    images[1, :, :8] = 1.0
    framed = model.policy.images_to_model(images, model, valid_hw=valid_hw)
    assert framed.shape == (2, 3, 128, 128) and bool((framed == 1).all())  # padding cropped away
    logits = torch.zeros(2, 1, 32, 32)  # decoder grid for design 128 at stride 4
    out = model.policy.logits_to_output(logits, model, valid_hw=valid_hw)
    assert (out[0, 0, :, :16] == 0).all() and (out[0, 0, :, 16:] < -10).all() and (out[1, 0, 8:] < -10).all()
    pad = adaptsam.create_model("lite_medsam_test", policy="upsample", resolution=32)
    assert pad.policy.prompts_to_model(prompts, pad, valid_hw=None).boxes[0, 0].tolist() == [0, 0, 63, 127]
    with torch.no_grad():  # the model passes valid_hw on, end to end
        assert model(images, boxes=prompts.boxes[:, 0], valid_hw=valid_hw).logits.shape == (2, 1, 32, 32)


def test_predict_maps_original_pixels_with_the_same_convention():
    prompts = ImagePrompts(boxes=np.array([[0.0, 0.0, 399.0, 199.0]]), points=np.array([[[2.0, 2.0, 1.0]]]))
    mapped = prompts.to_resolution((0.25, 0.25), (50, 100))  # a 400×200 image at longest side 100
    assert mapped.boxes.tolist() == [[[0.0, 0.0, 99.0, 49.0]]]
    assert mapped.point_coords.tolist() == [[[[0.125, 0.125]]]]


def test_prompts_scaled_uses_the_same_mapping():
    prompts = Prompts(boxes=torch.tensor([[[0.0, 2.0, 3.0, 5.0]]]), point_coords=torch.tensor([[[[1.0, 1.0]]]]))
    scaled = prompts.scaled(4)
    assert scaled.boxes.tolist() == [[[0.0, 8.0, 15.0, 23.0]]] and scaled.point_coords.tolist() == [[[[5.5, 5.5]]]]
