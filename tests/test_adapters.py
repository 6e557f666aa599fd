"""Adapters: the contract for every registered adapter on every tiny backbone, counts by formula, LoRA
exactness, the SAM-Adapter filter, adapter files."""

from __future__ import annotations

import copy

import pytest
import torch

import adaptsam
from adaptsam import registry
from adaptsam.adapters.sam_adapter import high_frequency
from adaptsam.errors import CheckpointError, IncompatibleError
from adaptsam.testing import check_adapter, random_batch

TINY_BACKBONES = ("vit_test", "tinyvit_test", "lite_medsam_test")
BUILTIN_ADAPTERS = ("frozen", "full", "decoder", "lora", "sam_adapter", "class_prompt_lora")


@pytest.mark.parametrize("backbone", TINY_BACKBONES)
@pytest.mark.parametrize("adapter", registry.adapters.names())
def test_every_registered_adapter_meets_the_contract(adapter, backbone, tmp_path):
    check_adapter(adapter, backbone, workdir=tmp_path)


# -- exact trainable counts on the real ViT-B, by formula ---------------------------------------------
VIT_B = dict(dim=768, depth=12, decoder=4_058_340, prompt_encoder=6_220, total=93_735_472)


def _trainable(adapter: str, **cfg) -> int:
    model = adaptsam.create_model("vit_b", pretrained=False, policy="native", resolution=64, adapter=adapter,
                                  adapter_cfg=cfg)
    return adaptsam.count_parameters(model).trainable


@pytest.mark.parametrize("rank", [1, 4, 8])
def test_lora_qv_count(rank):
    per_part = VIT_B["dim"] * rank * 2  # A: r×768, B: 768×r
    assert _trainable("lora", rank=rank) == VIT_B["depth"] * 2 * per_part == 36_864 * rank


def test_decoder_frozen_full_counts():
    assert _trainable("decoder") == VIT_B["decoder"]
    assert _trainable("decoder", prompt_encoder=True) == VIT_B["decoder"] + VIT_B["prompt_encoder"]
    assert _trainable("frozen") == 0
    # full at R=64 trains the 4×4 interpolated position embedding instead of the 64×64 one
    pos_embed_change = (64 * 64 - 4 * 4) * VIT_B["dim"]
    assert _trainable("full") == VIT_B["total"] - pos_embed_change


def test_sam_adapter_count():
    dim, hidden, patch = VIT_B["dim"], VIT_B["dim"] // 32, 16
    hf_embed, embed_tune = 3 * hidden * patch * patch + hidden, dim * hidden + hidden
    block_tunes, shared_up = VIT_B["depth"] * (hidden * hidden + hidden), hidden * dim + dim
    prompts = hf_embed + embed_tune + block_tunes + shared_up
    assert prompts == 63_312
    assert _trainable("sam_adapter") == prompts + VIT_B["decoder"]
    assert _trainable("sam_adapter", scale=16, train_decoder=False) == (
        3 * 48 * 256 + 48 + dim * 48 + 48 + 12 * (48 * 48 + 48) + 48 * dim + dim)


# -- LoRA exactness -------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["vit_test", "lite_medsam_test"])
def test_lora_starts_as_the_frozen_model_and_merges_exactly(backbone):
    frozen = adaptsam.create_model(backbone, policy="native", resolution=64, adapter="frozen")
    lora = adaptsam.create_model(backbone, policy="native", resolution=64, adapter="lora", adapter_cfg={"rank": 4})
    images, boxes = random_batch(lora)
    with torch.no_grad():
        assert (lora(images, boxes=boxes).logits - frozen(images, boxes=boxes).logits).abs().max() < 1e-6
    # train a little so B != 0, then compare merged and unmerged
    optimiser = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=0.05)
    for _ in range(3):
        optimiser.zero_grad()
        lora(images, boxes=boxes).logits.square().mean().backward()
        optimiser.step()
    lora.eval()
    base = {k: v.clone() for k, v in lora.state_dict().items() if "lora" not in k}
    with torch.no_grad():
        unmerged = lora(images, boxes=boxes).logits
        adaptsam.merge_adapter(lora)
        merged = lora(images, boxes=boxes).logits
        adaptsam.unmerge_adapter(lora)
        again = lora(images, boxes=boxes).logits
    assert (merged - unmerged).abs().max() / unmerged.abs().max() < 1e-4
    assert (again - unmerged).abs().max() / unmerged.abs().max() < 1e-4
    assert max((lora.state_dict()[k] - v).abs().max().item() for k, v in base.items()) < 1e-6


def test_lora_on_tinyvit_touches_only_q_and_v_rows():
    model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64, adapter="lora")
    site = model.attention_sites()[0]
    delta = site.qkv.lora
    with torch.no_grad():
        for p in delta.lora_B.values():
            p.fill_(0.1)
        x = torch.randn(3, 16, site.qkv.in_features)
        change = delta.add_delta(x, torch.zeros(3, 16, site.qkv.out_features))
    parts = site.segments
    assert parts["q"].view_output(change).abs().min() > 0 and parts["v"].view_output(change).abs().min() > 0
    assert parts["k"].view_output(change).abs().max() == 0


