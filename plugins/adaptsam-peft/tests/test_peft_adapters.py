"""adaptsam-peft: the public adapter contract for every PEFT method, options passed through and checked,
exact counts by formula, adapter files that record the PEFT version, merging through PEFT's layers.

The registry-generated contract in adaptsam's own tests/test_adapters.py runs these methods on all three
tiny backbones when this plugin is installed; here each method runs it on ``vit_test`` (whose blocks feed
their linears B×H×W×C tokens, the case PEFT's OFT needed help with) under the native policy, and a few on
``lite_medsam_test``.
"""

from __future__ import annotations

import json
import warnings

import peft
import pytest
import torch
from adaptsam_peft.methods import METHODS
from peft.tuners.tuners_utils import BaseTunerLayer

import adaptsam
from adaptsam import registry
from adaptsam.adapters.io import read_metadata
from adaptsam.backbones.vit_b import VIT_TEST
from adaptsam.errors import ConfigError
from adaptsam.testing import check_adapter, random_batch

D, L, H = VIT_TEST.embed_dim, VIT_TEST.depth, int(VIT_TEST.embed_dim * VIT_TEST.mlp_ratio)
REQUIRED = ("peft_lora", "peft_dora", "peft_loha", "peft_lokr", "peft_ia3", "peft_vera", "peft_oft")


def build(adapter: str, backbone: str = "vit_test", **cfg):
    return adaptsam.create_model(backbone, policy="native", resolution=64, adapter=adapter, adapter_cfg=cfg)


def trainable(adapter: str, **cfg) -> int:
    return adaptsam.count_parameters(build(adapter, **cfg)).trainable


def test_every_method_is_registered_through_its_entry_point():
    assert set(REQUIRED) <= set(METHODS)
    for name in METHODS:
        entry = registry.adapters.entry(name)
        assert entry.origin == "adaptsam-peft", (name, entry.origin)
        assert registry.adapters.get(name).method.name == name


@pytest.mark.parametrize("adapter", sorted(METHODS))
def test_adapter_contract(adapter, tmp_path):
    # native only: adaptsam's generated contract test runs both policies on every tiny backbone
    check_adapter(adapter, "vit_test", policies=("native",), workdir=tmp_path)


@pytest.mark.parametrize("adapter", ["peft_lora", "peft_ia3", "peft_oft"])
def test_adapter_contract_on_tinyvit_with_decoder_targets(adapter, tmp_path):
    check_adapter(adapter, "lite_medsam_test", adapter_cfg={"targets": ["qkv", "decoder"]}, policies=("native",),
                  workdir=tmp_path)


# -- exact counts by formula (vit_test: width D, depth L, MLP width H) --------------------------------
def _lora(r: int, in_f: int, out_f: int) -> int:
    return r * in_f + out_f * r


def test_lora_family_counts():
    per_block = lambda r: _lora(r, D, 3 * D) + _lora(r, D, D) + _lora(r, D, H) + _lora(r, H, D)  # noqa: E731
    assert trainable("peft_lora") == L * per_block(8)  # PEFT's default r = 8
    assert trainable("peft_lora", r=4, targets=["qkv"]) == L * _lora(4, D, 3 * D)
    # DoRA adds one magnitude per output row
    assert trainable("peft_dora", r=4) == L * (per_block(4) + 3 * D + D + H + D)
    # LoHa: two Hadamard factors, each a rank-r pair
    assert trainable("peft_loha", r=4, targets=["proj"]) == L * 2 * _lora(4, D, D)


def test_vector_method_counts():
    # IA3: one vector per layer, over outputs, except the MLP's last linear (a feed-forward: over its inputs)
    assert trainable("peft_ia3") == L * (3 * D + D + H + H)
    # VeRA: λ_d (r) and λ_b (outputs) per layer; the random projections are frozen and shared
    assert trainable("peft_vera", r=16) == L * (4 * 16 + 3 * D + D + H + D)
    # FourierFT: n_frequency trained spectral coefficients per layer
    assert trainable("peft_fourierft", n_frequency=100) == L * 4 * 100


