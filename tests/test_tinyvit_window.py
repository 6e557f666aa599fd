"""TinyViT ``match_window``: windows tile each stage's token grid, attention biases indexed by offset."""

from __future__ import annotations

import itertools

import pytest
import torch

import adaptsam
from adaptsam.backbones._tinyvit import bias_index, trained_offsets
from adaptsam.testing import random_batch, stale_attention_caches


def offsets_of(window: int) -> list[tuple[int, int]]:
    points = list(itertools.product(range(window), range(window)))
    return [(abs(a[0] - b[0]), abs(a[1] - b[1])) for a in points for b in points]


@pytest.mark.parametrize("trained", [4, 7, 14])
def test_the_trained_window_reproduces_upstream_indices(trained):
    model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64)
    if trained == 4:
        upstream = model.image_encoder.attention_blocks()[0].attn.attention_bias_idxs
        assert torch.equal(bias_index(4, 4), upstream)
    index, table = bias_index(trained, trained), trained_offsets(trained)
    assert index.flatten().tolist() == [table[o] for o in offsets_of(trained)]


@pytest.mark.parametrize(("window", "trained"), [(8, 14), (16, 14), (8, 7), (4, 7)])
def test_other_windows_use_the_bias_of_the_same_offset_clamped_to_the_trained_range(window, trained):
    table = trained_offsets(trained)
    top = trained - 1
    expected = [table[(min(dy, top), min(dx, top))] for dy, dx in offsets_of(window)]
    assert bias_index(window, trained).flatten().tolist() == expected


def test_real_lite_medsam_windows_tile_every_grid_and_biases_stay_fresh():
    model = adaptsam.create_model("lite_medsam", policy="native", resolution=128,
                                  policy_cfg={"match_window": True})
    blocks = model.image_encoder.attention_blocks()
    assert {(int(b.input_resolution[0]), b.trained_window_size, b.window_size) for b in blocks} == {
        (64, 7, 8), (32, 14, 16), (32, 7, 8)}
    assert all(b.input_resolution[0] % b.window_size == 0 for b in blocks)
    assert all(b.attn.attention_bias_idxs.shape == (b.window_size ** 2,) * 2 for b in blocks)
    assert model.image_encoder.trained_window_size == 14
    assert stale_attention_caches(model.eval()) == []
    images, boxes = random_batch(model, 1)
    with torch.no_grad():
        assert model(images, boxes=boxes).logits.shape == (1, 1, 128, 128)


def test_matching_a_window_that_already_tiles_the_grid_changes_nothing():
    """lite_medsam_test trains 4-windows; at R=64 its grids (32, 16, 16) are multiples of 4."""
    plain = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64).eval()
    matched = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64,
                                    policy_cfg={"match_window": True}).eval()
    images, boxes = random_batch(plain)
    with torch.no_grad():
        assert torch.equal(plain(images, boxes=boxes).logits, matched(images, boxes=boxes).logits)


def test_matched_windows_equal_an_upstream_tinyvit_built_with_those_windows():
    """lite_medsam_test (trained windows 4) at R=40: stage grids 20, 10, 10 → windows 4, 5, 5. The reference
    is the upstream TinyViT built at 40 with windows (4, 4, 5, 5), its 5-window bias tables filled from the
    trained 4-window tables by offset (clamped): the matched model must compute exactly that."""
    from dataclasses import replace

    from adaptsam.backbones.lite_medsam import LITE_MEDSAM_TEST, LiteMedSamTinyViT

    matched = adaptsam.create_model("lite_medsam_test", policy="native", resolution=40,
                                    policy_cfg={"match_window": True}).eval()
    encoder = matched.image_encoder
    assert [b.window_size for b in encoder.attention_blocks()] == [4, 5, 5]
    reference = LiteMedSamTinyViT(**replace(LITE_MEDSAM_TEST, img_size=40, window_sizes=(4, 4, 5, 5)).encoder_kwargs())
    state = encoder.state_dict()
    for name, block in zip([n for n, m in reference.named_modules() if hasattr(m, "window_size") and
                            hasattr(m, "attn")], [b for b in reference.modules() if hasattr(b, "window_size") and
                                                  hasattr(b, "attn")]):
        key = f"{name}.attn.attention_biases"
        trained, window = state[key], block.window_size
        table, top = trained_offsets(4), 3
        new = trained_offsets(window)
        filled = torch.empty(trained.shape[0], len(new))
        for (dy, dx), column in new.items():
            filled[:, column] = trained[:, table[(min(dy, top), min(dx, top))]]
        state[key] = filled
    reference.load_state_dict(state, strict=True)
    reference.eval()
    images = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        x = matched.info.input_recipe.apply(images)
        assert torch.allclose(encoder(x), reference(x), atol=1e-5, rtol=0)
        unmatched = adaptsam.create_model("lite_medsam_test", policy="native", resolution=40).eval()
        assert not torch.allclose(unmatched.image_encoder(x), reference(x), atol=1e-3)  # padding did change it
