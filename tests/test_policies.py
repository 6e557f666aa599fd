"""Resolution policies: which R work, what prepare changes, and that prompts map consistently."""

from __future__ import annotations

import pytest
import torch

import adaptsam
from adaptsam.errors import IncompatibleError
from adaptsam.policies.native import NativePolicy
from adaptsam.policies.upsample import UpsamplePolicy
from adaptsam.testing import random_batch


@pytest.mark.parametrize(("backbone", "resolution", "match"), [
    ("vit_test", 72, "multiple of 16.*64 or 80"),
    ("lite_medsam_test", 66, "multiple of 4"),
    ("vit_test", 512, r"outside \[32, 256\]"),
    ("vit_test", 16, r"outside \[32, 256\]"),
])
def test_unusable_resolutions_are_refused_with_the_reason(backbone, resolution, match):
    with pytest.raises(IncompatibleError, match=match):
        adaptsam.create_model(backbone, policy="native", resolution=resolution)


def test_upsample_accepts_any_resolution_in_range():
    model = adaptsam.create_model("vit_test", policy="upsample", resolution=72)
    images, boxes = random_batch(model)
    assert model(images, boxes=boxes).logits.shape == (2, 1, 72, 72)


@pytest.mark.parametrize("backbone", ["vit_test", "tinyvit_test", "lite_medsam_test"])
def test_native_sets_token_grid_and_prompt_encoder(backbone):
    model = adaptsam.create_model(backbone, policy="native", resolution=64)
    grid = 64 // model.patch_stride
    assert model.prompt_encoder.image_embedding_size == (grid, grid)
    assert model.prompt_encoder.input_image_size == (64, 64)
    with torch.no_grad():
        embeddings = model.encode(torch.rand(1, 3, 64, 64))
    assert embeddings.shape[-2:] == (grid, grid)


@pytest.mark.parametrize("backbone", ["vit_test", "tinyvit_test", "lite_medsam_test"])
def test_native_at_design_size_equals_upsample(backbone):
    torch.manual_seed(1)
    native = adaptsam.create_model(backbone, policy="native")
    upsample = adaptsam.create_model(backbone, policy="upsample")
    upsample.load_state_dict(native.state_dict())
    images, boxes = random_batch(native)
    with torch.no_grad():
        a, b = native(images, boxes=boxes), upsample(images, boxes=boxes)
    assert (a.logits - b.logits).abs().max() < 1e-5


def test_upsample_maps_prompts_to_the_design_size():
    model = adaptsam.create_model("vit_test", policy="upsample", resolution=64)
    mapped = model.policy.prompts_to_model(adaptsam.model.Prompts(boxes=torch.tensor([[[8., 4., 32., 60.]]])), model)
    # boxes map to the pixels they cover (s = 4): [x0·s, y0·s, (x1+1)·s−1, (y1+1)·s−1]
    assert torch.equal(mapped.boxes, torch.tensor([[[32., 16., 131., 243.]]]))
    native = adaptsam.create_model("vit_test", policy="native", resolution=64)
    same = native.policy.prompts_to_model(adaptsam.model.Prompts(boxes=torch.tensor([[[8., 4., 32., 60.]]])), native)
    assert torch.equal(same.boxes, torch.tensor([[[8., 4., 32., 60.]]]))


def test_position_embedding_is_interpolated_bicubically():
    encoder = adaptsam.create_model("vit_test", policy="upsample").image_encoder
    with torch.no_grad():
        encoder.pos_embed.copy_(torch.linspace(0, 1, 16).view(1, 1, 16, 1).expand(1, 16, 16, 64))
    expected = torch.nn.functional.interpolate(encoder.pos_embed.permute(0, 3, 1, 2), size=(4, 4),
                                               mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    encoder.set_input_size(64)
    assert encoder.pos_embed.shape == (1, 4, 4, 64) and encoder.pos_embed.requires_grad
    assert torch.allclose(encoder.pos_embed, expected)


def test_match_window_tiles_the_grid_without_padding():
    model = adaptsam.create_model("vit_test", policy=NativePolicy(match_window=True), resolution=96)
    windows = {blk.window_size for blk in model.image_encoder.blocks if blk.window_size > 0}
    assert windows == {6}  # grid 6: the divisor of 6 closest to the design window 8
    images, boxes = random_batch(model)
    assert torch.isfinite(model(images, boxes=boxes).logits).all()
    tiny = adaptsam.create_model("tinyvit_test", policy=NativePolicy(match_window=True), resolution=64)
    assert all(b.input_resolution[0] % b.window_size == 0 for b in tiny.image_encoder.attention_blocks())


def test_a_prepared_model_refuses_another_policy():
    model = adaptsam.create_model("vit_test", policy="native", resolution=64)
    with pytest.raises(IncompatibleError, match="already prepared"):
        UpsamplePolicy().prepare(model, 64)


def test_policy_options_are_validated_at_construction():
    with pytest.raises(ValueError, match="interpolation"):
        UpsamplePolicy(interpolation="nearest-ish")


def test_images_of_the_wrong_size_are_refused():
    model = adaptsam.create_model("vit_test", policy="native", resolution=64)
    with pytest.raises(ValueError, match="B×3×64×64.*R=64"):
        model(torch.rand(1, 3, 32, 32), boxes=torch.tensor([[1., 1., 10., 10.]]))


def test_k_prompts_per_image_and_no_prompts():
    model = adaptsam.create_model("vit_test", policy="native", resolution=64)
    images = torch.rand(2, 3, 64, 64)
    boxes = torch.tensor([[[1., 1., 20., 20.], [30., 30., 60., 60.]], [[5., 5., 25., 25.], [0., 0., 63., 63.]]])
    with torch.no_grad():
        both = model(images, boxes=boxes)
        single = model(images, boxes=boxes[:, 1])
        unprompted = model(images)
        points = model(images, points=torch.tensor([[[10., 10.]], [[20., 20.]]]))
        multi = model(images, boxes=boxes[:, 0], multimask=True)
    assert both.logits.shape == (2, 2, 64, 64)
    assert torch.allclose(both.logits[:, 1:], single.logits, atol=1e-5)
    assert unprompted.logits.shape == points.logits.shape == (2, 1, 64, 64)
    assert multi.logits.shape == (2, 3, 64, 64) and multi.iou.shape == (2, 3)