def test_oft_count():
    # OFT with block size b: in/b blocks per layer, each a skew-symmetric b×b stored as b(b-1)/2 numbers
    b = 16
    blocks = lambda in_f: in_f // b  # noqa: E731
    expected = L * sum(blocks(in_f) * b * (b - 1) // 2 for in_f in (D, D, D, H))
    assert trainable("peft_oft", oft_block_size=b) == expected


# -- options --------------------------------------------------------------------------------------------
def test_options_pass_through_to_the_peft_layers():
    model = build("peft_lora", r=4, lora_alpha=16, targets=["qkv"])
    layer = model.attention_sites()[0].qkv
    assert isinstance(layer, BaseTunerLayer) and layer.r["default"] == 4 and layer.scaling["default"] == 4.0
    assert not isinstance(model.attention_sites()[0].proj, BaseTunerLayer)


def test_unknown_option_lists_the_methods_options():
    with pytest.raises(ConfigError, match=r"has no option rank\. Options: targets .*; r \(.*lora_alpha"):
        build("peft_lora", rank=4)
    with pytest.raises(ConfigError, match="has no option use_dora"):  # fixed by the method, not an option
        build("peft_dora", use_dora=False)


@pytest.mark.parametrize(("adapter", "cfg", "message"), [
    ("peft_lora", {"r": "8"}, "Expected r to be an integer, got '8'"),
    ("peft_lora", {"use_rslora": 1}, "Expected use_rslora to be true or false"),
    ("peft_lora", {"targets": ["qkv", "attn"]}, "Expected targets among"),
    ("peft_oft", {"r": 4, "oft_block_size": 4}, "PEFT .* refuses these options"),  # PEFT's own validation
])
def test_bad_options_are_config_errors(adapter, cfg, message):
    with pytest.raises(ConfigError, match=message):
        build(adapter, **cfg)


def test_adapter_lr_reaches_the_added_modules():
    from adaptsam.engine.train import TrainConfig, parameter_groups

    model = build("peft_lora", r=2, targets=["qkv"], bias="all")
    groups = parameter_groups(model, TrainConfig(steps=1, lr=1e-4, adapter_lr=1e-3))
    by_lr = {g["lr"]: sum(p.numel() for p in g["params"]) for g in groups}
    assert by_lr[1e-3] == L * _lora(2, D, 3 * D)
    assert by_lr[1e-4] > 0  # bias="all": pretrained biases train at lr


# -- files and merging ----------------------------------------------------------------------------------
def _perturb(model) -> None:
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)


def test_adapter_file_records_the_peft_version_and_warns_on_another(tmp_path):
    model = build("peft_vera", r=8, targets=["qkv", "proj"])
    _perturb(model)
    path = adaptsam.save_adapter(model, tmp_path / "vera.safetensors")
    config = json.loads(read_metadata(path)["adapter_config"])
    assert config["peft_version"] == peft.__version__ and config["r"] == 8
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as handle:
        stored = set(handle.keys())
    assert stored == set(model.adapter.trainable_state_dict(model))  # only trained tensors, no projections
    assert all("vera_lambda" in k for k in stored)
    cls = registry.adapters.get("peft_vera")
    with pytest.warns(UserWarning, match="trained with PEFT 0.0.1"):
        cls.config_class.from_dict({**config, "peft_version": "0.0.1"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cls.config_class.from_dict(config)


def test_merge_uses_peft_layers_and_is_exact():
    model = build("peft_dora", "lite_medsam_test", r=4).eval()
    _perturb(model)
    images, boxes = random_batch(model)
    with torch.no_grad():
        before = model(images, boxes=boxes).logits
        adaptsam.merge_adapter(model)
        layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
        assert layers and all(layer.merged for layer in layers)
        merged = model(images, boxes=boxes).logits
        adaptsam.unmerge_adapter(model)
        after = model(images, boxes=boxes).logits
    assert (merged - before).abs().max() < 1e-4 * before.abs().max()
    assert (after - before).abs().max() < 1e-5 * before.abs().max()
