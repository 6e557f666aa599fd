"""BitFit: the public adapter contract on every tiny backbone, plus exactly-the-biases checks."""

from __future__ import annotations

import pytest
import torch

import adaptsam
from adaptsam import registry
from adaptsam.backbones.vit_b import VIT_TEST
from adaptsam.testing import check_adapter, random_batch

BACKBONES = ("vit_test", "tinyvit_test", "lite_medsam_test")


def build(backbone: str = "vit_test", **cfg):
    return adaptsam.create_model(backbone, policy="native", resolution=64, adapter="bitfit", adapter_cfg=cfg)


def trainable_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_registered_through_its_entry_point():
    assert "bitfit" in adaptsam.list_adapters()
    entry = registry.adapters.entry("bitfit")
    assert entry.origin == "adaptsam-bitfit" and entry.target == "adaptsam_bitfit.adapter:BitFitAdapter"


@pytest.mark.parametrize("backbone", BACKBONES)
def test_adapter_contract(backbone, tmp_path):
    check_adapter("bitfit", backbone, workdir=tmp_path)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_trains_exactly_the_encoder_biases(backbone):
    model = build(backbone)
    # an independent oracle: here (in a test) parameter names are fine to read
    expected = {f"image_encoder.{n}" for n, _ in model.image_encoder.named_parameters() if n.endswith(".bias")}
    assert trainable_names(model) == expected
    assert not any("attention_biases" in n for n in trainable_names(model))


def test_trainable_count_by_formula_on_vit_test():
    c, hidden, out = VIT_TEST.embed_dim, int(VIT_TEST.embed_dim * VIT_TEST.mlp_ratio), VIT_TEST.decoder.prompt_embed_dim
    # patch embedding + per block (norm1, qkv, proj, norm2, lin1, lin2) + the neck's two LayerNorm2d
    with_norms = c + VIT_TEST.depth * (c + 3 * c + c + c + hidden + c) + 2 * out
    without_norms = c + VIT_TEST.depth * (3 * c + c + hidden + c)
    assert adaptsam.count_parameters(build()).trainable == with_norms == 2240
    assert adaptsam.count_parameters(build(norms=False)).trainable == without_norms


def test_decoder_option_adds_the_decoder_biases():
    model = build(decoder=True)
    decoder = {f"mask_decoder.{n}" for n, _ in model.mask_decoder.named_parameters() if n.endswith(".bias")}
    assert decoder and decoder <= trainable_names(model)
    assert not any(n.startswith("prompt_encoder.") for n in trainable_names(model))


def _one_step(model) -> None:
    images, boxes = random_batch(model)
    model.train()
    out = model(images, boxes=boxes)
    (out.logits.square().mean() + out.iou.sum()).backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()


@pytest.mark.parametrize("keep", [True, False])
def test_batchnorm_statistics_stay_pretrained_unless_asked(keep):
    model = build("tinyvit_test", batchnorm_statistics=not keep)
    norms = [m for m in model.image_encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.bias.requires_grad for m in norms)
    before = [m.running_mean.clone() for m in norms]
    _one_step(model)
    unchanged = all(torch.equal(b, m.running_mean) for b, m in zip(before, norms))
    assert unchanged == keep


def test_step_zero_is_the_frozen_model():
    adapted, frozen = build(), adaptsam.create_model("vit_test", policy="native", resolution=64)
    images, boxes = random_batch(adapted)
    with torch.no_grad():
        assert torch.equal(adapted(images, boxes=boxes).logits, frozen(images, boxes=boxes).logits)


def test_bad_option_says_what_was_expected():
    with pytest.raises(ValueError, match="Expected decoder to be true or false, got 'yes'"):
        build(decoder="yes")
    with pytest.raises(ValueError, match="has no option"):
        build(rank=4)


def test_short_training_beats_frozen():
    """LiteMedSAM (real weights) on synthetic shapes at R=64: 6 steps of batch 2 beat the zero-shot model,
    both evaluated the same way on 8 test images (frozen: mean Dice 0.66; measured 0.77). Biases are
    pretrained tensors, so the engine gives them ``lr`` (not ``adapter_lr``)."""
    from adaptsam.data import LowResDataset, open_dataset
    from adaptsam.engine.evaluate import evaluate
    from adaptsam.engine.train import TrainConfig, fit

    train = LowResDataset(open_dataset("synthetic", "train"), 64, train=True)
    test = LowResDataset(open_dataset("synthetic", "test", n=8), 64)
    frozen = adaptsam.create_model("lite_medsam", policy="native", resolution=64, adapter="frozen")
    baseline = evaluate(frozen, test, progress=False).mean_dice
    model = adaptsam.create_model("lite_medsam", policy="native", resolution=64, adapter="bitfit")
    fit(model, train, TrainConfig(steps=6, batch_size=2, lr=2e-3, augment=False, progress=False))
    assert evaluate(model, test, progress=False).mean_dice > baseline + 0.03
