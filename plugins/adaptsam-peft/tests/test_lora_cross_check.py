"""adaptsam's own ``lora`` against PEFT's reference LoRA (``peft_lora``) on the same linears: with A and B
copied across, the logits agree (max abs diff < 1e-5), the trainable counts agree, and so do the merged
weights and logits after merge.

Three ways of lining them up (DESIGN §9: adaptsam's ``qkv`` target is three updates, q, k and v, on the
fused qkv linear):

* ``qkv_fused`` (one rank-r update on the whole fused qkv) is exactly PEFT's r on ``qkv``: same logits, same
  counts;
* ``proj`` + ``mlp`` (plain linears): the same for both;
* ``qkv`` (three rank-r updates) equals PEFT at rank 3r with α scaled by 3 and B block-structured (each part's
  B in its own rows and rank columns): same logits and merged weights, while the counts differ by exactly
  the zeros of that block structure, ``3r·d_out − r·d_out`` per layer — the 1.5× of DESIGN §9.
"""

from __future__ import annotations

import pytest
import torch

import adaptsam
from adaptsam.testing import random_batch

RANK, ALPHA = 4, 8
BACKBONES = ("vit_test", "lite_medsam_test")


def _models(backbone: str, lora_targets: list[str], peft_targets: list[str], peft_rank: int, peft_alpha: float):
    ours = adaptsam.create_model(backbone, policy="native", resolution=64, adapter="lora",
                                 adapter_cfg={"rank": RANK, "alpha": ALPHA, "targets": lora_targets})
    theirs = adaptsam.create_model(backbone, policy="native", resolution=64, adapter="peft_lora",
                                   adapter_cfg={"r": peft_rank, "lora_alpha": peft_alpha, "targets": peft_targets})
    return ours.eval(), theirs.eval()


def _pairs(ours, theirs, kinds: tuple[str, ...]):
    """(our adapted linear, PEFT's layer) pairs, found by structure in both models."""
    pairs = []
    for a, b in zip(ours.attention_sites(), theirs.attention_sites()):
        pairs += [(a.qkv, b.qkv)] if "qkv" in kinds else []
        pairs += [(a.proj, b.proj)] if "proj" in kinds else []
        pairs += list(zip(a.mlp, b.mlp)) if "mlp" in kinds else []
    return pairs


def _randomise(ours) -> None:
    """B starts at zero in both; give ours non-zero B so the comparison means something."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in ours.modules():
            for b in getattr(getattr(module, "lora", None), "lora_B", {}).values():
                b.copy_(torch.randn(b.shape, generator=generator) * 0.1)


def _copy_plain(ours, theirs, kinds) -> None:
    with torch.no_grad():
        for linear, layer in _pairs(ours, theirs, kinds):
            (part,) = linear.lora.parts
            layer.lora_A["default"].weight.copy_(linear.lora.lora_A[part])
            layer.lora_B["default"].weight.copy_(linear.lora.lora_B[part])


def _copy_block_structured(ours, theirs) -> None:
    """Our q, k, v updates as one rank-3r PEFT update: A stacked, B placed in each part's rows."""
    with torch.no_grad():
        for linear, layer in _pairs(ours, theirs, ("qkv",)):
            delta = linear.lora
            a = torch.cat([delta.lora_A[p] for p in ("q", "k", "v")])
            b = torch.zeros(linear.out_features, 3 * RANK)
            for i, part in enumerate(("q", "k", "v")):
                segment = delta.parts[part]
                rows = b.view(segment.heads, segment.stride, 3 * RANK)[:, segment.offset:segment.offset + segment.width]
                rows[..., i * RANK:(i + 1) * RANK] = delta.lora_B[part].view(segment.heads, segment.width, RANK)
            layer.lora_A["default"].weight.copy_(a)
            layer.lora_B["default"].weight.copy_(b)


def _logits(model, images, boxes) -> torch.Tensor:
    with torch.no_grad():
        return model(images, boxes=boxes).logits


def _assert_same(ours, theirs, kinds) -> None:
    images, boxes = random_batch(ours)
    frozen = adaptsam.create_model(ours.info.name, policy="native", resolution=64)
    base = _logits(frozen, images, boxes)
    unmerged = _logits(ours, images, boxes)
    assert (unmerged - base).abs().max() > 1e-3  # the updates do something
    assert (unmerged - _logits(theirs, images, boxes)).abs().max() < 1e-5
    adaptsam.merge_adapter(ours)
    adaptsam.merge_adapter(theirs)
    assert (_logits(ours, images, boxes) - _logits(theirs, images, boxes)).abs().max() < 1e-5
    for linear, layer in _pairs(ours, theirs, kinds):
        assert (linear.weight - layer.base_layer.weight).abs().max() < 1e-6


def _count(model) -> int:
    return adaptsam.count_parameters(model).trainable


@pytest.mark.parametrize("backbone", BACKBONES)
def test_qkv_fused_equals_peft_on_qkv(backbone):
    ours, theirs = _models(backbone, ["qkv_fused"], ["qkv"], RANK, ALPHA)
    _randomise(ours)
    _copy_plain(ours, theirs, ("qkv",))
    assert _count(ours) == _count(theirs)
    _assert_same(ours, theirs, ("qkv",))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_plain_linears_equal_peft(backbone):
    ours, theirs = _models(backbone, ["proj", "mlp"], ["proj", "mlp"], RANK, ALPHA)
    _randomise(ours)
    _copy_plain(ours, theirs, ("proj", "mlp"))
    assert _count(ours) == _count(theirs)
    _assert_same(ours, theirs, ("proj", "mlp"))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_qkv_three_updates_equal_peft_at_rank_3r(backbone):
    ours, theirs = _models(backbone, ["qkv"], ["qkv"], 3 * RANK, 3 * ALPHA)  # same α/r scaling
    _randomise(ours)
    _copy_block_structured(ours, theirs)
    outputs = sum(site.qkv.out_features for site in ours.attention_sites())
    assert _count(theirs) - _count(ours) == 3 * RANK * outputs - RANK * outputs
    _assert_same(ours, theirs, ("qkv",))
