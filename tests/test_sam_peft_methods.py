"""The SAM-PEFT benchmark methods PEFT lacks (AdaptFormer, SSF, FacT, LayerNorm tuning, attention tuning):
trainable counts by formula on the tiny backbones, step 0 = the frozen model, merges, validation.

The registry-generated contract (tests/test_adapters.py) runs ``adaptsam.testing.check_adapter`` on each of
them; here are the method-specific facts.
"""

from __future__ import annotations

import pytest
import torch

import adaptsam
from adaptsam.backbones.vit_b import VIT_TEST
from adaptsam.errors import ConfigError
from adaptsam.testing import random_batch

D, L, H = VIT_TEST.embed_dim, VIT_TEST.depth, int(VIT_TEST.embed_dim * VIT_TEST.mlp_ratio)
NECK = VIT_TEST.decoder.prompt_embed_dim
TINYVIT_WIDTHS = (32, 48, 320)  # tinyvit_test's attention stages, one block each, MLP ratio 1


def build(adapter: str, backbone: str = "vit_test", **cfg):
    return adaptsam.create_model(backbone, policy="native", resolution=64, adapter=adapter, adapter_cfg=cfg)


def trainable(adapter: str, backbone: str = "vit_test", **cfg) -> int:
    return adaptsam.count_parameters(build(adapter, backbone, **cfg)).trainable


def decoder_size() -> int:
    model = adaptsam.create_model("vit_test", policy="native", resolution=64)
    return sum(p.numel() for p in model.mask_decoder.parameters())


# -- counts by formula --------------------------------------------------------------------------------
def test_adaptformer_count():
    per_block = lambda d, b: d * b + b + b * d + d  # noqa: E731 - down (with bias), up (with bias)
    assert trainable("adaptformer") == L * per_block(D, 64)
    assert trainable("adaptformer", bottleneck=4, learnable_scale=True) == L * (per_block(D, 4) + 1)
    assert trainable("adaptformer", "tinyvit_test", bottleneck=8) == sum(per_block(d, 8) for d in TINYVIT_WIDTHS)
    assert trainable("adaptformer", bottleneck=4, train_decoder=True) == L * per_block(D, 4) + decoder_size()


def test_ssf_count():
    norms = 2  # norm1, norm2 per SAM ViT block (the neck's LayerNorm2d is channels-first, not a target)
    per_block = 2 * (3 * D) + 2 * D + 2 * (H + D) + norms * 2 * D
    assert trainable("ssf") == L * per_block
    assert trainable("ssf", targets=["qkv"]) == L * 2 * 3 * D
    # TinyViT blocks: qkv (3d), proj (d), MLP d→d→d, LayerNorms inside attention and MLP
    assert trainable("ssf", "tinyvit_test") == sum(2 * 3 * d + 2 * d + 2 * 2 * d + 2 * 2 * d for d in TINYVIT_WIDTHS)


@pytest.mark.parametrize("rank", [2, 4])
def test_fact_count_shares_factors_across_blocks(rank):
    # one group (all ViT targets are d × d): U, V shared; a core per block and target
    assert trainable("fact", rank=rank) == rank * D + D * rank + L * 2 * rank ** 2
    assert trainable("fact", rank=rank, form="tk") == rank * D + D * rank + rank ** 3 + L * 2 * rank
    assert trainable("fact", rank=rank, targets=["q", "k", "v", "proj"]) == 2 * rank * D + L * 4 * rank ** 2
    # TinyViT: one group per stage width (each stage has one block here)
    assert trainable("fact", "tinyvit_test", rank=rank) == sum(2 * rank * d + 2 * rank ** 2 for d in TINYVIT_WIDTHS)


def test_fact_groups_are_shared_not_copied():
    model = build("fact", rank=2)
    factors = model.image_encoder.fact_factors
    assert list(factors) == [f"{D}x{D}"]
    cores = [site.qkv.fact for site in model.attention_sites()]
    assert all(c._factors["q"] is factors[f"{D}x{D}"] for c in cores)
    assert len(model.adapter.trainable_state_dict(model)) == 2 + L * 2  # U, V once; one core per block and part


def test_ln_tuning_count():
    assert trainable("ln_tuning") == L * 2 * 2 * D + 2 * 2 * NECK
    model = build("ln_tuning", "tinyvit_test")
    norms = {n for n, p in model.named_parameters() if p.requires_grad}
    assert norms and all(".norm" in n or "neck" in n for n in norms)  # an independent oracle: names, in a test
    with_bn = trainable("ln_tuning", "tinyvit_test", batchnorm=True)
    batchnorms = sum(m.weight.numel() * 2 for m in model.image_encoder.modules()
                     if isinstance(m, torch.nn.BatchNorm2d))
    assert batchnorms and with_bn == adaptsam.count_parameters(model).trainable + batchnorms