def test_lora_config_is_validated():
    with pytest.raises(ValueError, match="rank"):
        adaptsam.create_model("vit_test", adapter="lora", adapter_cfg={"rank": 0})
    with pytest.raises(ValueError, match="targets"):
        adaptsam.create_model("vit_test", adapter="lora", adapter_cfg={"targets": ["qv", "bogus"]})
    with pytest.raises(ValueError, match="has no option rnak.*rank"):
        adaptsam.create_model("vit_test", adapter="lora", adapter_cfg={"rnak": 4})


# -- SAM-Adapter --------------------------------------------------------------------------------------------
def test_high_frequency_filter_removes_constants_and_keeps_checkerboards():
    constant = torch.full((1, 3, 32, 32), 0.7)
    assert high_frequency(constant, 0.25).abs().max() < 1e-5
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    checker = (((yy + xx) % 2) * 2 - 1).float().expand(1, 3, 32, 32)
    assert torch.allclose(high_frequency(checker, 0.25), checker, atol=1e-5)
    slow = torch.sin(2 * torch.pi * xx / 32).float().expand(1, 3, 32, 32)  # one period: lowest frequency
    assert high_frequency(slow, 0.25).abs().max() < 1e-5  # inside the removed square
    assert torch.allclose(high_frequency(slow, 0.001), slow, atol=1e-5)  # tau small: kept
    with pytest.raises(ValueError, match="tau"):
        high_frequency(slow, 1.5)


def test_sam_adapter_hooks_follow_a_deep_copy():
    model = adaptsam.create_model("vit_test", policy="native", resolution=64, adapter="sam_adapter")
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.image_encoder.sam_adapter.parameters():
            p.add_(0.5)
    images, boxes = random_batch(model)
    with torch.no_grad():
        assert not torch.equal(model(images, boxes=boxes).logits, twin(images, boxes=boxes).logits)
        assert torch.equal(model(images, boxes=boxes).logits, copy.deepcopy(model)(images, boxes=boxes).logits)


# -- adapter files --------------------------------------------------------------------------------------------
def test_loading_onto_the_wrong_backbone_names_both(tmp_path):
    model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64, adapter="lora")
    path = adaptsam.save_adapter(model, tmp_path / "a.safetensors")
    other = adaptsam.create_model("tinyvit_test", policy="native", resolution=64)
    with pytest.raises(IncompatibleError, match="made for backbone 'lite_medsam_test'; this model is 'tinyvit_test'"):
        adaptsam.load_adapter(path, other)
    wrong_adapter = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64, adapter="decoder")
    with pytest.raises(IncompatibleError, match="holds a 'lora' adapter; this model carries 'decoder'"):
        adaptsam.load_adapter(path, wrong_adapter)
    wrong_r = adaptsam.create_model("lite_medsam_test", policy="native", resolution=32)
    with pytest.raises(IncompatibleError, match="R=64.*R=32"):
        adaptsam.load_adapter(path, wrong_r)


def test_adapter_files_hold_only_trained_tensors_and_refuse_edits(tmp_path):
    from safetensors.torch import load_file, save_file

    model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64, adapter="lora")
    path = adaptsam.save_adapter(model, tmp_path / "a.safetensors")
    tensors = load_file(str(path))
    assert set(tensors) == set(model.adapter.trainable_state_dict(model)) and all("lora" in k for k in tensors)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    tensors.pop(next(iter(tensors)))
    save_file(tensors, str(tmp_path / "edited.safetensors"), metadata=metadata)
    with pytest.raises(CheckpointError, match="edited.safetensors.*1 missing"):
        adaptsam.load_adapter(tmp_path / "edited.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        adaptsam.load_adapter(tmp_path / "junk.safetensors")


def test_full_adapter_round_trip_restores_tinyvit_bias_cache(tmp_path):
    from adaptsam.testing import stale_attention_caches

    model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64, adapter="full")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("attention_biases"):
                p.add_(1.0)
    model.eval()
    path = adaptsam.save_adapter(model, tmp_path / "full.safetensors")
    reloaded = adaptsam.load_adapter(path)
    assert not stale_attention_caches(reloaded)
    images, boxes = random_batch(model)
    with torch.no_grad():
        assert torch.equal(model(images, boxes=boxes).logits, reloaded(images, boxes=boxes).logits)


def test_list_shows_every_builtin_adapter_with_a_description(capsys):
    from adaptsam.cli import main

    assert main(["list", "adapter", "-v"]) == 0
    out = capsys.readouterr().out
    for name in BUILTIN_ADAPTERS:
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert "[adaptsam 0.1.0]" in line and len(line.split("]", 1)[1].strip()) > 20
