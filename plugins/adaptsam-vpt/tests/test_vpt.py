"""VPT: the public adapter contract on every tiny backbone, counts by formula, step 0, the prompt read-out."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import adaptsam
from adaptsam import registry
from adaptsam.backbones.vit_b import VIT_TEST
from adaptsam.backbones.vit_t import TINYVIT_TEST
from adaptsam.testing import check_adapter, random_batch

BACKBONES = ("vit_test", "tinyvit_test", "lite_medsam_test")


def build(backbone: str = "vit_test", policy: str = "native", **cfg):
    return adaptsam.create_model(backbone, policy=policy, resolution=64, adapter="vpt", adapter_cfg=cfg)


def open_gates(model, value: float = 0.5) -> None:
    with torch.no_grad():
        for prompts in model.image_encoder.vpt.blocks:
            prompts.gate.fill_(value)


def test_registered_through_its_entry_point():
    assert "vpt" in adaptsam.list_adapters()
    assert registry.adapters.entry("vpt").origin == "adaptsam-vpt"


@pytest.mark.parametrize("backbone", BACKBONES)
def test_adapter_contract(backbone, tmp_path):
    check_adapter("vpt", backbone, workdir=tmp_path)


@pytest.mark.parametrize("tokens", [1, 8])
def test_deep_and_shallow_counts_by_formula(tokens):
    c, heads, depth = VIT_TEST.embed_dim, VIT_TEST.num_heads, VIT_TEST.depth
    deep = build(tokens=tokens, train_decoder=False)
    shallow = build(tokens=tokens, deep=False, train_decoder=False)
    assert adaptsam.count_parameters(deep).trainable == depth * (tokens * c + heads)
    assert adaptsam.count_parameters(shallow).trainable == tokens * c + heads
    # TinyViT: one prompt set per attention stage at that stage's width (stage 0 is convolutional)
    tiny = build("tinyvit_test", tokens=tokens, deep=False, train_decoder=False)
    widths, heads = TINYVIT_TEST.embed_dims[1:], TINYVIT_TEST.num_heads[1:]
    assert adaptsam.count_parameters(tiny).trainable == sum(tokens * w + h for w, h in zip(widths, heads))


def test_decoder_trains_by_default_and_the_encoder_is_not_cacheable():
    model = build()
    decoder = sum(p.numel() for p in model.mask_decoder.parameters())
    prompts = sum(p.numel() for p in model.image_encoder.vpt.parameters())
    assert adaptsam.count_parameters(model).trainable == decoder + prompts
    assert not model.adapter.encoder_frozen(model)  # prompts change the embeddings: never cache them


@pytest.mark.parametrize("backbone", BACKBONES)
def test_step_zero_is_the_frozen_model_and_open_gates_change_it(backbone):
    adapted, frozen = build(backbone), adaptsam.create_model(backbone, policy="native", resolution=64)
    images, boxes = random_batch(adapted)
    with torch.no_grad():
        assert torch.equal(adapted(images, boxes=boxes).logits, frozen(images, boxes=boxes).logits)
        open_gates(adapted)
        assert not torch.allclose(adapted(images, boxes=boxes).logits, frozen(images, boxes=boxes).logits)


@pytest.mark.parametrize("backbone", ["vit_test", "tinyvit_test"])
def test_readout_is_attention_over_the_prompts(backbone):
    """Each token's extra attention output equals scaled-dot-product attention of its query over the
    prompt keys/values (computed here independently with F.scaled_dot_product_attention)."""
    model = build(backbone)
    open_gates(model, 0.7)
    site, prompts = model.attention_sites()[0], model.image_encoder.vpt.blocks[0]
    seen = {}
    site.qkv.register_forward_hook(lambda m, a, out: seen.update(x=a[0], qkv=out))
    site.proj.register_forward_pre_hook(lambda m, a: seen.update(proj_in=a[0]))
    with torch.no_grad():
        model.encode(random_batch(model)[0])
        heads = prompts.heads
        q = prompts.q.view_output(seen["qkv"]).flatten(-2).unflatten(-1, (heads, -1))
        p = F.linear(prompts.tokens, site.qkv.weight, site.qkv.bias)
        k = prompts.k.view_output(p).flatten(-2).unflatten(-1, (heads, -1))
        v = prompts.v.view_output(p).flatten(-2).unflatten(-1, (heads, -1))
        tokens = q.flatten(0, -3)  # every token of every window: (N, h, d)
        expected = F.scaled_dot_product_attention(tokens.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1))
        expected = (expected.transpose(0, 1) * 0.7).flatten(-2)
        # the proj input = upstream attention output + read-out; remove the former by running without prompts
        with_prompts = seen["proj_in"].flatten(0, -2)
        open_gates(model, 0.0)
        model.encode(random_batch(model)[0])
        without = seen["proj_in"].flatten(0, -2)
    torch.testing.assert_close(with_prompts - without, expected, rtol=1e-4, atol=1e-5)


def test_deepcopy_rebinds_hooks_to_the_copy():
    model = build()
    twin = copy.deepcopy(model)
    images, boxes = random_batch(model)
    open_gates(twin)
    with torch.no_grad():
        assert not torch.allclose(model(images, boxes=boxes).logits, twin(images, boxes=boxes).logits)
        open_gates(model)
        assert torch.equal(model(images, boxes=boxes).logits, twin(images, boxes=boxes).logits)


def test_bad_options_say_what_was_expected():
    with pytest.raises(ValueError, match="Expected tokens to be an integer >= 1, got 0"):
        build(tokens=0)
    with pytest.raises(ValueError, match="Expected deep to be true or false"):
        build(deep="shallow")


def test_short_training_beats_frozen():
    """LiteMedSAM (real weights) on synthetic shapes at R=64: 8 steps of batch 2, prompts only, beat the
    zero-shot model, both evaluated the same way on 8 test images (frozen: mean Dice 0.66; measured 0.73).
    Prompts and gates take adapter_lr 5e-2: the zero-init gates must open before the prompts get gradients."""
    from adaptsam.data import LowResDataset, open_dataset
    from adaptsam.engine.evaluate import evaluate
    from adaptsam.engine.train import TrainConfig, fit

    train = LowResDataset(open_dataset("synthetic", "train"), 64, train=True)
    test = LowResDataset(open_dataset("synthetic", "test", n=8), 64)
    frozen = adaptsam.create_model("lite_medsam", policy="native", resolution=64, adapter="frozen")
    baseline = evaluate(frozen, test, progress=False).mean_dice
    model = adaptsam.create_model("lite_medsam", policy="native", resolution=64, adapter="vpt",
                                  adapter_cfg={"train_decoder": False})
    fit(model, train, TrainConfig(steps=8, batch_size=2, adapter_lr=5e-2, augment=False, progress=False))
    assert evaluate(model, test, progress=False).mean_dice > baseline + 0.03


@pytest.mark.parametrize("backbone, policy", [(b, "native") for b in BACKBONES] + [("vit_test", "upsample")])
def test_declared_flops_match_flop_counter(backbone, policy):
    """The extra_flops hook makes the bench's GFLOPs columns exact: inference and a training step."""
    from adaptsam.bench.flops import flop_counter, model_flops, training_gflops_per_step

    images = torch.rand(2, 3, 64, 64)
    boxes = torch.tensor([[16.0, 16.0, 48.0, 48.0]]).repeat(2, 1)
    model = build(backbone, policy, tokens=3)
    open_gates(model)
    model.eval().requires_grad_(False)
    with flop_counter() as counter, torch.no_grad():
        model(images, boxes=boxes)
    flops = model_flops(model, 2)
    assert flops.adapter.executed > 0
    assert flops.total.executed == pytest.approx(counter.get_total_flops() / 2, rel=0.01)
    model = build(backbone, policy, tokens=3).train()
    with flop_counter() as counter:
        out = model(images, boxes=boxes)
        (out.logits.sum() + out.iou.sum()).backward()
    assert training_gflops_per_step(model, 2) * 1e9 == pytest.approx(counter.get_total_flops(), rel=0.01)
