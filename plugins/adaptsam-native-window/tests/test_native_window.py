"""native_window: forward checks under the policy, windows that tile the grid, a clear error on TinyViT."""

from __future__ import annotations

import pytest
import torch
from adaptsam_native_window import NativeWindowPolicy, padding_fraction

import adaptsam
from adaptsam import registry
from adaptsam.errors import IncompatibleError
from adaptsam.policies.native import NativePolicy
from adaptsam.testing import check_adapter, check_backbone, random_batch


def windows(model) -> set[int]:
    return {blk.window_size for blk in model.image_encoder.blocks if blk.window_size > 0}


def test_registered_through_its_entry_point():
    assert "native_window" in adaptsam.list_policies()
    entry = registry.policies.entry("native_window")
    assert entry.origin == "adaptsam-native-window" and entry.load() is NativeWindowPolicy


def test_backbone_checks_pass_under_native_window():
    check_backbone("vit_test", resolutions=(64, 96), policies=("native_window",))


@pytest.mark.parametrize(("resolution", "window"), [(64, 4), (96, 6), (160, 10), (128, 8)])
def test_windows_tile_the_token_grid(resolution, window):
    model = adaptsam.create_model("vit_test", policy="native_window", resolution=resolution)
    grid = resolution // model.patch_stride
    assert windows(model) == {window} and grid % window == 0
    assert sum(blk.window_size == 0 for blk in model.image_encoder.blocks) == 1  # the global block stays global


def test_window_changes_only_when_padding_is_worth_removing():
    # vit_test: design window 8; R=96 → 6×6 grid padded to 8×8, 44 % padding
    assert padding_fraction(6, 8) == pytest.approx(1 - 36 / 64)
    kept = adaptsam.create_model("vit_test", policy="native_window", policy_cfg={"min_padding": 0.5}, resolution=96)
    assert windows(kept) == {8}
    # SAM ViT-B at R=1024: 64 → 70, 16 % padding: the design window stays by default
    assert padding_fraction(64, 14) < NativeWindowPolicy().min_padding
    assert padding_fraction(16, 14) == pytest.approx(1 - 256 / 784)


def test_same_model_as_the_builtin_match_window():
    ours = adaptsam.create_model("vit_test", policy="native_window", resolution=96)
    builtin = adaptsam.create_model("vit_test", policy=NativePolicy(match_window=True), resolution=96)
    images, boxes = random_batch(ours)
    with torch.no_grad():
        assert torch.equal(ours(images, boxes=boxes).logits, builtin(images, boxes=boxes).logits)


@pytest.mark.parametrize("backbone", ["tinyvit_test", "lite_medsam_test"])
def test_tinyvit_is_refused_with_a_fix(backbone):
    with pytest.raises(IncompatibleError, match=f"has no such windowed blocks. Use policy='native' for {backbone}"):
        adaptsam.create_model(backbone, policy="native_window", resolution=64)


def test_adapter_files_rebuild_the_policy(tmp_path):
    check_adapter("lora", "vit_test", policies=("native_window",), resolution=96, workdir=tmp_path)


def test_bad_options_say_what_was_expected():
    with pytest.raises(ValueError, match="Use the built-in 'native' policy"):
        NativeWindowPolicy(match_window=False)
    with pytest.raises(ValueError, match=r"Expected min_padding in \[0, 1\)"):
        NativeWindowPolicy(min_padding=1.5)
    with pytest.raises(IncompatibleError, match="multiple of 16"):
        adaptsam.create_model("vit_test", policy="native_window", resolution=70)
