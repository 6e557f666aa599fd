"""``lora`` target ``qkv_fused`` is PEFT's LoRA on the fused qkv linears: same count, same outputs."""

from __future__ import annotations

import pytest
import torch

import adaptsam
from adaptsam.adapters.lora import lora_layers
from adaptsam.testing import random_batch

peft = pytest.importorskip("peft", reason="peft is not installed (pip install peft, or the 'test' extra)")

RANK, ALPHA = 4, 8.0


def test_qkv_fused_equals_peft_lora_on_lite_medsam():
    ours = adaptsam.create_model("lite_medsam", policy="native", resolution=64, adapter="lora",
                                 adapter_cfg={"rank": RANK, "alpha": ALPHA, "targets": ["qkv_fused"]}).eval()
    theirs = adaptsam.create_model("lite_medsam", policy="native", resolution=64).eval()
    qkv_names = [name for name, _ in theirs.image_encoder.named_modules() if name.endswith(".qkv")]
    theirs.image_encoder = peft.inject_adapter_in_model(
        peft.LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=qkv_names), theirs.image_encoder)
    peft_trainable = sum(p.numel() for n, p in theirs.named_parameters() if "lora_" in n)
    assert adaptsam.count_parameters(ours).trainable == peft_trainable == sum(
        RANK * (m.in_features + m.out_features) for m, _ in lora_layers(ours))
    assert adaptsam.count_parameters(
        adaptsam.create_model("lite_medsam", policy="native", resolution=64, adapter="lora",
                              adapter_cfg={"rank": RANK, "targets": ["qkv"]})).trainable * 2 == 3 * peft_trainable

    images, boxes = random_batch(ours)
    with torch.no_grad():
        base = theirs(images, boxes=boxes).logits  # PEFT's B starts at zero: the frozen model
    generator = torch.Generator().manual_seed(0)
    peft_layers = {name: m for name, m in theirs.image_encoder.named_modules() if name in qkv_names}
    ours_layers = {name: m for name, m in ours.image_encoder.named_modules() if name in qkv_names}
    assert len(peft_layers) == len(ours_layers) == len(qkv_names) > 0
    with torch.no_grad():
        for name in qkv_names:
            delta = ours_layers[name].lora
            delta.lora_B["all"].copy_(0.02 * torch.randn(delta.lora_B["all"].shape, generator=generator))
            peft_layers[name].lora_A["default"].weight.copy_(delta.lora_A["all"])
            peft_layers[name].lora_B["default"].weight.copy_(delta.lora_B["all"])
    with torch.no_grad():
        a, b = ours(images, boxes=boxes).logits, theirs(images, boxes=boxes).logits
    assert (a - base).abs().max() > 1e-2  # the updates do something
    assert (a - b).abs().max() < 1e-4
    adaptsam.merge_adapter(ours)
    with torch.no_grad():
        assert (ours(images, boxes=boxes).logits - b).abs().max() < 1e-4