def test_attention_tuning_count():
    assert trainable("attention_tuning") == L * (3 * D * D + 3 * D + D * D + D)
    assert trainable("attention_tuning", proj=False) == L * (3 * D * D + 3 * D)
    assert trainable("attention_tuning", "tinyvit_test") == sum(4 * d * d + 4 * d for d in TINYVIT_WIDTHS)
    model = build("attention_tuning", "lite_medsam_test")
    assert not any("attention_biases" in n for n, p in model.named_parameters() if p.requires_grad)


# -- behaviour ----------------------------------------------------------------------------------------
METHODS = [("adaptformer", {}), ("ssf", {}), ("fact", {}), ("fact", {"form": "tk"})]


@pytest.mark.parametrize("backbone", ["vit_test", "lite_medsam_test"])
@pytest.mark.parametrize(("adapter", "cfg"), METHODS)
def test_step_zero_is_the_frozen_model(adapter, cfg, backbone):
    adapted, frozen = build(adapter, backbone, **cfg), build("frozen", backbone)
    images, boxes = random_batch(adapted)
    with torch.no_grad():
        assert torch.allclose(adapted(images, boxes=boxes).logits, frozen(images, boxes=boxes).logits, atol=1e-5)


def _train_a_little(model, steps: int = 2) -> None:
    images, boxes = random_batch(model)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05)
    model.train()
    for _ in range(steps):
        optimiser.zero_grad()
        model(images, boxes=boxes).logits.square().mean().backward()
        optimiser.step()
    model.eval()


def test_trained_methods_change_the_output():
    for adapter, cfg in METHODS + [("ln_tuning", {}), ("attention_tuning", {})]:
        model, frozen = build(adapter, **cfg), build("frozen")
        _train_a_little(model)
        images, boxes = random_batch(model)
        with torch.no_grad():
            diff = (model(images, boxes=boxes).logits - frozen(images, boxes=boxes).logits).abs().max()
        assert diff > 1e-4, adapter


@pytest.mark.parametrize(("adapter", "cfg"), [("ssf", {"init_std": 0.02}), ("fact", {"form": "tk"})])
def test_merge_leaves_no_overhead_and_unmerges(adapter, cfg):
    model = build(adapter, "lite_medsam_test", **cfg)
    _train_a_little(model)
    images, boxes = random_batch(model)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        unmerged = model(images, boxes=boxes).logits
        adaptsam.merge_adapter(model)
        merged = model(images, boxes=boxes).logits
        adaptsam.merge_adapter(model)  # merging twice is a no-op
        twice = model(images, boxes=boxes).logits
        adaptsam.unmerge_adapter(model)
    assert (merged - unmerged).abs().max() / unmerged.abs().max() < 1e-4
    assert torch.equal(merged, twice)
    assert max((model.state_dict()[k] - v).abs().max().item() for k, v in base.items()) < 1e-5


def test_ssf_refuses_to_unmerge_a_zero_scale():
    model = build("ssf", targets=["proj"])
    adaptsam.merge_adapter(model)
    site = model.attention_sites()[0]
    with torch.no_grad():
        site.proj.ssf.scale[0] = 0.0
    with pytest.raises(ValueError, match="cannot unmerge"):
        adaptsam.unmerge_adapter(model)


@pytest.mark.parametrize(("adapter", "cfg", "message"), [
    ("adaptformer", {"bottleneck": 0}, "Expected bottleneck to be an integer >= 1, got 0"),
    ("ssf", {"targets": ["qkv", "mlpp"]}, "Expected targets among"),
    ("fact", {"form": "cp"}, "Expected form to be one of"),
    ("fact", {"targets": ["o"]}, "Expected targets among"),
    ("ln_tuning", {"decoder": "yes"}, "Expected decoder to be true or false"),
    ("attention_tuning", {"qkv": False, "proj": False}, "trains nothing"),
    ("fact", {"rnak": 4}, "has no option rnak.*rank"),
])
def test_bad_options_say_what_was_expected(adapter, cfg, message):
    with pytest.raises(ConfigError, match=message):
        build(adapter, **cfg)


@pytest.mark.parametrize("adapter", ["ln_tuning", "attention_tuning"])
def test_tuning_methods_add_no_inference_flops(adapter):
    from adaptsam.bench.flops import inference_gflops

    assert inference_gflops(build(adapter, "lite_medsam_test")) == inference_gflops(build("frozen", "lite_medsam_test"))


@pytest.mark.parametrize("adapter", ["ssf", "fact"])
def test_merged_methods_add_no_inference_flops(adapter):
    from adaptsam.bench.flops import inference_gflops

    model = build(adapter, "lite_medsam_test")
    assert inference_gflops(model) is None  # unmerged work is not counted
    adaptsam.merge_adapter(model)
    assert inference_gflops(model) == inference_gflops(build("frozen", "lite_medsam_test"))
